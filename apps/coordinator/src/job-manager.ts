import { randomUUID } from 'node:crypto';
import { TERMINAL_STATES, parseJobSpec, type JobState, type JobStatus, type Logger, type WorkerInfo } from '@gradfleet/core';
import { JobRecord } from './job-record.js';
import { JobRunner } from './job-runner.js';
import type { CoordinatorMetrics } from './metrics.js';
import { describeModel } from './model-info.js';
import type { WorkerConnection } from './worker-connection.js';

/** Thrown for an unknown job id (HTTP 404). */
export class JobNotFoundError extends Error {
  readonly code = 'JOB_NOT_FOUND';
  constructor(id: string) {
    super(`no job ${id}`);
    this.name = 'JobNotFoundError';
  }
}

const JOB_STATES: JobState[] = ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];

/**
 * Jobs and workers. Scheduling policy: strict FIFO by submission; the oldest queued job
 * starts as soon as at least `minWorkers` workers are idle and takes up to `maxWorkers`
 * of them; a later job may start alongside on the workers left over.
 */
export class JobManager {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly runners = new Map<string, JobRunner>();
  private readonly workers = new Set<WorkerConnection>();
  private readonly idle = new Set<WorkerConnection>();

  constructor(private readonly metrics: CoordinatorMetrics, private readonly log: Logger) {
    this.updateJobGauge();
    metrics.workerStates = () => {
      const list = this.listWorkers();
      return { IDLE: list.filter((w) => w.state === 'IDLE').length, BUSY: list.filter((w) => w.state === 'BUSY').length };
    };
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
      const jobId = w.handler ? [...this.runners].find(([, r]) => r.members.has(w))?.[0] : undefined;
      return [{ ...w.info, state: jobId ? ('BUSY' as const) : ('IDLE' as const), ...(jobId ? { jobId } : {}), stats: w.stats.snapshot() }];
    });
  }

  /** Validates the spec, builds the model once (initial weights) and queues the job. */
  async submit(input: unknown): Promise<JobStatus> {
    const spec = parseJobSpec(input);
    const model = await describeModel(spec);
    const record = new JobRecord(randomUUID(), spec, model);
    this.jobs.set(record.id, record);
    this.log.info({ job: record.id, params: model.trainableParams }, 'job queued');
    this.updateJobGauge();
    this.schedule();
    return record.status;
  }

  get(id: string): JobRecord {
    const job = this.jobs.get(id);
    if (!job) throw new JobNotFoundError(id);
    return job;
  }

  list(): JobStatus[] {
    return [...this.jobs.values()].map((j) => j.status);
  }

  cancel(id: string, reason = 'cancelled by user'): JobStatus {
    const job = this.get(id);
    if (job.state === 'QUEUED') job.transition('CANCELLED', reason);
    else this.runners.get(id)?.cancel(reason);
    this.updateJobGauge();
    return job.status;
  }

  /** Cancels everything (coordinator shutdown). */
  cancelAll(reason: string): void {
    for (const job of this.jobs.values()) if (!TERMINAL_STATES.includes(job.state)) this.cancel(job.id, reason);
  }

  private schedule(): void {
    for (const job of this.jobs.values()) {
      if (job.state !== 'QUEUED') continue;
      const ready = [...this.idle].filter((w) => w.registered && w.isOpen);
      if (ready.length < job.spec.minWorkers) return; // FIFO: later jobs wait behind the head
      const assigned = ready.slice(0, job.spec.maxWorkers);
      for (const w of assigned) this.idle.delete(w);
      const runner = new JobRunner(job, assigned, this.metrics, this.log, (w) => this.releaseWorker(w));
      this.runners.set(job.id, runner);
      void runner.run().finally(() => {
        this.runners.delete(job.id);
        this.updateJobGauge();
        this.schedule();
      });
      this.updateJobGauge();
    }
  }

  private releaseWorker(w: WorkerConnection): void {
    if (this.workers.has(w) && w.isOpen) this.idle.add(w);
  }

  private updateJobGauge(): void {
    for (const s of JOB_STATES) this.metrics.jobs.set({ state: s }, [...this.jobs.values()].filter((j) => j.state === s).length);
  }
}
