import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ArrayStateSource,
  BucketPlan,
  EpochSampler,
  GradientReducer,
  MAX_OPTIMIZER_VALUES_PER_WEIGHT,
  ProtocolError,
  StateReceiver,
  bucketCodec,
  sendStateChunks,
  stateChunkBytes,
  stateValues,
  type CoordinatorMessageInput,
  type Logger,
  type StateHeader,
  type StateSource,
  type TensorSpec,
  type WorkerMessage,
} from '@gradfleet/core';
import type { PreparedDataset } from './dataset-ingest.js';
import { JobShards } from './job-shards.js';
import { SliceBalancer } from './slice-balancer.js';
import type { ShardPool } from './shard-pool.js';
import type { EpochTotals } from './job-checkpoint.js';
import { FileStateSource, StateFileSink, type StateFiles } from './state-files.js';
import { ReplicaChecks } from './replica-checks.js';
import type { JobRecord } from './job-record.js';
import type { CoordinatorMetrics } from './metrics.js';
import { FramePool } from './frame-pool.js';
import { Signal } from './signal.js';
import { StepTelemetry } from './step-telemetry.js';
import type { JobMessage, JobMessageHandler, WorkerConnection } from './worker-connection.js';
import { Scatter, type RangeStats } from './scatter.js';

/** What a replica reports ready with: its dataset's example counts (`validationCount` 0: no validation file). */
export interface DataCounts {
  trainCount: number;
  testCount: number;
  validationCount: number;
}

/** Evaluation and weight fetches that take longer than this drop the slow worker, in ms. */
const COLLECT_TIMEOUT_MS = 300_000;

export class JobAbortedError extends Error {}

/** A state transfer from a worker cut short by the worker's loss (its request goes to another replica). */
class TransferCutError extends Error {}

/**
 * Sink writes of a state transfer from a worker that may be queued before its socket is
 * paused (the kernel then holds the rest): the disk is behind by at most this many chunks.
 */
const MAX_QUEUED_CHUNK_WRITES = 4;

let transferNo = 0;

/** Every worker of the job is gone: the job pauses and resumes from its last checkpoint. */
export class NoWorkersError extends Error {}

/**
 * Replicas diverged and none can be trusted over another: like a job that lost its workers,
 * it pauses and resumes from its last checkpoint (every replica reloads from it).
 */
export class ReplicaRollbackError extends NoWorkersError {}

/**
 * Rollbacks without a majority a job may take before it fails: a divergence that comes
 * back after reloading a checkpoint points at a faulty machine, not a passing glitch.
 */
const MAX_REPLICA_ROLLBACKS = 3;

/**
 * The state of a running job and the bookkeeping around its workers: membership (join,
 * leave, drop), collection of results from replicas (evaluation ranges, weights), and
 * cancellation. `JobRunner` adds the step loop on top.
 */
export abstract class JobRunnerCore implements JobMessageHandler {
  readonly members = new Set<WorkerConnection>();
  protected readonly signal = new Signal();
  protected readonly log: Logger;
  protected readonly reducer: GradientReducer;
  /** Recycled update frames, one pool per bucket (dense codecs: fixed sizes). */
  protected readonly updates: FramePool[];
  /** Workers part-way through sending this step's gradient: next bucket, bytes and add time so far. */
  protected readonly progress = new Map<WorkerConnection, { next: number; bytes: number; addMs: number }>();
  /** The accumulator holds part of a gradient that will never be completed: the step is retried. */
  protected tainted = false;
  protected readonly telemetry: StepTelemetry;
  protected readonly ready = new Map<WorkerConnection, DataCounts>();
  protected readonly pending = new Map<WorkerConnection, Uint32Array>();
  /** Workers sent `job-start` mid-job, waiting to be ready; they join at a step boundary. */
  readonly joining = new Set<WorkerConnection>();
  /** Stragglers whose slice of this step went back to the pool: their late gradient is dropped. */
  protected readonly excused = new Map<WorkerConnection, number>();
  /** Diverged replicas to reload from a healthy one at the next step boundary. */
  protected readonly resyncs = new Set<WorkerConnection>();
  protected dataCounts: DataCounts | undefined;
  protected pausedInPlace = false;
  protected finished = false;
  protected received: Uint32Array[] = [];
  protected sampler: EpochSampler | undefined;
  protected scatter: Scatter | undefined;
  protected epochTotals: EpochTotals = { lossSum: 0, correct: 0, samples: 0, steps: 0 };
  protected readonly checks: ReplicaChecks;
  protected stepNo = 0;
  protected phase: 'starting' | 'training' | 'collecting' = 'starting';
  protected lastFailure: string | undefined;
  protected refusals = 0;
  /** A resync after a replica check is reading a healthy replica's state. */
  private verifying = false;
  protected elapsed: () => number = () => 0;
  protected trainMs = 0;
  protected trainSamples = 0;
  /** The data plane: reducer shards that average this job's gradients (absent: this thread does). */
  protected readonly shards: JobShards | undefined;
  /** Data plane: the attempt in flight (a retried step gets a new round). */
  protected round = 0;
  /** Data plane: slices of the round's contributors still in it (excused ones went back at once). */
  protected readonly roundSlices = new Map<WorkerConnection, Uint32Array>();
  /** Slice sizes per worker (`sliceBalance`). */
  protected readonly balancer: SliceBalancer;
  /** State transfers arriving from workers (`weights`, then its `state-chunk`s), written to disk as they come. */
  private readonly inbound = new Map<WorkerConnection, StateReceiver<StateFileSink>>();
  /** Where the state of the weight fetch in progress goes (absent: none is asked for). */
  private stateSink: ((bytes: number) => StateFileSink) | undefined;

  constructor(
    protected readonly job: JobRecord,
    workers: WorkerConnection[],
    protected readonly metrics: CoordinatorMetrics,
    log: Logger,
    protected readonly release: (conn: WorkerConnection) => void,
    /** Asks the manager for idle workers (the job is below `minWorkers`). */
    protected readonly needWorkers: () => void = () => undefined,
    /** Reducer shards; without them gradients are averaged on this thread. */
    pool?: ShardPool,
  ) {
    this.log = log.child({ job_id: job.id });
    const plan = new BucketPlan(this.model.exchangeLength, job.spec.bucketBytes);
    this.reducer = new GradientReducer(plan, bucketCodec(job.spec.compression, job.spec.topkRatio));
    this.updates = Array.from(
      { length: plan.count },
      (_, b) => new FramePool(this.reducer.codec.gradientBytes(plan.length(b))),
    );
    this.telemetry = new StepTelemetry(metrics, job.id);
    this.balancer = new SliceBalancer(job.spec.sliceBalance);
    this.checks = new ReplicaChecks(
      job.status.replicas,
      metrics,
      job.id,
      this.log,
      (msg) => {
        job.status.events.push({ time: new Date().toISOString(), state: job.state, reason: msg });
        job.log(msg);
      },
      plan.count,
      job.spec.checksumEverySteps > 0,
    );
    for (const w of workers) {
      this.members.add(w);
      w.handler = this;
    }
    if (pool) {
      const member = (id: string) => [...this.members, ...this.joining].find((m) => m.id === id);
      this.shards = new JobShards(pool, job.id, job.spec, this.model.exchangeLength, {
        started: (id) => {
          const m = member(id);
          if (m && this.pending.has(m) && !this.progress.has(m)) this.progress.set(m, { next: 1, bytes: 0, addMs: 0 });
        },
        failed: (id, code, reason) => member(id)?.fail(new ProtocolError(code, `data connection: ${reason}`)),
        changed: () => this.signal.notify(),
      });
      this.shards.allow(workers.map((w) => w.id));
    }
  }

  /** The `dataPlane` field of `job-start`: where to send which buckets, and the committed steps. */
  protected dataPlaneInfo(): { dataPlane?: { step: number; shards: { port: number; start: number; end: number }[] } } {
    return this.shards ? { dataPlane: { step: this.stepNo, shards: this.shards.endpoints } } : {};
  }

  /** On the data plane, messages that read the replica wait until it applied the committed steps. */
  protected stepField(): { step?: number } {
    return this.shards ? { step: this.stepNo } : {};
  }

  protected get model() {
    return this.job.model!;
  }

  /** How many more workers the job would take now: up to `minWorkers` if `urgent`, else up to `maxWorkers`. */
  wants(urgent: boolean): number {
    if (this.phase === 'starting' || this.finished || this.job.cancelRequested !== undefined) return 0;
    const target = urgent ? this.job.spec.minWorkers : this.job.spec.maxWorkers;
    return Math.max(0, target - this.members.size - this.joining.size);
  }

  /**
   * A worker joins the running job: it builds the model and loads the data now, and takes
   * the current weights and optimizer state of a live replica at the next step boundary.
   */
  /** The dataset shards `job-start` announces (undefined for the built-in MNIST). */
  protected remoteData(): Pick<PreparedDataset, 'train' | 'validation' | 'test' | 'format' | 's3'> | undefined {
    const d = this.job.data;
    if (!d) return undefined;
    return {
      train: d.train,
      ...(d.validation ? { validation: d.validation } : {}),
      ...(d.test ? { test: d.test } : {}),
      ...(d.format ? { format: d.format } : {}),
      ...(d.s3 ? { s3: d.s3 } : {}),
    };
  }

  admit(m: WorkerConnection): void {
    const job = this.job;
    m.handler = this;
    this.joining.add(m);
    this.shards?.allow([m.id]);
    const data = this.remoteData();
    const rank = this.members.size + this.joining.size - 1;
    const worldSize = this.members.size + this.joining.size;
    const dataPlane = this.dataPlaneInfo();
    this.sendState(
      [m],
      (_m, state) => ({
        t: 'job-start',
        jobId: job.id,
        spec: job.spec as Record<string, unknown>,
        rank,
        worldSize,
        layout: this.model.layout,
        state,
        ...(data ? { data } : {}),
        ...dataPlane,
      }),
      new ArrayStateSource([this.model.initialWeights]),
    ).catch((err: unknown) => this.log.warn({ worker: m.id, err }, 'sending the initial weights to a joiner failed'));
    job.log(`worker ${m.id} joining`);
  }

  cancel(reason: string): void {
    this.job.cancelRequested = reason;
    this.signal.notify();
  }

  protected checkAlive(): void {
    if (this.job.cancelRequested !== undefined) throw new JobAbortedError(this.job.cancelRequested);
    if (this.members.size === 0) {
      const why = `no workers left${this.lastFailure ? ` (last failure: ${this.lastFailure})` : ''}`;
      // Workers that refused the job (bad data, model, backend) fail it; lost ones pause it.
      if (this.refusals > 0) throw new Error(why);
      throw new NoWorkersError(why);
    }
  }

  /**
   * Settles the pending replica checks before anything reads a replica's state or uses its
   * gradient again: waits for every member's checksum of the checked step (up to
   * `stepTimeoutMs`, then the silent worker is dropped), reloads the outvoted replicas from a
   * healthy one, or rolls the job back to its last checkpoint when no replica can be trusted
   * over another (`ReplicaChecks`).
   */
  protected async verifyReplicas(): Promise<void> {
    if (this.verifying) return;
    const ids = () => [...this.members].map((m) => m.id);
    const timeoutMs = this.job.spec.stepTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    while (this.checks.waitingFor(ids()).length > 0) {
      this.checkAlive();
      if (await this.signal.wait(deadline - Date.now()))
        for (const m of [...this.members])
          if (this.checks.waitingFor([m.id]).length > 0) this.drop(m, `no checksum within ${timeoutMs} ms`);
    }
    const verdict = this.checks.decide(ids());
    if (verdict.rollback !== undefined) {
      const report = this.job.status.replicas;
      report.rollbacks = (report.rollbacks ?? 0) + 1;
      if (report.rollbacks > MAX_REPLICA_ROLLBACKS)
        throw new Error(
          `replicas diverged without a majority ${report.rollbacks} times; failing the job rather than training on untrustworthy weights (check the workers' hardware, or run 3 or more workers so a majority can decide)`,
        );
      throw new ReplicaRollbackError(verdict.rollback);
    }
    const targets = [...this.members].filter((m) => verdict.resync.includes(m.id));
    const sources = [...this.members].filter((m) => !verdict.resync.includes(m.id));
    if (targets.length === 0 || sources.length === 0) return;
    this.verifying = true;
    try {
      const sent = await this.copyState(sources, () => targets.filter((m) => m.isOpen && this.members.has(m)));
      for (const m of sent) this.job.log(`worker ${m.id} resynchronised from ${sources.map((w) => w.id).join(', ')}`);
    } finally {
      this.verifying = false;
    }
  }

  protected async evaluate(split: 'validation' | 'test', start: number, end: number): Promise<RangeStats> {
    await this.verifyReplicas();
    this.scatter = new Scatter(split, start, end);
    return this.collect(this.scatter, (m, id, range) =>
      m.send({
        t: 'evaluate',
        jobId: this.job.id,
        requestId: id,
        split,
        start: range[0],
        end: range[1],
        ...this.stepField(),
      }),
    );
  }

  /**
   * Late slices go back to the pool; their workers stay and their late gradients are
   * dropped. A worker already part-way through sending its buckets is waited for instead.
   */
  protected excusePending(why: string): void {
    for (const [m, slice] of this.pending) {
      if (this.progress.has(m)) continue;
      this.sampler!.giveBack(slice);
      if (this.shards) {
        this.roundSlices.delete(m);
        this.shards.excuse(m.id);
      }
      this.excused.set(m, this.stepNo);
      this.telemetry.excused(m.id);
      m.stats.excusedSlices++;
      this.log.info({ worker: m.id, step: this.stepNo }, `straggler: ${why}`);
      this.pending.delete(m);
    }
  }

  /**
   * Weights (and optionally optimizer state) from one replica (of `from`, all members by
   * default), streamed chunk by chunk into the files `sinkFor` makes for the declared size.
   * A replica lost mid-transfer has its files removed and the request goes to another.
   */
  protected async fetchState(
    withOptimizer: boolean,
    sinkFor: (bytes: number) => StateFileSink,
    from?: WorkerConnection[],
  ): Promise<{ files: StateFiles; optimizerSpecs: TensorSpec[] }> {
    await this.verifyReplicas();
    this.scatter = new Scatter('weights', 0, 1);
    this.stateSink = sinkFor;
    try {
      const stats = await this.collect(
        this.scatter,
        (m, id) =>
          m.send({ t: 'fetch-weights', jobId: this.job.id, requestId: id, withOptimizer, ...this.stepField() }),
        from,
      );
      return { files: stats.state!, optimizerSpecs: stats.optimizerSpecs ?? [] };
    } finally {
      this.stateSink = undefined;
    }
  }

  /**
   * Copies the state of a replica of `sources` (through a file in the job's `transfers/`)
   * to the workers `targets()` names once it is in; returns those it went to.
   */
  protected async copyState(
    sources: WorkerConnection[],
    targets: () => WorkerConnection[],
  ): Promise<WorkerConnection[]> {
    const dir = join(this.job.dir, 'transfers', `state-${process.pid}-${++transferNo}`);
    try {
      const { files, optimizerSpecs } = await this.fetchState(
        true,
        (bytes) => new StateFileSink(dir, [{ name: 'state.bin', bytes }]),
        sources,
      );
      const to = targets();
      const source = new FileStateSource([{ path: join(dir, 'state.bin'), bytes: files.parts[0]!.bytes }]);
      try {
        await this.sendState(
          to,
          (_m, state) => ({ t: 'load-state', jobId: this.job.id, step: this.stepNo, optimizer: optimizerSpecs, state }),
          source,
        );
      } finally {
        await source.close();
      }
      return to;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Sends a whole-model state to `targets`: each gets its begin message (`begin`), then the
   * same chunks of `source` (`bucketBytes` each, read once for all), at most
   * `STATE_SEND_WINDOW` queued per socket so heartbeats keep flowing. Transfers to one
   * worker never interleave: a second waits for the first.
   */
  protected sendState(
    targets: WorkerConnection[],
    begin: (m: WorkerConnection, state: StateHeader) => CoordinatorMessageInput,
    source: StateSource,
  ): Promise<void> {
    const header: StateHeader = {
      transfer: ++transferNo,
      bytes: source.bytes,
      chunkBytes: stateChunkBytes(this.job.spec.bucketBytes),
    };
    const run = async () => {
      for (const m of targets) m.send(begin(m, header));
      await sendStateChunks(source, header, async (index, payload) => {
        const live = targets.filter((m) => m.isOpen);
        await Promise.all(
          live.map((m) => m.sendAsync({ t: 'state-chunk', transfer: header.transfer, index }, payload)),
        );
        this.metrics.stateTransferBytes.inc({ direction: 'sent' }, payload.byteLength * live.length);
      });
    };
    const sent = Promise.all(targets.map((m) => m.transfersDone)).then(run);
    for (const m of targets) m.transfersDone = sent.catch(() => undefined);
    return sent;
  }

  /**
   * A replica begins sending the state asked for (`weights`): the request must be
   * outstanding, the size what the model and the declared optimizer tensors imply (the
   * optimizer at most `MAX_OPTIMIZER_VALUES_PER_WEIGHT` values per weight), checked before
   * any file is made. Its chunks go to disk as they arrive (`onStateChunk`).
   */
  protected onStateBegin(m: WorkerConnection, msg: Extract<WorkerMessage, { t: 'weights' }>): void {
    const scatter = this.scatter;
    const sinkFor = this.stateSink;
    if (!scatter || !sinkFor) throw new ProtocolError('UNEXPECTED_MESSAGE', 'weights while none were asked for');
    scatter.check(m, msg.requestId);
    if (this.inbound.has(m)) throw new ProtocolError('TRANSFER_MISMATCH', 'weights before the previous ones completed');
    const params = this.model.initialWeights.length;
    const optimizerValues = stateValues([], msg.optimizer);
    const maxOptimizer = MAX_OPTIMIZER_VALUES_PER_WEIGHT * params + 1024;
    if (optimizerValues > maxOptimizer)
      throw new ProtocolError(
        'MESSAGE_TOO_LARGE',
        `optimizer state of ${optimizerValues} values for ${params} weights (at most ${maxOptimizer})`,
      );
    const receiver = new StateReceiver(msg.state, (params + optimizerValues) * 4, sinkFor, { what: 'weights' });
    this.inbound.set(m, receiver);
    receiver.done.then(
      async () => {
        if (this.inbound.get(m) === receiver) this.inbound.delete(m);
        try {
          const files = await receiver.sink.finish();
          if (this.scatter !== scatter || !this.members.has(m)) throw new TransferCutError('no longer asked for');
          scatter.result(m, msg.requestId, {
            lossSum: 0,
            correct: 0,
            count: 1,
            state: files,
            optimizerSpecs: msg.optimizer,
          });
        } catch (err) {
          await receiver.sink.abort();
          if (!(err instanceof TransferCutError) && !(err instanceof ProtocolError)) scatter.error = err as Error;
        }
        this.signal.notify();
      },
      async (err: Error) => {
        if (this.inbound.get(m) === receiver) this.inbound.delete(m);
        await receiver.sink.abort();
        if (!(err instanceof TransferCutError)) scatter.error = err; // this side's disk failed
        this.signal.notify();
      },
    );
  }

  /** A chunk of the state a replica is sending: checked, then written; the socket pauses while the disk is behind. */
  protected onStateChunk(
    m: WorkerConnection,
    msg: Extract<WorkerMessage, { t: 'state-chunk' }>,
    payload: Uint8Array,
  ): void {
    const receiver = this.inbound.get(m);
    if (!receiver) throw new ProtocolError('TRANSFER_MISMATCH', `state chunk ${msg.index} outside any transfer`);
    receiver.accept(msg.transfer, msg.index, payload);
    this.metrics.stateTransferBytes.inc({ direction: 'received' }, payload.byteLength);
    if (receiver.pendingWrites >= MAX_QUEUED_CHUNK_WRITES) {
      m.pauseReading();
      void receiver.flushed.then(
        () => m.resumeReading(),
        () => m.resumeReading(),
      );
    }
  }

  /** Hands out a scatter's ranges to the members, re-issuing those of lost workers, until all are back. */
  protected async collect(
    scatter: Scatter,
    send: (m: WorkerConnection, id: number, range: [number, number]) => void,
    from?: WorkerConnection[],
  ): Promise<RangeStats> {
    this.phase = 'collecting';
    try {
      scatter.split(this.members.size);
      const deadline = Date.now() + COLLECT_TIMEOUT_MS;
      while (!scatter.done) {
        if (scatter.error) throw new Error(`receiving ${scatter.what} failed: ${scatter.error.message}`);
        this.checkAlive();
        const live = (from ?? [...this.members]).filter((m) => this.members.has(m));
        if (live.length === 0) throw new NoWorkersError(`no replica left to read ${scatter.what} from`);
        for (const [m, id, range] of scatter.assign(live)) send(m, id, range);
        if (await this.signal.wait(deadline - Date.now()))
          for (const m of scatter.outstandingWorkers())
            this.drop(m, `no ${scatter.what} result within ${COLLECT_TIMEOUT_MS} ms`);
      }
      return scatter.totals;
    } finally {
      this.phase = 'training';
      this.scatter = undefined;
    }
  }

  protected drop(m: WorkerConnection, reason: string): void {
    this.lastFailure = `${m.id}: ${reason}`;
    this.job.log(`worker ${m.id} dropped: ${reason}`);
    this.onWorkerLost(m, reason);
    m.send({ t: 'job-end', jobId: this.job.id, state: 'FAILED' });
    m.handler = undefined;
    this.release(m);
  }

  onWorkerLost(m: WorkerConnection, reason: string): void {
    const inbound = this.inbound.get(m);
    if (inbound) {
      this.inbound.delete(m);
      inbound.abort(new TransferCutError(reason)); // its files are removed; the request goes to another replica
    }
    this.balancer.forget(m);
    this.excused.delete(m);
    this.resyncs.delete(m);
    if (this.joining.delete(m)) {
      this.job.log(`joining worker ${m.id} left: ${reason}`);
      this.signal.notify();
      return;
    }
    if (!this.members.delete(m)) return;
    this.job.status.workers = [...this.members].map((w) => w.id);
    this.log.warn({ worker: m.id, reason }, 'worker left the job');
    this.job.log(`worker ${m.id} left: ${reason}`);
    const slice = this.pending.get(m);
    if (this.shards) this.lostFromRound(m);
    else {
      if (slice) this.sampler?.giveBack(slice);
      if (this.progress.has(m)) this.tainted = true;
    }
    this.pending.delete(m);
    this.progress.delete(m);
    this.scatter?.lost(m);
    this.signal.notify();
  }

  /**
   * Data plane: a worker that sent nothing yet is excused (its slice goes back now); one
   * that started stays in the round, whose outcome decides its slice: the shards commit
   * the round if its gradient arrived whole everywhere, and abandon it otherwise.
   */
  private lostFromRound(m: WorkerConnection): void {
    const shards = this.shards!;
    const slice = this.roundSlices.get(m);
    if (slice && !this.progress.has(m)) {
      this.roundSlices.delete(m);
      this.sampler?.giveBack(slice);
      shards.excuse(m.id);
    }
    shards.drop(m.id);
  }

  abstract onWorkerMessage(m: WorkerConnection, msg: JobMessage, payload: Uint8Array, frameBytes: number): void;
}
