import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
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
import type { DatasetIngest } from './dataset-ingest.js';
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
 */
export class JobManager {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly runners = new Map<string, JobRunner>();
  private readonly workers = new Set<WorkerConnection>();
  private readonly idle = new Set<WorkerConnection>();
  private closing = false;
  /** Builds job models on a worker thread (large models take seconds). */
  readonly models = new ModelBuilder();
  /** Reducer shards for the data plane; unset: runners average gradients on the main thread. */
  shardPool: ShardPool | undefined;

  constructor(
    private readonly metrics: CoordinatorMetrics,
    private readonly log: Logger,
    private readonly store: JobStore,
    private readonly ingest: DatasetIngest,
    private readonly dataDir: string,
    private readonly limits: { maxModelParams: number; maxConcurrentJobs: number } = {
      maxModelParams: 200_000_000,
      maxConcurrentJobs: 64,
    },
  ) {
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

  /** Loads the job store; jobs that were running when the coordinator stopped pause, to resume. */
  async restore(): Promise<void> {
    for (const { seq, status } of this.store.all()) {
      const job = new JobRecord(seq, status, undefined, undefined, jobDir(this.dataDir, status.id), this.store);
      const data = status.dataset
        ? {
            ...status.dataset,
            train: { ...status.dataset.train, path: `/v1/jobs/${status.id}/data/train` },
            ...(status.dataset.validation
              ? { validation: { ...status.dataset.validation, path: `/v1/jobs/${status.id}/data/validation` } }
              : {}),
            ...(status.dataset.test
              ? { test: { ...status.dataset.test, path: `/v1/jobs/${status.id}/data/test` } }
              : {}),
          }
        : undefined;
      Object.assign(job, { data });
      this.jobs.set(status.id, job);
      if (status.state === 'RUNNING')
        job.transition('PAUSED', 'coordinator restarted; resuming from the last checkpoint when workers connect');
      if (!TERMINAL_STATES.includes(job.state)) job.model = await this.models.describe(job.spec, data);
    }
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

  /** Validates the spec and its data, builds the model once (initial weights) and queues the job. */
  async submit(input: unknown, owner?: string): Promise<JobStatus> {
    const spec = parseJobSpec(input);
    const id = randomUUID();
    const dir = jobDir(this.dataDir, id);
    try {
      const data = await this.ingest.prepare(id, dir, spec.dataset, spec.labels);
      const model = await this.models.describe(spec, data, this.limits.maxModelParams);
      if (model.trainableParams > this.limits.maxModelParams) {
        throw new InvalidJobSpecError([
          {
            path: 'model',
            message: `LIMIT_EXCEEDED: ${model.trainableParams} trainable parameters; this coordinator accepts at most ${this.limits.maxModelParams} (--max-model-params)`,
          },
        ]);
      }
      const record = JobRecord.create(id, this.store.nextSeq(), spec, model, data, this.dataDir, this.store, owner);
      this.jobs.set(record.id, record);
      this.log.info({ job_id: record.id, params: model.trainableParams }, 'job queued');
      this.schedule();
      return record.status;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  get(id: string): JobRecord {
    const job = this.jobs.get(id);
    if (!job) throw new JobRequestError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    return job;
  }

  list(state?: JobState): JobStatus[] {
    return [...this.jobs.values()].map((j) => j.status).filter((s) => !state || s.state === state);
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

  /** Starts runnable jobs in order; false when one is left waiting for workers. */
  private startRunnable(): boolean {
    for (const job of this.runnable()) {
      if (this.runners.size >= this.limits.maxConcurrentJobs) return false;
      const ready = [...this.idle].filter((w) => w.registered && w.isOpen);
      if (ready.length < job.spec.minWorkers) return false; // later jobs wait behind this one
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
