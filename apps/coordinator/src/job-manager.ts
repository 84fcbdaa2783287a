import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InvalidJobSpecError,
  JOB_STATES,
  TERMINAL_STATES,
  parseJobSpec,
  type JobState,
  type JobStatus,
  type Logger,
  type WorkerInfo,
} from '@gradfleet/core';
import type { DatasetCatalog } from './dataset-catalog.js';
import type { DatasetIngest, PreparedDataset } from './dataset-ingest.js';
import { stageInitialModel } from './initial-model.js';
import { JobRecord, jobDir } from './job-record.js';
import { JobRunner } from './job-runner.js';
import type { JobStore } from './job-store.js';
import type { CoordinatorMetrics } from './metrics.js';
import type { ShardPool } from './shard-pool.js';
import { ModelBuilder } from './model-builder.js';
import type { WorkerConnection } from './worker-connection.js';

/** An API error with an HTTP status and a stable code. */
export class JobRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'JobRequestError';
  }
}

/** Bytes of the shards a job's inline dataset wrote into its directory; 0 for MNIST and named datasets (the catalog's chunks, capped there). */
const dataBytes = (data: PreparedDataset | undefined): number =>
  data && data.format !== 'chunked' ? data.train.bytes + (data.validation?.bytes ?? 0) + (data.test?.bytes ?? 0) : 0;

/** Limits the job manager enforces (`CoordinatorOptions` documents each default). */
export interface JobLimits {
  maxModelParams: number;
  maxConcurrentJobs: number;
  /** Jobs waiting to run (`QUEUED`, or `PAUSED` without workers), all tokens together. */
  maxQueuedJobs: number;
  /** Jobs waiting to run that one API token submitted. */
  maxQueuedJobsPerToken: number;
  /** Bytes of dataset shards that jobs waiting to run hold on disk, all together. */
  maxQueuedDataBytes: number;
}

/**
 * Jobs and workers. Scheduling policy, applied whenever a worker or a job comes or goes:
 * 1. a running job below its `minWorkers` (paused in place) takes idle workers first;
 * 2. runnable jobs (`QUEUED`, `PAUSED` without replicas) in order of priority (higher
 *    first), then submission: the first starts as soon as `minWorkers` workers are idle and
 *    takes up to `maxWorkers`; later jobs never start ahead of an earlier one that waits;
 * 3. workers still idle after that join running jobs below their `maxWorkers`.
 * A job restarted from nothing (`PAUSED` after losing every replica) resumes from its last
 * checkpoint. Jobs and their events live in the job store, so a restarted coordinator
 * picks up where it stopped.
 *
 * Memory: a job's model (initial weights, layout, topology) is built on the model thread
 * when the job is about to start and dropped when its runner ends, so waiting jobs, finished
 * jobs and jobs restored after a restart hold none; submission only validates the model
 * (`ModelBuilder.check`). Waiting jobs are capped in number, per token and in all, and in
 * the bytes of their dataset shards.
 */
export class JobManager {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly runners = new Map<string, JobRunner>();
  private readonly workers = new Set<WorkerConnection>();
  private readonly idle = new Set<WorkerConnection>();
  private closing = false;
  /** Jobs whose model the model thread is building now (they start once it is back). */
  private readonly building = new Set<string>();
  /** Submissions validated right now, per token: they count against the queue limits too. */
  private readonly submitting = new Map<string, number>();
  /** Highest sequence number given out: never reused, even after the last job is deleted (list cursors rely on it). */
  private lastSeq = 0;
  /** Builds job models on a worker thread (large models take seconds). */
  readonly models: ModelBuilder;
  /** Reducer shards for the data plane; unset: runners average gradients on the main thread. */
  shardPool: ShardPool | undefined;

  constructor(
    private readonly metrics: CoordinatorMetrics,
    private readonly log: Logger,
    private readonly store: JobStore,
    private readonly ingest: DatasetIngest,
    private readonly catalog: DatasetCatalog,
    private readonly dataDir: string,
    private readonly limits: JobLimits = {
      maxModelParams: 200_000_000,
      maxConcurrentJobs: 64,
      maxQueuedJobs: 1_000,
      maxQueuedJobsPerToken: 100,
      maxQueuedDataBytes: 32 * 1024 ** 3,
    },
    modelBuildHeapMb = 2048,
  ) {
    this.models = new ModelBuilder(modelBuildHeapMb);
    catalog.inUse = (name) =>
      [...this.jobs.values()].some((j) => !TERMINAL_STATES.includes(j.state) && j.data?.datasetName === name);
    metrics.jobStates = () =>
      Object.fromEntries(JOB_STATES.map((st) => [st, [...this.jobs.values()].filter((j) => j.state === st).length]));
    metrics.workerStates = () => {
      const list = this.listWorkers();
      return {
        IDLE: list.filter((w) => w.state === 'IDLE').length,
        BUSY: list.filter((w) => w.state === 'BUSY').length,
      };
    };
  }

  /**
   * Loads the job store; jobs that were running when the coordinator stopped pause, to
   * resume. Nothing is built: each job's model is built when it starts, so a coordinator
   * with many stored jobs listens at once.
   */
  async restore(): Promise<void> {
    for (const { seq, status } of this.store.all()) {
      const job = new JobRecord(seq, status, undefined, undefined, jobDir(this.dataDir, status.id), this.store);
      const chunked = status.dataset?.format === 'chunked';
      const path = (split: 'train' | 'validation' | 'test') =>
        `/v1/jobs/${status.id}/data/${chunked ? 'manifest' : split}`;
      const data = status.dataset
        ? {
            ...status.dataset,
            datasetName: status.dataset.name,
            train: { ...status.dataset.train, path: path('train') },
            ...(status.dataset.validation
              ? { validation: { ...status.dataset.validation, path: path('validation') } }
              : {}),
            ...(status.dataset.test ? { test: { ...status.dataset.test, path: path('test') } } : {}),
          }
        : undefined;
      Object.assign(job, { data });
      this.jobs.set(status.id, job);
      this.lastSeq = Math.max(this.lastSeq, seq);
      if (status.state === 'RUNNING')
        job.transition('PAUSED', 'coordinator restarted; resuming from the last checkpoint when workers connect');
    }
    this.updateResident();
  }

  addWorker(conn: WorkerConnection): void {
    this.workers.add(conn);
    this.idle.add(conn);
    this.metrics.workersConnected.set(this.workers.size);
    conn.once('closed', () => {
      this.workers.delete(conn);
      this.idle.delete(conn);
      this.metrics.workersConnected.set(this.workers.size);
    });
    this.schedule();
  }

  listWorkers(): WorkerInfo[] {
    return [...this.workers].flatMap((w) => {
      if (!w.info) return [];
      const jobId = w.handler
        ? [...this.runners].find(([, r]) => r.members.has(w) || r.joining.has(w))?.[0]
        : undefined;
      return [
        {
          ...w.info,
          state: jobId ? ('BUSY' as const) : ('IDLE' as const),
          ...(jobId ? { jobId } : {}),
          stats: w.stats.snapshot(),
        },
      ];
    });
  }

  /**
   * Validates the spec, its data and its model (built on the model thread and dropped) and
   * queues the job; refused with 429 `QUEUE_FULL` when the queue limits are reached. An
   * `initialModel` is checked and placed in the job's directory (`initial/`); `{ job }` names
   * only jobs `visible` to the submitting token.
   */
  async submit(
    input: unknown,
    owner?: string,
    visible: (job: { status: { owner?: string | undefined } }) => boolean = () => true,
  ): Promise<JobStatus> {
    const spec = parseJobSpec(input);
    const token = owner ?? 'anonymous';
    this.checkQueue(token);
    this.submitting.set(token, (this.submitting.get(token) ?? 0) + 1);
    const id = randomUUID();
    const dir = jobDir(this.dataDir, id);
    try {
      const data =
        typeof spec.dataset === 'object' && 'name' in spec.dataset
          ? await this.catalog.prepareForJob(spec.dataset.name, id, dir, spec.labels, spec.dataStore)
          : await this.ingest.prepare(id, dir, spec.dataset, spec.labels);
      const initial = spec.initialModel
        ? await stageInitialModel(spec.initialModel, join(dir, 'initial'), {
            uploadsDir: join(this.dataDir, 'uploads'),
            maxParams: this.limits.maxModelParams,
            visibleJob: (jobId) => {
              const j = this.jobs.get(jobId);
              return j && visible(j) ? { state: j.state, dir: j.dir } : undefined;
            },
          })
        : undefined;
      const params = await this.models.check(spec, data, this.limits.maxModelParams, { weights: initial });
      if (params > this.limits.maxModelParams) {
        throw new InvalidJobSpecError([
          {
            path: 'model',
            message: `LIMIT_EXCEEDED: ${params} trainable parameters; this coordinator accepts at most ${this.limits.maxModelParams} (--max-model-params)`,
          },
        ]);
      }
      this.checkQueuedData(dataBytes(data));
      this.lastSeq = Math.max(this.store.nextSeq(), this.lastSeq + 1);
      const record = JobRecord.create(id, this.lastSeq, spec, data, this.dataDir, this.store, owner);
      this.jobs.set(record.id, record);
      this.log.info({ job_id: record.id, params }, 'job queued');
      return record.status;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    } finally {
      const n = this.submitting.get(token)! - 1;
      if (n > 0) this.submitting.set(token, n);
      else this.submitting.delete(token);
      this.schedule();
    }
  }

  /** Jobs waiting to run (not finished, no runner), with those being submitted now, in all and of `token`. */
  private queued(token: string): { all: number; mine: number } {
    let all = 0;
    let mine = 0;
    for (const j of this.jobs.values()) {
      if (TERMINAL_STATES.includes(j.state) || this.runners.has(j.id)) continue;
      all++;
      if ((j.status.owner ?? 'anonymous') === token) mine++;
    }
    for (const [t, n] of this.submitting) {
      all += n;
      if (t === token) mine += n;
    }
    return { all, mine };
  }

  /** Refuses a submission past `maxQueuedJobs` or `maxQueuedJobsPerToken` (logged as `request refused`). */
  private checkQueue(token: string): void {
    const { all, mine } = this.queued(token);
    const { maxQueuedJobs, maxQueuedJobsPerToken } = this.limits;
    if (mine >= maxQueuedJobsPerToken)
      throw new JobRequestError(
        429,
        'QUEUE_FULL',
        `token ${token} has ${mine} jobs waiting to run, the most this coordinator accepts per token (--max-queued-jobs-per-token ${maxQueuedJobsPerToken}); wait for some to start or cancel some`,
      );
    if (all >= maxQueuedJobs)
      throw new JobRequestError(
        429,
        'QUEUE_FULL',
        `${all} jobs are waiting to run, the most this coordinator accepts (--max-queued-jobs ${maxQueuedJobs}); retry later`,
      );
  }

  /**
   * Refuses a job whose dataset shards (`bytes`, already written and removed by the caller
   * on refusal) would take the shards of jobs waiting to run past `maxQueuedDataBytes`.
   * Synchronous with the job's insertion, so concurrent submissions cannot both pass.
   */
  private checkQueuedData(bytes: number): void {
    let held = 0;
    for (const j of this.jobs.values())
      if (!TERMINAL_STATES.includes(j.state) && !this.runners.has(j.id)) held += dataBytes(j.data);
    const limit = this.limits.maxQueuedDataBytes;
    if (held + bytes > limit)
      throw new JobRequestError(
        429,
        'QUEUE_FULL',
        `jobs waiting to run hold ${held} bytes of dataset shards and this job's are ${bytes}: more than this coordinator keeps for waiting jobs (--max-queued-data-bytes ${limit}); retry when some have started, or ingest the data once as a named dataset (gradfleet dataset ingest) that jobs share`,
      );
  }

  /** `gradfleet_job_models_resident`: jobs whose model and initial weights are in memory. */
  private updateResident(): void {
    let n = 0;
    for (const j of this.jobs.values()) if (j.model) n++;
    this.metrics.jobModelsResident.set(n);
  }

  get(id: string): JobRecord {
    const job = this.jobs.get(id);
    if (!job) throw new JobRequestError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    return job;
  }

  /**
   * One page of jobs in submission order: those after sequence number `after`, in `state`
   * and of `owner` when given, at most `limit`; `next` is the cursor of the next page.
   */
  list(query: { state?: JobState | undefined; owner?: string | undefined; after?: number; limit?: number } = {}): {
    jobs: JobStatus[];
    next?: number;
  } {
    const { state, owner, after = 0, limit = Infinity } = query;
    const page: JobRecord[] = [];
    // The map holds jobs in submission order (restored by seq, then submitted in turn).
    for (const j of this.jobs.values()) {
      if (j.seq <= after || (state && j.state !== state) || (owner !== undefined && j.status.owner !== owner)) continue;
      if (page.length === limit) return { jobs: page.map((r) => r.status), next: page[page.length - 1]!.seq };
      page.push(j);
    }
    return { jobs: page.map((r) => r.status) };
  }

  cancel(id: string, reason = 'cancelled by user'): JobStatus {
    const job = this.get(id);
    // A job with a runner (running, or paused in place) is cancelled by its runner, which
    // stops its workers; one without is cancelled here.
    const runner = this.runners.get(id);
    if (runner) runner.cancel(reason);
    else if (job.state === 'QUEUED' || job.state === 'PAUSED') {
      job.transition('CANCELLED', reason);
      this.metrics.retireJob(job.id);
    }
    return job.status;
  }

  /** Deletes a finished job: its record, events, logs, data, checkpoints and model. */
  async delete(id: string): Promise<void> {
    const job = this.get(id);
    if (!TERMINAL_STATES.includes(job.state))
      throw new JobRequestError(409, 'JOB_ACTIVE', `job ${id} is ${job.state}; cancel it first`);
    this.jobs.delete(id);
    this.store.delete(id);
    await rm(job.dir, { recursive: true, force: true });
  }

  /** Stops scheduling (shutdown). Running jobs stay RUNNING in the store and resume after a restart. */
  stop(): void {
    this.closing = true;
    void this.models.close();
  }

  private runnable(): JobRecord[] {
    return [...this.jobs.values()]
      .filter((j) => (j.state === 'QUEUED' || j.state === 'PAUSED') && !this.runners.has(j.id))
      .sort((a, b) => b.spec.priority - a.spec.priority || a.seq - b.seq);
  }

  private takeIdle(): WorkerConnection | undefined {
    const w = [...this.idle].find((x) => x.registered && x.isOpen);
    if (w) this.idle.delete(w);
    return w;
  }

  private feedRunners(urgent: boolean): void {
    for (const runner of this.runners.values()) {
      for (let n = runner.wants(urgent); n > 0; n--) {
        const w = this.takeIdle();
        if (!w) return;
        runner.admit(w);
      }
    }
  }

  private schedule(): void {
    if (this.closing) return;
    this.feedRunners(true);
    if (this.startRunnable()) this.feedRunners(false);
  }

  /**
   * Builds the model of the job about to start, on the model thread; the job keeps its
   * place (later ones wait behind it) and the scheduler runs again once it is back. A build
   * that fails fails the job.
   */
  private build(job: JobRecord): void {
    if (this.building.has(job.id)) return;
    this.building.add(job.id);
    this.models
      .describe(job.spec, job.data, undefined, {
        dir: job.spec.initialModel ? join(job.dir, 'initial') : undefined,
      })
      .then((model) => {
        if (!TERMINAL_STATES.includes(job.state)) job.model = model;
      })
      .catch((err: Error) => {
        this.log.error({ job_id: job.id, err: err.message }, 'model build failed');
        if (!TERMINAL_STATES.includes(job.state)) {
          job.transition('FAILED', `the coordinator could not build the model: ${err.message}`);
          this.metrics.retireJob(job.id);
        }
      })
      .finally(() => {
        this.building.delete(job.id);
        this.updateResident();
        this.schedule();
      });
  }

  /** Starts runnable jobs in order; false when one is left waiting for workers or its model. */
  private startRunnable(): boolean {
    for (const job of this.runnable()) {
      if (this.runners.size >= this.limits.maxConcurrentJobs) return false;
      const ready = [...this.idle].filter((w) => w.registered && w.isOpen);
      if (ready.length < job.spec.minWorkers) return false; // later jobs wait behind this one
      if (!job.model) {
        this.build(job);
        return false;
      }
      const assigned = ready.slice(0, job.spec.maxWorkers);
      for (const w of assigned) this.idle.delete(w);
      const runner = new JobRunner(
        job,
        assigned,
        this.metrics,
        this.log,
        (w) => this.releaseWorker(w),
        () => this.schedule(),
        this.shardPool,
      );
      this.runners.set(job.id, runner);
      const paused = job.state === 'PAUSED';
      job.transition('RUNNING', paused ? 'resuming' : 'workers assigned');
      void (async () => {
        try {
          await runner.run(paused ? await job.checkpoints.latest() : undefined);
        } finally {
          this.runners.delete(job.id);
          // The model goes with the runner: a finished job needs none, a paused one is rebuilt.
          job.model = undefined;
          this.updateResident();
          if (TERMINAL_STATES.includes(job.state)) this.metrics.retireJob(job.id);
          this.schedule();
        }
      })();
    }
    return true;
  }

  private releaseWorker(w: WorkerConnection): void {
    if (this.workers.has(w) && w.isOpen) this.idle.add(w);
    setImmediate(() => this.schedule());
  }
}
