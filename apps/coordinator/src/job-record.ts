import { join } from 'node:path';
import { TERMINAL_STATES, assertTransition, type JobSpec, type JobState, type JobStatus } from '@gradfleet/core';
import { CheckpointStore } from './checkpoint-store.js';
import type { PreparedDataset } from './dataset-ingest.js';
import type { JobStore } from './job-store.js';
import type { ModelInfo } from './model-info.js';

/** Checkpoints kept per job. */
const KEEP_CHECKPOINTS = 3;

/**
 * A job as the coordinator keeps it: the status the API shows (persisted in the job store
 * at every transition, epoch end and checkpoint), its model, its data and its directory
 * (`<dataDir>/jobs/<id>`: data shards, checkpoints, final model).
 */
export class JobRecord {
  cancelRequested: string | undefined;
  readonly checkpoints: CheckpointStore;

  constructor(
    readonly seq: number,
    readonly status: JobStatus,
    /** Built when the job starts, dropped when its runner ends (`JobManager`). */
    public model: ModelInfo | undefined,
    readonly data: PreparedDataset | undefined,
    readonly dir: string,
    private readonly store: JobStore,
  ) {
    this.checkpoints = new CheckpointStore(dir, KEEP_CHECKPOINTS);
  }

  static create(
    id: string,
    seq: number,
    spec: JobSpec,
    data: PreparedDataset | undefined,
    dataDir: string,
    store: JobStore,
    owner?: string,
  ): JobRecord {
    const now = new Date().toISOString();
    const status: JobStatus = {
      id,
      state: 'QUEUED',
      spec,
      createdAt: now,
      ...(owner !== undefined ? { owner } : {}),
      workers: [],
      history: [],
      progress: {
        epoch: 0,
        epochs: spec.epochs,
        step: 0,
        samplesInEpoch: 0,
        epochSize: 0,
        samplesPerSecond: 0,
        phase: 'waiting',
      },
      replicas: { checks: 0, divergences: 0 },
      events: [{ time: now, state: 'QUEUED', reason: 'submitted' }],
      ...(data
        ? {
            dataset: {
              ...(data.format ? { format: data.format } : {}),
              ...(data.datasetName ? { name: data.datasetName } : {}),
              ...(data.chunkExamples ? { chunkExamples: data.chunkExamples } : {}),
              ...(data.s3 ? { s3: data.s3 } : {}),
              train: data.train,
              ...(data.validation ? { validation: data.validation } : {}),
              ...(data.test ? { test: data.test } : {}),
              featureShape: data.featureShape,
              numClasses: data.numClasses,
            },
          }
        : {}),
    };
    const job = new JobRecord(seq, status, undefined, data, jobDir(dataDir, id), store);
    store.recordEvent(id, now, 'QUEUED', 'submitted');
    job.persist();
    return job;
  }

  get id(): string {
    return this.status.id;
  }

  get spec(): JobSpec {
    return this.status.spec;
  }

  get state(): JobState {
    return this.status.state;
  }

  persist(): void {
    this.store.save(this.seq, this.status);
  }

  log(line: string): void {
    this.store.log(this.id, line);
  }

  /** Moves the job to `state` (`JOB_TRANSITIONS`; anything else throws `IllegalTransitionError`), recorded with `reason`. */
  transition(state: JobState, reason: string): void {
    assertTransition(this.id, this.status.state, state);
    const time = new Date().toISOString();
    this.status.state = state;
    this.status.events.push({ time, state, reason });
    if (state === 'RUNNING') this.status.startedAt ??= time;
    if (TERMINAL_STATES.includes(state)) {
      this.status.finishedAt = time;
      this.status.progress.phase = 'done';
      if (state !== 'SUCCEEDED') this.status.reason = reason;
    } else {
      delete this.status.reason;
    }
    if (state === 'PAUSED') this.status.reason = reason;
    this.store.recordEvent(this.id, time, state, reason);
    this.log(`${state}: ${reason}`);
    this.persist();
  }
}

export function jobDir(dataDir: string, id: string): string {
  return join(dataDir, 'jobs', id);
}
