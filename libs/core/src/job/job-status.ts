import type { EpochAudit } from '../sampler/epoch-sampler.js';
import type { EarlyStoppingState } from './early-stopping.js';
import type { JobSpec } from './job-spec.js';

/**
 * Lifecycle of a job:
 * - `QUEUED`: accepted, waiting for enough idle workers (`minWorkers`);
 * - `RUNNING`: workers assigned, steps in progress;
 * - `PAUSED`: was running, lost its workers or its coordinator; resumes from its last
 *   checkpoint as soon as `minWorkers` workers are idle;
 * - `SUCCEEDED`: all epochs done and the test set evaluated;
 * - `FAILED`: stopped by an error (`reason` says which);
 * - `CANCELLED`: stopped by a user.
 */
export const JOB_STATES = ['QUEUED', 'RUNNING', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const;

/** One of `JOB_STATES`; the legal moves between them are `JOB_TRANSITIONS` (job-lifecycle.ts). */
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: readonly JobState[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

export interface JobEvent {
  time: string;
  state: JobState;
  reason: string;
}

/** Per-epoch results, as `model.fit` history reports them, plus the sample audit. */
export interface EpochResult {
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  /** Test split results after this epoch (with `testEveryEpoch`). */
  testLoss?: number;
  testAccuracy?: number;
  /** The job's `metrics` on the validation data after this epoch, by `metricKey`. */
  valMetrics?: Record<string, number>;
  /** The job's `metrics` on the test split after this epoch (with `testEveryEpoch`). */
  testMetrics?: Record<string, number>;
  /** Job wall time at the end of this epoch, in ms, not counting `testEveryEpoch` evaluations. */
  elapsedMs?: number;
  samples: number;
  steps: number;
  durationMs: number;
  audit: EpochAudit;
}

export interface JobProgress {
  epoch: number;
  epochs: number;
  step: number;
  samplesInEpoch: number;
  epochSize: number;
  samplesPerSecond: number;
  /** The learning rate of step `step` (the next one): `learningRate` through `lrSchedule`, as every replica applies it. */
  learningRate?: number;
  phase: 'waiting' | 'starting' | 'training' | 'evaluating' | 'done';
}

export interface JobResult {
  testLoss?: number;
  testAccuracy?: number;
  /** The job's `metrics` on the test split, by `metricKey` (e.g. `precision`, `top5CategoricalAccuracy`). */
  testMetrics?: Record<string, number>;
  wallTimeMs: number;
  samplesPerSecond: number;
  steps: number;
}

export interface ReplicaReport {
  checks: number;
  divergences: number;
  lastStep?: number;
  lastHash?: string;
  /** Times the job rolled back to its last checkpoint because no majority of replicas agreed. */
  rollbacks?: number;
}

/** A job as the API reports it. */
export interface JobStatus {
  id: string;
  state: JobState;
  spec: JobSpec;
  createdAt: string;
  /** Name of the API token that submitted the job (`--api-tokens`; `admin` or `anonymous` otherwise). */
  owner?: string;
  startedAt?: string;
  finishedAt?: string;
  /** Why the job failed, was cancelled or paused, or (`earlyStopping`) succeeded before `epochs`. */
  reason?: string;
  workers: string[];
  progress: JobProgress;
  history: EpochResult[];
  replicas: ReplicaReport;
  /** The dataset shards the coordinator serves (absent for the built-in MNIST). */
  dataset?: {
    /** `chunked`: a named chunked dataset (`docs/datasets.md`); absent: `data-shard` files. */
    format?: 'chunked';
    /** The named dataset the job uses. */
    name?: string;
    /** Chunked datasets: examples per chunk (the manifest's). */
    chunkExamples?: number;
    /** `dataStore: 's3'`: where the workers read the chunks. */
    s3?: { bucket: string; prefix: string };
    train: { examples: number; bytes: number; sha256: string };
    validation?: { examples: number; bytes: number; sha256: string };
    test?: { examples: number; bytes: number; sha256: string };
    featureShape: number[];
    numClasses: number;
  };
  /** With `earlyStopping`: the best value of its monitor so far, its epoch, the epochs waited since. */
  earlyStopping?: EarlyStoppingState;
  /** The last checkpoint written. */
  checkpoint?: { step: number; epoch: number; time: string };
  /** Where a step's time goes (moving averages over recent steps). */
  timing?: StepTiming;
  result?: JobResult;
  events: JobEvent[];
}

/**
 * A job as lists and event streams report it: the status without the model topology (a
 * built-in model's name stays). `GET /v1/jobs/:id` has the whole spec.
 */
export type JobSummary = Omit<JobStatus, 'spec'> & { spec: Omit<JobSpec, 'model'> & { model?: string } };

/** `status` without the topology (lists and event streams: a topology may be megabytes). */
export function summarizeJob(status: JobStatus): JobSummary {
  const { model, ...spec } = status.spec;
  return { ...status, spec: typeof model === 'string' ? { ...spec, model } : spec };
}

/** Live figures of one worker (last 10 s for rates). */
export interface WorkerStats {
  samplesPerSecond: number;
  steps: number;
  samples: number;
  meanComputeMs: number;
  stragglerEvents: number;
  /** Slices of this worker that went back to the pool unfinished (straggler deadline, backup workers, step timeout). */
  excusedSlices: number;
  /** Fraction of its chunk-cache lookups found in the cache (chunked datasets; from heartbeats); absent before its first lookup. */
  chunkCacheHitRatio?: number;
}

/** Moving averages of a job's step phases, in ms (see docs/metrics.md for each phase). */
export interface StepTiming {
  stepMs: number;
  computeMs: number;
  applyMs: number;
  uploadMs: number;
  stragglerWaitMs: number;
  aggregateMs: number;
  broadcastMs: number;
  /** Wait of the workers' compute for their examples (chunks fetched); 0 for in-memory data. Absent in statuses recorded before it was measured. */
  dataWaitMs?: number;
}

export interface WorkerInfo {
  id: string;
  name: string;
  host: string;
  backend: string;
  device?: string;
  state: 'IDLE' | 'BUSY';
  jobId?: string;
  connectedAt: string;
  stats?: WorkerStats;
}
