import {
  EpochSampler, GradientReducer, ProtocolError, float32View, splitBatch, trainingSize,
  type EpochResult, type Logger, type TensorSpec,
} from '@gradfleet/core';
import { type Checkpoint, writeModelArtifact } from './checkpoint-store.js';
import { saveCheckpoint, startValues, type EpochTotals, type RunnerCounters } from './job-checkpoint.js';
import { modelArtifactJson } from './model-info.js';
import { ReplicaChecks } from './replica-checks.js';
import type { JobRecord } from './job-record.js';
import type { CoordinatorMetrics } from './metrics.js';
import { FramePool } from './frame-pool.js';
import { Signal } from './signal.js';
import { StepTelemetry } from './step-telemetry.js';
import type { JobMessage, JobMessageHandler, WorkerConnection } from './worker-connection.js';
import { Scatter, type RangeStats } from './scatter.js';

/** How long workers may take to build the model and load the data, in ms. */
const JOB_START_TIMEOUT_MS = 300_000;
/** Evaluation and weight fetches that take longer than this drop the slow worker, in ms. */
const COLLECT_TIMEOUT_MS = 300_000;

export class JobAbortedError extends Error {}

/** Every worker of the job is gone: the job pauses and resumes from its last checkpoint. */
export class NoWorkersError extends Error {}




/**
 * Runs one job on a set of workers: synchronous data-parallel SGD (docs/architecture.md).
 * Each step: take the next global batch from the sampler, split it among the live
 * workers, add each gradient into the reducer as it arrives, then send the one encoded
 * mean to every replica. A worker lost mid-step gives its slice back to the sampler.
 */
export class JobRunner implements JobMessageHandler {
  readonly members = new Set<WorkerConnection>();
  private readonly signal = new Signal();
  private readonly log: Logger;
  private readonly reducer: GradientReducer;
  private readonly updates: FramePool;
  private readonly telemetry: StepTelemetry;
  private readonly ready = new Map<WorkerConnection, { trainCount: number; testCount: number }>();
  private readonly pending = new Map<WorkerConnection, Uint32Array>();
  private received: Uint32Array[] = [];
  private sampler: EpochSampler | undefined;
  private scatter: Scatter | undefined;
  private epochTotals: EpochTotals = { lossSum: 0, correct: 0, samples: 0, steps: 0 };
  private readonly checks: ReplicaChecks;
  private stepNo = 0;
  private phase: 'starting' | 'training' | 'collecting' = 'starting';
  private lastFailure: string | undefined;
  private refusals = 0;
  private elapsed: () => number = () => 0;
  private trainMs = 0;
  private trainSamples = 0;

  constructor(
    private readonly job: JobRecord,
    workers: WorkerConnection[],
    private readonly metrics: CoordinatorMetrics,
    log: Logger,
    private readonly release: (conn: WorkerConnection) => void,
  ) {
    this.log = log.child({ job_id: job.id });
    this.reducer = new GradientReducer(this.model.trainableParams);
    this.updates = new FramePool(this.model.trainableParams * 4);
    this.telemetry = new StepTelemetry(metrics, job.id);
    this.checks = new ReplicaChecks(job.status.replicas, metrics, job.id, this.log, (msg) => {
      job.status.events.push({ time: new Date().toISOString(), state: job.state, reason: msg });
      job.log(msg);
    });
    for (const w of workers) {
      this.members.add(w);
      w.handler = this;
    }
  }

  private get model() {
    return this.job.model!;
  }

  /**
   * Runs the job until it ends or pauses; `resume` continues from a checkpoint (the
   * sampler mid-epoch, the optimizer state, the counters) instead of the initial weights.
   */
  async run(resume?: Checkpoint): Promise<void> {
    const job = this.job;
    job.status.workers = [...this.members].map((m) => m.id);
    job.log(`${resume ? `resuming from the checkpoint at step ${resume.step}` : 'starting'} on ${this.members.size} worker(s): ${job.status.workers.join(', ')}`);
    if (!resume) job.status.history = [];
    this.metrics.initJob(job.id, job.status.workers);
    try {
      const { trainCount, testCount } = await this.startReplicas(resume);
      const spec = job.spec;
      const nTrain = trainingSize(trainCount, spec.validationSplit);
      if (nTrain < 1) throw new Error(`validationSplit ${spec.validationSplit} leaves no training examples out of ${trainCount}`);
      this.sampler = new EpochSampler({ size: nTrain, seed: spec.seed, shuffle: spec.shuffle });
      let elapsedBefore = 0;
      if (resume) {
        const c = resume.runner as unknown as RunnerCounters;
        ({ stepNo: this.stepNo, trainSamples: this.trainSamples, trainMs: this.trainMs } = c);
        elapsedBefore = c.elapsedMs;
        job.status.history = c.history;
      }
      const t0 = Date.now() - elapsedBefore;
      this.elapsed = () => Date.now() - t0;
      for (let epoch = resume?.epoch ?? 0; epoch < spec.epochs; epoch++) {
        const started = Date.now();
        const midEpoch = resume && resume.sampler.epoch === epoch ? resume : undefined;
        this.sampler.beginEpoch(epoch, midEpoch?.sampler);
        this.epochTotals = midEpoch ? { ...(midEpoch.runner as unknown as RunnerCounters).epochTotals } : { lossSum: 0, correct: 0, samples: 0, steps: 0 };
        Object.assign(job.status.progress, { epoch, epochSize: nTrain, samplesInEpoch: 0, phase: 'training' });
        this.metrics.epoch.set({ job_id: job.id }, epoch);
        while (!this.sampler.epochComplete) await this.step(epoch);
        const t = this.epochTotals;
        const result: EpochResult = {
          epoch, loss: t.lossSum / t.samples, accuracy: t.correct / t.samples, samples: t.samples, steps: t.steps, durationMs: 0, audit: this.sampler.audit(),
        };
        if (!result.audit.ok) this.log.error({ audit: result.audit }, 'SAMPLE AUDIT FAILED: an example was skipped or repeated');
        if (trainCount > nTrain) {
          job.status.progress.phase = 'evaluating';
          const val = await this.evaluate('validation', nTrain, trainCount);
          result.valLoss = val.lossSum / val.count;
          result.valAccuracy = val.correct / val.count;
          this.metrics.validationLoss.set({ job_id: job.id }, result.valLoss);
          this.metrics.validationAccuracy.set({ job_id: job.id }, result.valAccuracy);
        }
        result.durationMs = Date.now() - started;
        job.status.history.push(result);
        this.log.info(result, `epoch ${epoch + 1}/${spec.epochs} done`);
        job.log(`epoch ${epoch + 1}/${spec.epochs}: loss ${result.loss.toFixed(4)} accuracy ${result.accuracy.toFixed(4)}${result.valAccuracy === undefined ? '' : ` val_loss ${result.valLoss!.toFixed(4)} val_accuracy ${result.valAccuracy.toFixed(4)}`} audit ${result.audit.ok ? 'ok' : 'FAILED'}`);
        if (epoch + 1 < spec.epochs) await this.checkpoint(epoch + 1);
      }
      const wallTimeMs = Date.now() - t0;
      const test = testCount > 0 ? await this.evaluate('test', 0, testCount) : undefined;
      job.finalWeights = (await this.fetchState(false)).weights;
      await writeModelArtifact(`${job.dir}/model`, modelArtifactJson(this.model), job.finalWeights);
      job.status.result = {
        ...(test ? { testLoss: test.lossSum / test.count, testAccuracy: test.correct / test.count } : {}),
        wallTimeMs, samplesPerSecond: this.trainSamples / Math.max(1e-3, this.trainMs / 1000), steps: this.stepNo,
      };
      if (job.status.result.testAccuracy !== undefined) this.metrics.testAccuracy.set({ job_id: job.id }, job.status.result.testAccuracy);
      job.transition('SUCCEEDED', 'all epochs done');
      this.log.info(job.status.result, 'job succeeded');
    } catch (err) {
      if (job.cancelRequested !== undefined) job.transition('CANCELLED', job.cancelRequested);
      else if (err instanceof NoWorkersError) job.transition('PAUSED', `${err.message}; waiting for ${job.spec.minWorkers} worker(s) to resume from the last checkpoint`);
      else job.transition('FAILED', err instanceof Error ? err.message : String(err));
      this.log.warn({ reason: job.status.reason }, `job ${job.state.toLowerCase()}`);
    } finally {
      this.metrics.jobRunning.set({ job_id: job.id }, 0);
      for (const m of this.members) {
        m.send({ t: 'job-end', jobId: job.id, state: job.state });
        m.handler = undefined;
        this.release(m);
      }
      this.members.clear();
    }
  }

  cancel(reason: string): void {
    this.job.cancelRequested = reason;
    this.signal.notify();
  }

  private checkAlive(): void {
    if (this.job.cancelRequested !== undefined) throw new JobAbortedError(this.job.cancelRequested);
    if (this.members.size === 0) {
      const why = `no workers left${this.lastFailure ? ` (last failure: ${this.lastFailure})` : ''}`;
      // Workers that refused the job (bad data, model, backend) fail it; lost ones pause it.
      if (this.refusals > 0) throw new Error(why);
      throw new NoWorkersError(why);
    }
  }

  /** Sends the spec and initial weights; waits for every replica to report ready. */
  private async startReplicas(resume?: Checkpoint): Promise<{ trainCount: number; testCount: number }> {
    const job = this.job;
    const worldSize = this.members.size;
    const values = startValues(this.model, resume);
    const data = job.data ? { train: job.data.train, ...(job.data.test ? { test: job.data.test } : {}) } : undefined;
    let rank = 0;
    for (const m of this.members) {
      m.send({
        t: 'job-start', jobId: job.id, spec: job.spec as Record<string, unknown>, rank: rank++, worldSize, layout: this.model.layout,
        optimizer: resume?.optimizerSpecs ?? [], ...(data ? { data } : {}),
      }, values);
    }
    const deadline = Date.now() + JOB_START_TIMEOUT_MS;
    while ([...this.members].some((m) => !this.ready.has(m))) {
      this.checkAlive();
      if (await this.signal.wait(deadline - Date.now())) {
        for (const m of this.members) if (!this.ready.has(m)) this.drop(m, `not ready within ${JOB_START_TIMEOUT_MS} ms`);
      }
    }
    this.checkAlive();
    const first = this.ready.get([...this.members][0]!)!;
    for (const m of this.members) {
      const r = this.ready.get(m)!;
      if (r.trainCount !== first.trainCount || r.testCount !== first.testCount) {
        this.drop(m, `dataset differs: ${r.trainCount}/${r.testCount} examples vs ${first.trainCount}/${first.testCount}`);
      }
    }
    this.checkAlive();
    this.phase = 'training';
    return first;
  }

  private async step(epoch: number): Promise<void> {
    this.checkAlive();
    const sampler = this.sampler!;
    const job = this.job;
    const spec = job.spec;
    const t0 = performance.now();
    const batch = sampler.take(spec.batchSize);
    const members = [...this.members];
    const slices = splitBatch(batch, members.map(() => 1));
    const checksum = spec.checksumEverySteps > 0 && (sampler.exhausted || (this.stepNo + 1) % spec.checksumEverySteps === 0);
    const update = this.updates.acquire();
    this.reducer.begin(update.float32()); // the mean is accumulated in place in the outgoing frame
    this.received = [];
    this.telemetry.begin();
    members.forEach((m, i) => {
      const slice = slices[i]!;
      if (slice.length === 0) return;
      this.pending.set(m, slice);
      this.telemetry.sent(m.id);
      m.send({ t: 'train', jobId: job.id, step: this.stepNo, epoch }, slice);
    });
    const deadline = Date.now() + spec.stepTimeoutMs;
    while (this.pending.size > 0) {
      if (this.job.cancelRequested !== undefined) throw new JobAbortedError(this.job.cancelRequested);
      if (await this.signal.wait(deadline - Date.now())) {
        for (const m of [...this.pending.keys()]) {
          this.telemetry.timedOut(m.id);
          m.fail(new ProtocolError('UNKNOWN_STEP', `no gradient for step ${this.stepNo} within ${spec.stepTimeoutMs} ms`));
        }
      }
    }
    if (this.reducer.count === 0) {
      this.updates.release(update);
      return; // every slice was given back; retried next step
    }
    const samples = this.reducer.samples;
    const f0 = performance.now();
    this.reducer.finish();
    const frame = update.frame({ t: 'update', jobId: job.id, step: this.stepNo, checksum });
    const recycle = this.updates.releaseAfter(update, this.members.size);
    const { straggler, sent } = this.telemetry.finish(samples, performance.now() - f0, this.members.size);
    job.status.timing = this.telemetry.timing;
    for (const m of this.members) {
      if (m.id === straggler) m.stats.stragglerEvents++;
      m.sendFrame(frame, () => {
        recycle();
        sent();
      });
      this.metrics.gradientSentBytes.inc({ worker: m.id }, update.payload.byteLength);
    }
    for (const s of this.received) sampler.complete(s);
    const seconds = (performance.now() - t0) / 1000;
    this.trainMs += seconds * 1000;
    this.trainSamples += samples;
    this.stepNo++;
    this.epochTotals.steps++;
    const t = this.epochTotals;
    this.metrics.trainLoss.set({ job_id: job.id }, t.lossSum / t.samples);
    this.metrics.trainAccuracy.set({ job_id: job.id }, t.correct / t.samples);
    this.metrics.epochProgress.set({ job_id: job.id }, sampler.completed / sampler.size);
    Object.assign(job.status.progress, {
      step: this.stepNo, samplesInEpoch: sampler.completed, samplesPerSecond: this.trainSamples / Math.max(1e-3, this.trainMs / 1000),
    });
    const every = spec.checkpointEverySteps;
    if (every > 0 && this.stepNo % every === 0 && !sampler.exhausted) await this.checkpoint(epoch);
  }

  /**
   * Writes a checkpoint at a step boundary (nothing in flight): weights and optimizer state
   * from one replica, the sampler position and the counters. `epoch` is the epoch to resume
   * in (the next one after an epoch end).
   */
  private async checkpoint(epoch: number): Promise<void> {
    const job = this.job;
    const { weights, optimizer, optimizerSpecs } = await this.fetchState(true);
    const sampler = this.sampler!;
    const samplerState = epoch === sampler.epoch ? sampler.state() : { epoch, cursor: 0, retry: [] };
    const runner: RunnerCounters = {
      stepNo: this.stepNo, epochTotals: { ...this.epochTotals }, trainSamples: this.trainSamples, trainMs: this.trainMs,
      elapsedMs: this.elapsed(), history: job.status.history,
    };
    await saveCheckpoint(job, this.model, { step: this.stepNo, epoch, sampler: samplerState, runner: runner as unknown as Record<string, unknown>, weights, optimizer, optimizerSpecs });
  }

  private async evaluate(split: 'validation' | 'test', start: number, end: number): Promise<RangeStats> {
    this.scatter = new Scatter(split, start, end);
    return this.collect(this.scatter, (m, id, range) => m.send({ t: 'evaluate', jobId: this.job.id, requestId: id, split, start: range[0], end: range[1] }));
  }

  /** Weights (and optionally optimizer state) from one replica. */
  private async fetchState(withOptimizer: boolean): Promise<{ weights: Float32Array; optimizer: Float32Array; optimizerSpecs: TensorSpec[] }> {
    this.scatter = new Scatter('weights', 0, 1);
    const stats = await this.collect(this.scatter, (m, id) => m.send({ t: 'fetch-weights', jobId: this.job.id, requestId: id, withOptimizer }));
    const n = this.model.initialWeights.length;
    return { weights: stats.weights!.slice(0, n), optimizer: stats.weights!.slice(n), optimizerSpecs: stats.optimizerSpecs ?? [] };
  }

  /** Hands out a scatter's ranges to the members, re-issuing those of lost workers, until all are back. */
  private async collect(scatter: Scatter, send: (m: WorkerConnection, id: number, range: [number, number]) => void): Promise<RangeStats> {
    this.phase = 'collecting';
    try {
      scatter.split(this.members.size);
      const deadline = Date.now() + COLLECT_TIMEOUT_MS;
      while (!scatter.done) {
        this.checkAlive();
        for (const [m, id, range] of scatter.assign([...this.members])) send(m, id, range);
        if (await this.signal.wait(deadline - Date.now())) for (const m of scatter.outstandingWorkers()) this.drop(m, `no ${scatter.what} result within ${COLLECT_TIMEOUT_MS} ms`);
      }
      return scatter.totals;
    } finally {
      this.phase = 'training';
      this.scatter = undefined;
    }
  }

  private drop(m: WorkerConnection, reason: string): void {
    this.lastFailure = `${m.id}: ${reason}`;
    this.job.log(`worker ${m.id} dropped: ${reason}`);
    this.onWorkerLost(m, reason);
    m.send({ t: 'job-end', jobId: this.job.id, state: 'FAILED' });
    m.handler = undefined;
    this.release(m);
  }

  onWorkerLost(m: WorkerConnection, reason: string): void {
    if (!this.members.delete(m)) return;
    this.log.warn({ worker: m.id, reason }, 'worker left the job');
    this.job.log(`worker ${m.id} left: ${reason}`);
    const slice = this.pending.get(m);
    if (slice) {
      this.pending.delete(m);
      this.sampler?.giveBack(slice);
    }
    this.scatter?.lost(m);
    this.signal.notify();
  }

  onWorkerMessage(m: WorkerConnection, msg: JobMessage, payload: Uint8Array): void {
    if (!this.members.has(m)) throw new ProtocolError('UNKNOWN_STEP', `${msg.t} from a worker no longer in job ${this.job.id}`);
    if (msg.t !== 'failure' && msg.jobId !== this.job.id) throw new ProtocolError('UNKNOWN_STEP', `${msg.t} for job ${msg.jobId}, worker runs ${this.job.id}`);
    switch (msg.t) {
      case 'ready':
        if (this.phase !== 'starting' || this.ready.has(m)) throw new ProtocolError('UNEXPECTED_MESSAGE', 'ready outside job start');
        this.ready.set(m, { trainCount: msg.trainCount, testCount: msg.testCount });
        break;
      case 'gradient': {
        const slice = this.pending.get(m);
        if (msg.step !== this.stepNo || !slice) {
          if (msg.step === this.stepNo && this.phase === 'training') throw new ProtocolError('DUPLICATE_MESSAGE', `second gradient for step ${msg.step}`);
          throw new ProtocolError('UNKNOWN_STEP', `gradient for step ${msg.step}, step in flight is ${this.stepNo}`);
        }
        if (msg.samples !== slice.length) throw new ProtocolError('MALFORMED_FRAME', `gradient over ${msg.samples} samples, slice has ${slice.length}`);
        const a0 = performance.now();
        this.reducer.add(float32View(payload), msg.samples); // throws on bad size / NaN: slice given back on close
        this.telemetry.arrived(m.id, msg.computeMs, msg.applyMs, msg.samples, payload.byteLength, performance.now() - a0);
        m.stats.record(msg.samples, msg.computeMs);
        this.pending.delete(m);
        this.received.push(slice);
        this.epochTotals.lossSum += msg.lossSum;
        this.epochTotals.correct += msg.correct;
        this.epochTotals.samples += msg.samples;
        break;
      }
      case 'eval-result':
        if (!this.scatter) throw new ProtocolError('UNEXPECTED_MESSAGE', 'eval-result while no evaluation runs');
        this.scatter.result(m, msg.requestId, { lossSum: msg.lossSum, correct: msg.correct, count: msg.count });
        break;
      case 'weights': {
        if (!this.scatter) throw new ProtocolError('UNEXPECTED_MESSAGE', 'weights while none were asked for');
        const expected = (this.model.initialWeights.length + msg.optimizer.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0)) * 4;
        if (payload.byteLength !== expected) throw new ProtocolError('GRADIENT_SIZE_MISMATCH', `weights of ${payload.byteLength} bytes, expected ${expected}`);
        this.scatter.result(m, msg.requestId, { lossSum: 0, correct: 0, count: 1, weights: Float32Array.from(float32View(payload)), optimizerSpecs: msg.optimizer });
        break;
      }
      case 'checksum':
        this.checks.record(m.id, msg.step, msg.hash, msg.sum);
        return;
      case 'failure':
        this.log.error({ worker: m.id, message: msg.message }, 'worker failed');
        this.refusals++;
        this.drop(m, msg.message);
        return;
    }
    this.signal.notify();
  }
}
