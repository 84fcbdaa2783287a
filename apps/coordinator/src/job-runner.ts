import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ArrayStateSource,
  ProtocolError,
  learningRateAt,
  allocFrame,
  metricSumCount,
  metricValues,
  trainingSize,
  EpochSampler,
  type EpochResult,
} from '@gradfleet/core';
import { DATA_FRAME_HEADER_BYTES } from '@gradfleet/core/dataplane';
import { checkpointSource, commitModelArtifact, modelArtifactSink, type StoredCheckpoint } from './checkpoint-store.js';
import { epochMeans, saveCheckpoint, type RunnerCounters } from './job-checkpoint.js';
import { JobEarlyStopping } from './job-early-stopping.js';
import { FileStateSource } from './state-files.js';
import { JobAbortedError, JobRunnerCore, NoWorkersError, type DataCounts } from './job-runner-core.js';
import type { RangeStats } from './scatter.js';
import { modelArtifactJson } from './model-info.js';
import { PrefetchPlanner } from './prefetch-planner.js';
import type { JobMessage, WorkerConnection } from './worker-connection.js';

export { JobAbortedError, NoWorkersError };

/**
 * Bytes a worker may have queued beyond two steps of updates before it counts as a slow
 * reader and is closed (the synchronous protocol never queues more for a live worker).
 */
const SLOW_READER_SLACK_BYTES = 1024 * 1024;

/** How long workers may take to build the model and load the data, in ms. */
const JOB_START_TIMEOUT_MS = 300_000;
/**
 * How long a committed data-plane round waits for its contributors' stats, in ms: they were
 * sent before the gradient's first bucket on an in-order connection, so only event-loop
 * scheduling separates them; the bound covers a worker lost in between.
 */
const ROUND_STATS_GRACE_MS = 5_000;

/**
 * Runs one job on a set of workers: synchronous data-parallel SGD (docs/architecture.md).
 * Each step: take the next global batch from the sampler, split it among the live
 * workers (by chunk owner on a large chunked dataset, `EpochSampler.split`), add each gradient into the reducer as it arrives, then send the one encoded
 * mean to every replica. A worker lost mid-step gives its slice back to the sampler.
 */
export class JobRunner extends JobRunnerCore {
  /** This step's totals; `reported`: samples whose loss and accuracy arrived. */
  private stepTotals = { lossSum: 0, correct: 0, samples: 0, reported: 0 };
  private earlyStopping: JobEarlyStopping | undefined;
  /** Chunked datasets: tells workers which chunks their next steps need. */
  private prefetch: PrefetchPlanner | undefined;
  /**
   * Runs the job until it ends or pauses; `resume` continues from a checkpoint (the
   * sampler mid-epoch, the optimizer state, the counters) instead of the initial weights.
   */
  async run(resume?: StoredCheckpoint): Promise<void> {
    const job = this.job;
    job.status.workers = [...this.members].map((m) => m.id);
    job.log(
      `${resume ? `resuming from the checkpoint at step ${resume.step}` : 'starting'} on ${this.members.size} worker(s): ${job.status.workers.join(', ')}`,
    );
    if (!resume) job.status.history = [];
    this.metrics.initJob(job.id, job.status.workers);
    try {
      await rm(join(job.dir, 'transfers'), { recursive: true, force: true }); // left by a killed coordinator
      // Replicas on the data plane count applied updates from the step they start at.
      if (resume) this.stepNo = (resume.runner as unknown as RunnerCounters).stepNo;
      const { trainCount, testCount, validationCount } = await this.startReplicas(resume);
      const spec = job.spec;
      const nTrain = trainingSize(trainCount, spec.validationSplit);
      if (nTrain < 1)
        throw new Error(`validationSplit ${spec.validationSplit} leaves no training examples out of ${trainCount}`);
      const chunkExamples = job.data?.format === 'chunked' ? job.data.chunkExamples : undefined;
      if (chunkExamples) this.prefetch = new PrefetchPlanner(job.id, chunkExamples);
      this.sampler = new EpochSampler({
        size: nTrain,
        seed: spec.seed,
        shuffle: spec.shuffle,
        ...(chunkExamples ? { chunks: { chunkExamples, windowChunks: spec.shuffleWindowChunks } } : {}),
      });
      let elapsedBefore = 0;
      if (resume) {
        const c = resume.runner as unknown as RunnerCounters;
        ({ stepNo: this.stepNo, trainSamples: this.trainSamples, trainMs: this.trainMs } = c);
        elapsedBefore = c.elapsedMs;
        job.status.history = c.history;
      }
      this.earlyStopping = await JobEarlyStopping.open(
        job,
        (resume?.runner as unknown as RunnerCounters | undefined)?.earlyStopping,
      );
      this.showLearningRate();
      const t0 = Date.now() - elapsedBefore;
      let testEvalMs = 0;
      this.elapsed = () => Date.now() - t0;
      let lastEpoch = (resume?.epoch ?? 0) - 1;
      for (let epoch = resume?.epoch ?? 0; epoch < spec.epochs; epoch++) {
        const started = Date.now();
        const midEpoch = resume && resume.sampler.epoch === epoch ? resume : undefined;
        this.sampler.beginEpoch(epoch, midEpoch?.sampler);
        this.epochTotals = midEpoch
          ? { ...(midEpoch.runner as unknown as RunnerCounters).epochTotals }
          : { lossSum: 0, correct: 0, samples: 0, steps: 0 };
        Object.assign(job.status.progress, { epoch, epochSize: nTrain, samplesInEpoch: 0, phase: 'training' });
        this.metrics.epoch.set({ job_id: job.id }, epoch);
        while (!this.sampler.epochComplete) await this.step(epoch);
        const t = this.epochTotals;
        const result: EpochResult = {
          epoch,
          ...epochMeans(t),
          samples: t.samples,
          steps: t.steps,
          durationMs: 0,
          audit: this.sampler.audit(),
        };
        if (!result.audit.ok)
          this.log.error({ audit: result.audit }, 'SAMPLE AUDIT FAILED: an example was skipped or repeated');
        // The dataset's own validation set, or the tail of the training set (`validationSplit`).
        const [valStart, valEnd] = validationCount > 0 ? [0, validationCount] : [nTrain, trainCount];
        if (valEnd > valStart) {
          job.status.progress.phase = 'evaluating';
          const val = await this.evaluate('validation', valStart, valEnd);
          result.valLoss = val.lossSum / val.count;
          result.valAccuracy = val.correct / val.count;
          this.metrics.validationLoss.set({ job_id: job.id }, result.valLoss);
          this.metrics.validationAccuracy.set({ job_id: job.id }, result.valAccuracy);
          const valMetrics = this.metricsOf(val);
          if (valMetrics) {
            result.valMetrics = valMetrics;
            for (const [metric, v] of Object.entries(valMetrics))
              this.metrics.validationMetric.set({ job_id: job.id, metric }, v);
          }
        }
        result.durationMs = Date.now() - started;
        result.elapsedMs = this.elapsed() - testEvalMs;
        if (spec.testEveryEpoch && testCount > 0 && epoch + 1 < spec.epochs) {
          const e0 = Date.now();
          const test = await this.evaluate('test', 0, testCount);
          Object.assign(result, this.testResults(test));
          testEvalMs += Date.now() - e0;
        }
        job.status.history.push(result);
        this.log.info(result, `epoch ${epoch + 1}/${spec.epochs} done`);
        const valMetricText = Object.entries(result.valMetrics ?? {})
          .map(([k, v]) => ` val_${k} ${v.toFixed(4)}`)
          .join('');
        job.log(
          `epoch ${epoch + 1}/${spec.epochs}: loss ${result.loss.toFixed(4)} accuracy ${result.accuracy.toFixed(4)}${result.valAccuracy === undefined ? '' : ` val_loss ${result.valLoss!.toFixed(4)} val_accuracy ${result.valAccuracy.toFixed(4)}`}${valMetricText} audit ${result.audit.ok ? 'ok' : 'FAILED'}`,
        );
        lastEpoch = epoch;
        const stop = await this.earlyStopping?.afterEpoch(result, (dir) => this.saveWeights(dir));
        if (stop) break;
        if (epoch + 1 < spec.epochs) await this.checkpoint(epoch + 1);
      }
      const restore = this.earlyStopping?.weightsToRestore(lastEpoch);
      if (restore) {
        // Every replica takes the best epoch's weights: the test results and the model are theirs.
        const source = new FileStateSource([
          { path: join(restore.dir, 'weights.bin'), bytes: this.model.initialWeights.byteLength },
        ]);
        try {
          await this.sendState(
            [...this.members],
            (_m, state) => ({ t: 'load-state', jobId: job.id, step: this.stepNo, optimizer: [], state }),
            source,
          );
        } finally {
          await source.close();
        }
        job.log(`restored the weights of epoch ${restore.epoch + 1}, the best by ${spec.earlyStopping!.monitor}`);
      }
      const wallTimeMs = Date.now() - t0 - testEvalMs;
      const test = testCount > 0 ? await this.evaluate('test', 0, testCount) : undefined;
      const last = job.status.history.at(-1);
      if (test && last && spec.testEveryEpoch) Object.assign(last, this.testResults(test));
      const modelDir = join(job.dir, 'model');
      await this.saveWeights(modelDir);
      await this.earlyStopping?.finish();
      job.status.result = {
        ...(test ? this.testResults(test) : {}),
        wallTimeMs,
        samplesPerSecond: this.trainSamples / Math.max(1e-3, this.trainMs / 1000),
        steps: this.stepNo,
      };
      if (job.status.result.testAccuracy !== undefined)
        this.metrics.testAccuracy.set({ job_id: job.id }, job.status.result.testAccuracy);
      for (const [metric, v] of Object.entries(job.status.result.testMetrics ?? {}))
        this.metrics.testMetric.set({ job_id: job.id, metric }, v);
      const stopped = this.earlyStopping?.reason;
      if (stopped) job.status.reason = stopped; // a success with a reason: it ended before `epochs`
      job.transition('SUCCEEDED', stopped ?? 'all epochs done');
      this.log.info(job.status.result, 'job succeeded');
    } catch (err) {
      if (job.cancelRequested !== undefined) job.transition('CANCELLED', job.cancelRequested);
      else if (err instanceof NoWorkersError)
        job.transition(
          'PAUSED',
          `${err.message}; waiting for ${job.spec.minWorkers} worker(s) to resume from the last checkpoint`,
        );
      else job.transition('FAILED', err instanceof Error ? err.message : String(err));
      this.log.warn({ reason: job.status.reason }, `job ${job.state.toLowerCase()}`);
    } finally {
      this.finished = true;
      this.metrics.jobRunning.set({ job_id: job.id }, 0);
      for (const m of [...this.members, ...this.joining]) {
        m.send({ t: 'job-end', jobId: job.id, state: job.state });
        m.handler = undefined;
        this.release(m);
      }
      this.members.clear();
      this.joining.clear();
      this.shards?.end(); // after job-end went out: workers close their data connections first
    }
  }
  /** How many sums an `eval-result` carries for the job's metrics. */
  private get metricSumsExpected(): number {
    return this.job.spec.metrics.reduce((n, m) => n + metricSumCount(m), 0);
  }

  /** The job's `metrics` from an evaluation's summed parts (absent when it lists none). */
  private metricsOf(stats: RangeStats): Record<string, number> | undefined {
    const metrics = this.job.spec.metrics;
    if (metrics.length === 0) return undefined;
    return metricValues(metrics, stats.metrics ?? [], stats.count);
  }

  /** Test loss, accuracy and the job's metrics from the test split's summed results. */
  private testResults(test: RangeStats): {
    testLoss: number;
    testAccuracy: number;
    testMetrics?: Record<string, number>;
  } {
    const testMetrics = this.metricsOf(test);
    return {
      testLoss: test.lossSum / test.count,
      testAccuracy: test.correct / test.count,
      ...(testMetrics ? { testMetrics } : {}),
    };
  }

  /**
   * At a step boundary: ready joiners and diverged replicas take the state of a healthy
   * replica; below `minWorkers` the job pauses in place (replicas kept) until enough join.
   */
  private async integrate(): Promise<void> {
    const job = this.job;
    await this.verifyReplicas();
    for (;;) {
      this.checkAlive();
      const ready = [...this.joining].filter((m) => this.ready.has(m));
      for (const m of ready) {
        const r = this.ready.get(m)!;
        const d = this.dataCounts!;
        if (r.trainCount !== d.trainCount || r.testCount !== d.testCount)
          this.drop(m, `dataset differs: ${r.trainCount}/${r.testCount} examples vs ${d.trainCount}/${d.testCount}`);
      }
      const targets = [...ready.filter((m) => this.joining.has(m)), ...this.resyncs];
      const sources = [...this.members].filter((m) => !this.resyncs.has(m));
      if (targets.length > 0 && sources.length > 0) {
        const sent = await this.copyState(sources, () =>
          targets.filter((m) => m.isOpen && (this.joining.has(m) || this.members.has(m))),
        );
        for (const m of sent) {
          if (!m.isOpen) continue;
          if (this.joining.delete(m)) {
            this.members.add(m);
            this.metrics.initJob(job.id, [m.id]);
            job.status.workers = [...this.members].map((w) => w.id);
            job.log(`worker ${m.id} joined at step ${this.stepNo}`);
          }
        }
        this.resyncs.clear();
      }
      if (this.members.size >= job.spec.minWorkers) {
        if (this.pausedInPlace) job.transition('RUNNING', `${this.members.size} workers again`);
        this.pausedInPlace = false;
        return;
      }
      if (!this.pausedInPlace) {
        job.transition('PAUSED', `${this.members.size} of minWorkers ${job.spec.minWorkers} workers; waiting for more`);
        this.pausedInPlace = true;
      }
      this.needWorkers();
      await this.signal.wait(60_000);
    }
  }
  /** Sends the spec and initial weights; waits for every replica to report ready. */
  private async startReplicas(resume?: StoredCheckpoint): Promise<DataCounts> {
    const job = this.job;
    const worldSize = this.members.size;
    const data = this.remoteData();
    const members = [...this.members];
    // The initial weights from memory (never copied), or a checkpoint's state read from disk chunk by chunk.
    const source = resume ? checkpointSource(resume) : new ArrayStateSource([this.model.initialWeights]);
    try {
      await this.sendState(
        members,
        (m, state) => ({
          t: 'job-start',
          jobId: job.id,
          spec: job.spec as Record<string, unknown>,
          rank: members.indexOf(m),
          worldSize,
          layout: this.model.layout,
          optimizer: resume?.optimizerSpecs ?? [],
          state,
          ...(data ? { data } : {}),
          ...this.dataPlaneInfo(),
        }),
        source,
      );
    } finally {
      if (source instanceof FileStateSource) await source.close();
    }
    const deadline = Date.now() + JOB_START_TIMEOUT_MS;
    while ([...this.members].some((m) => !this.ready.has(m))) {
      this.checkAlive();
      if (await this.signal.wait(deadline - Date.now())) {
        for (const m of this.members)
          if (!this.ready.has(m)) this.drop(m, `not ready within ${JOB_START_TIMEOUT_MS} ms`);
      }
    }
    this.checkAlive();
    const first = this.ready.get([...this.members][0]!)!;
    for (const m of this.members) {
      const r = this.ready.get(m)!;
      if (r.trainCount !== first.trainCount || r.testCount !== first.testCount) {
        this.drop(
          m,
          `dataset differs: ${r.trainCount}/${r.testCount} examples vs ${first.trainCount}/${first.testCount}`,
        );
      }
    }
    this.checkAlive();
    this.phase = 'training';
    this.dataCounts = first;
    return first;
  }

  private async step(epoch: number): Promise<void> {
    await this.integrate();
    const sampler = this.sampler!;
    const job = this.job;
    const spec = job.spec;
    const t0 = performance.now();
    const batch = sampler.take(spec.batchSize);
    const members = [...this.members];
    const weights = this.balancer.weights(members);
    const slices = sampler.split(batch, weights);
    const checksum =
      spec.checksumEverySteps > 0 && (sampler.exhausted || (this.stepNo + 1) % spec.checksumEverySteps === 0);
    this.received = [];
    this.tainted = false;
    this.stepTotals = { lossSum: 0, correct: 0, samples: 0, reported: 0 };
    this.progress.clear();
    this.telemetry.begin();
    if (this.shards) this.beginRound(members, slices, checksum);
    // Every bucket is added in place as it arrives; the add that completes the batch folds in 1/total.
    else this.reducer.begin(batch.length);
    members.forEach((m, i) => {
      const slice = slices[i]!;
      if (slice.length === 0) return;
      this.pending.set(m, slice);
      this.telemetry.sent(m.id);
      m.send(
        { t: 'train', jobId: job.id, step: this.stepNo, epoch, ...(this.shards ? { round: this.round } : {}) },
        slice,
      );
    });
    this.prefetch?.plan(sampler, spec.batchSize, members, weights);
    await this.gather();
    if (this.shards && !(await this.settleRound())) return;
    if (this.tainted || this.stepTotals.samples === 0) {
      // A worker was lost part-way through its buckets (or every slice was given back):
      // nothing partial is ever averaged; the slices that did arrive are retried next step.
      for (const s of this.received) sampler.giveBack(s);
      if (this.tainted)
        job.log(`step ${this.stepNo} abandoned: a worker was lost while sending its gradient; its batch is retried`);
      return;
    }
    const samples = this.stepTotals.samples;
    const f0 = performance.now();
    const frames = this.shards ? [] : this.encodeUpdate(checksum);
    const { straggler, sent } = this.telemetry.finish(samples, performance.now() - f0, this.members.size);
    if (this.shards) sent(); // the shards sent the update
    job.status.timing = this.telemetry.timing;
    const bytes = frames.reduce((n, f) => n + f.frame.byteLength, 0);
    const limit = 2 * bytes + SLOW_READER_SLACK_BYTES;
    for (const m of this.members) {
      if (m.id === straggler) m.stats.stragglerEvents++;
      if (this.shards) continue;
      if (m.bufferedAmount > limit) {
        m.fail(
          new ProtocolError(
            'SLOW_READER',
            `${m.bufferedAmount} bytes still queued for this worker, over two steps of updates`,
          ),
        );
        continue;
      }
      const last = frames.length - 1;
      frames.forEach(({ frame, done }, b) =>
        m.sendFrame(
          frame,
          b === last
            ? () => {
                done();
                sent();
              }
            : done,
        ),
      );
      this.metrics.gradientSentBytes.inc({ worker: m.id }, bytes);
    }
    const t = this.epochTotals;
    t.lossSum += this.stepTotals.lossSum;
    t.correct += this.stepTotals.correct;
    t.samples += samples;
    t.unreported = (t.unreported ?? 0) + samples - this.stepTotals.reported;
    for (const s of this.received) sampler.complete(s);
    const seconds = (performance.now() - t0) / 1000;
    this.trainMs += seconds * 1000;
    this.trainSamples += samples;
    this.stepNo++;
    t.steps++;
    const means = epochMeans(t);
    this.metrics.trainLoss.set({ job_id: job.id }, means.loss);
    this.metrics.trainAccuracy.set({ job_id: job.id }, means.accuracy);
    this.metrics.epochProgress.set({ job_id: job.id }, sampler.completed / sampler.size);
    Object.assign(job.status.progress, {
      step: this.stepNo,
      samplesInEpoch: sampler.completed,
      samplesPerSecond: this.trainSamples / Math.max(1e-3, this.trainMs / 1000),
    });
    this.showLearningRate();
    const every = spec.checkpointEverySteps;
    if (every > 0 && this.stepNo % every === 0 && !sampler.exhausted) await this.checkpoint(epoch);
  }

  /** The rate the replicas apply at the next step (`learningRateAt`, the replicas' own function), in status and metrics. */
  private showLearningRate(): void {
    const lr = learningRateAt(this.job.spec.learningRate, this.job.spec.lrSchedule, this.stepNo);
    this.job.status.progress.learningRate = lr;
    this.metrics.learningRate.set({ job_id: this.job.id }, lr);
  }

  /** Data plane: plans a round on the shards (contributors, recipients) before the slices go out. */
  private beginRound(members: WorkerConnection[], slices: Uint32Array[], checksum: boolean): void {
    this.round++;
    this.roundSlices.clear();
    const contributors: Record<string, number> = {};
    members.forEach((m, i) => {
      const slice = slices[i]!;
      if (slice.length === 0) return;
      contributors[m.id] = slice.length;
      this.roundSlices.set(m, slice);
    });
    // Replicas may report their checksum before the shards' completion reaches this thread.
    if (checksum)
      this.checks.expect(
        this.stepNo,
        members.map((m) => m.id),
      );
    this.shards!.begin({
      round: this.round,
      step: this.stepNo,
      contributors,
      recipients: members.map((m) => m.id),
      checksum,
    });
  }

  /**
   * Data plane: waits until the shards commit the round (every replica received the whole
   * update: its slices are done) or abandon it (a contributor lost or excused part-way, or
   * past `stepTimeoutMs`: its slices are retried). Returns true on commit.
   */
  private async settleRound(): Promise<boolean> {
    const shards = this.shards!;
    const hard = Date.now() + this.job.spec.stepTimeoutMs;
    const outBefore = shards.bytesOut;
    for (;;) {
      if (this.job.cancelRequested !== undefined) throw new JobAbortedError(this.job.cancelRequested);
      if (shards.error) throw new Error(`reducer shard failed: ${shards.error}`);
      const outcome = shards.outcome;
      if (outcome) {
        if (outcome === 'commit') await this.awaitRoundStats();
        const slices = [...this.roundSlices.values()];
        this.roundSlices.clear();
        this.pending.clear(); // stats still on the way are dropped on arrival
        if (outcome === 'abandon') {
          this.checks.cancel(this.stepNo);
          for (const s of slices) this.sampler!.giveBack(s);
          this.job.log(
            `step ${this.stepNo} abandoned: ${shards.tainted ?? `not averaged within ${this.job.spec.stepTimeoutMs} ms`}; its batch is retried`,
          );
          return false;
        }
        this.received = slices;
        this.stepTotals.samples = slices.reduce((n, s) => n + s.length, 0);
        if (this.checks.hashing) shards.digests.forEach((d, b) => this.checks.updateDigestSent(this.stepNo, b, d));
        const perRecipient = (shards.bytesOut - outBefore) / Math.max(1, this.members.size);
        for (const m of this.members) this.metrics.gradientSentBytes.inc({ worker: m.id }, perRecipient);
        return true;
      }
      if (shards.tainted !== undefined || this.roundSlices.size === 0 || Date.now() >= hard) shards.abort();
      await this.signal.wait(Math.max(100, hard - Date.now()));
    }
  }

  /**
   * Data plane: a committed round's loss and accuracy come from each contributor's
   * `gradient-sent`, which travels on the control connection while its buckets travel to the
   * shards, so the shards' completion can overtake it. Every contributor sent its stats before
   * its first bucket, so they are waited for (a short grace; a worker lost meanwhile leaves
   * its samples out of the epoch's loss and accuracy, counted as unreported).
   */
  private async awaitRoundStats(): Promise<void> {
    const until = Date.now() + ROUND_STATS_GRACE_MS;
    while (this.pending.size > 0 && Date.now() < until) await this.signal.wait(until - Date.now());
  }

  /** Bytes of one worker's whole gradient on the data plane (every bucket with its header). */
  private get roundBytes(): number {
    const { plan, codec } = this.reducer;
    let n = 0;
    for (let b = 0; b < plan.count; b++) n += DATA_FRAME_HEADER_BYTES + codec.gradientBytes(plan.length(b));
    return n;
  }

  /**
   * Waits for every pending gradient: up to the straggler deadline once some are in (late
   * slices go back to the pool), up to `stepTimeoutMs` in any case (then the worker is dropped).
   */
  private async gather(): Promise<void> {
    const spec = this.job.spec;
    const expected = this.pending.size;
    const hard = Date.now() + spec.stepTimeoutMs;
    const recent = this.telemetry.timing.stepMs;
    let soft =
      spec.stragglerDeadlineFactor > 0 && this.stepNo >= 10
        ? Date.now() + Math.max(spec.stragglerMinDeadlineMs, spec.stragglerDeadlineFactor * recent)
        : hard;
    while (this.pending.size > 0) {
      if (this.job.cancelRequested !== undefined) throw new JobAbortedError(this.job.cancelRequested);
      // Data plane: the shards settled the round (late stats are not waited for), or it is lost anyway.
      if (this.shards && (this.shards.outcome || this.shards.tainted !== undefined || this.shards.error)) break;
      if (spec.backupWorkers > 0 && this.received.length > 0 && this.received.length >= expected - spec.backupWorkers) {
        this.excusePending('backup workers: enough gradients are in');
        if (this.pending.size === 0) break;
      }
      if (!(await this.signal.wait(Math.min(soft, hard) - Date.now()))) continue;
      if (Date.now() >= hard) {
        for (const m of [...this.pending.keys()]) {
          this.telemetry.excused(m.id);
          m.fail(
            new ProtocolError('UNKNOWN_STEP', `no gradient for step ${this.stepNo} within ${spec.stepTimeoutMs} ms`),
          );
        }
      } else if (this.received.length > 0) {
        this.excusePending(`past the straggler deadline (${Math.round(soft - hard + spec.stepTimeoutMs)} ms)`);
        soft = hard; // whoever is part-way through sending is waited for
      } else {
        soft = hard; // nobody is in yet: wait up to the step timeout
      }
    }
  }

  /**
   * Scales each bucket of the sum by 1/samples and encodes it once with the job's codec;
   * the same frame goes to every replica (dense frames are recycled once all sends are done).
   */
  private encodeUpdate(checksum: boolean): { frame: Buffer; done: () => void }[] {
    const { plan, codec } = this.reducer;
    const header = { t: 'update' as const, jobId: this.job.id, step: this.stepNo, checksum };
    if (checksum)
      this.checks.expect(
        this.stepNo,
        [...this.members].map((m) => m.id),
      );
    return Array.from({ length: plan.count }, (_, b) => {
      const values = this.reducer.finishBucket(b, this.stepTotals.samples);
      if (codec.sparse) {
        const { frame, payload } = allocFrame({ ...header, bucket: b }, codec.updateBytes(values));
        codec.encodeUpdate(values, payload);
        this.checks.updateSent(this.stepNo, b, payload);
        return { frame, done: () => undefined };
      }
      const pool = this.updates[b]!;
      const writer = pool.acquire();
      codec.encodeUpdate(values, writer.payload);
      this.checks.updateSent(this.stepNo, b, writer.payload);
      return { frame: writer.frame({ ...header, bucket: b }), done: pool.releaseAfter(writer, this.members.size) };
    });
  }

  /**
   * Writes a checkpoint at a step boundary (nothing in flight): weights and optimizer state
   * from one replica, the sampler position and the counters. `epoch` is the epoch to resume
   * in (the next one after an epoch end).
   */
  /** Streams one replica's weights into the model artifact `dir` (`model.json` + `weights.bin`), atomically. */
  private async saveWeights(dir: string): Promise<void> {
    const { files } = await this.fetchState(false, (bytes) => modelArtifactSink(dir, bytes));
    await commitModelArtifact(files, dir, modelArtifactJson(this.model));
  }

  private async checkpoint(epoch: number): Promise<void> {
    const job = this.job;
    const step = this.stepNo;
    const weightsBytes = this.model.initialWeights.byteLength;
    // The replica's state goes straight into the checkpoint's temporary directory as it arrives.
    const { files, optimizerSpecs } = await this.fetchState(true, (bytes) =>
      job.checkpoints.sink(step, weightsBytes, bytes),
    );
    const sampler = this.sampler!;
    const midEpoch = epoch === sampler.epoch;
    const samplerState = midEpoch ? sampler.state() : { epoch, cursor: 0, retry: [] };
    const runner: RunnerCounters = {
      stepNo: this.stepNo,
      // At an epoch end the totals resumed from are the next epoch's: none yet.
      epochTotals: midEpoch ? { ...this.epochTotals } : { lossSum: 0, correct: 0, samples: 0, steps: 0 },
      trainSamples: this.trainSamples,
      trainMs: this.trainMs,
      elapsedMs: this.elapsed(),
      history: job.status.history,
      ...(this.earlyStopping ? { earlyStopping: this.earlyStopping.state() } : {}),
    };
    await saveCheckpoint(job, this.model, files, {
      step,
      epoch,
      sampler: samplerState,
      runner: runner as unknown as Record<string, unknown>,
      optimizerSpecs,
    });
  }

  onWorkerMessage(m: WorkerConnection, msg: JobMessage, payload: Uint8Array, frameBytes: number): void {
    if (!this.members.has(m) && !this.joining.has(m))
      throw new ProtocolError('UNKNOWN_STEP', `${msg.t} from a worker no longer in job ${this.job.id}`);
    if (msg.t !== 'failure' && msg.t !== 'state-chunk' && msg.jobId !== this.job.id)
      throw new ProtocolError('UNKNOWN_STEP', `${msg.t} for job ${msg.jobId}, worker runs ${this.job.id}`);
    switch (msg.t) {
      case 'ready':
        if ((this.phase !== 'starting' && !this.joining.has(m)) || this.ready.has(m))
          throw new ProtocolError('UNEXPECTED_MESSAGE', 'ready outside job start');
        this.ready.set(m, {
          trainCount: msg.trainCount,
          testCount: msg.testCount,
          validationCount: msg.validationCount ?? 0,
        });
        break;
      case 'gradient': {
        if (this.shards)
          throw new ProtocolError(
            'UNEXPECTED_MESSAGE',
            'gradient on the control connection: this job uses the data plane',
          );
        const excusedUpTo = this.excused.get(m);
        if (excusedUpTo !== undefined && msg.step <= excusedUpTo) {
          // A straggler's late gradient (of this or an earlier excused step): its slice was already given back.
          if (msg.step === excusedUpTo && msg.bucket + 1 >= this.reducer.plan.count) this.excused.delete(m);
          return;
        }
        const slice = this.pending.get(m);
        if (msg.step !== this.stepNo || !slice) {
          if (msg.step === this.stepNo && this.phase === 'training')
            throw new ProtocolError('DUPLICATE_MESSAGE', `second gradient for step ${msg.step}`);
          throw new ProtocolError('UNKNOWN_STEP', `gradient for step ${msg.step}, step in flight is ${this.stepNo}`);
        }
        if (msg.samples !== slice.length)
          throw new ProtocolError('MALFORMED_FRAME', `gradient over ${msg.samples} samples, slice has ${slice.length}`);
        const p = this.progress.get(m) ?? { next: 0, bytes: 0, addMs: 0 };
        if (msg.bucket !== p.next)
          throw new ProtocolError('MALFORMED_FRAME', `gradient bucket ${msg.bucket}, expected ${p.next}`);
        this.progress.set(m, p);
        const a0 = performance.now();
        this.reducer.add(msg.bucket, payload, msg.samples); // throws on bad size / NaN: the worker is closed, the step retried
        p.addMs += performance.now() - a0;
        p.bytes += frameBytes;
        if (++p.next < this.reducer.plan.count) return;
        this.progress.delete(m);
        this.telemetry.arrived(m.id, msg.computeMs, msg.applyMs, msg.samples, p.bytes, p.addMs, msg.dataWaitMs);
        m.stats.record(msg.samples, msg.computeMs);
        this.balancer.observe(m, msg.samples, msg.computeMs + msg.dataWaitMs); // the time to produce its gradient
        this.pending.delete(m);
        this.received.push(slice);
        this.stepTotals.lossSum += msg.lossSum;
        this.stepTotals.correct += msg.correct;
        this.stepTotals.samples += msg.samples;
        this.stepTotals.reported += msg.samples;
        break;
      }
      case 'gradient-sent': {
        if ((this.excused.get(m) ?? -1) >= msg.step || msg.round < this.round) return; // late: the round went on without it
        const slice = this.pending.get(m);
        if (msg.round > this.round || msg.step !== this.stepNo)
          throw new ProtocolError('UNKNOWN_STEP', `gradient for round ${msg.round}, round in flight is ${this.round}`);
        if (!slice) return; // stats arriving after the shards committed the round
        if (msg.samples !== slice.length)
          throw new ProtocolError('MALFORMED_FRAME', `gradient over ${msg.samples} samples, slice has ${slice.length}`);
        this.progress.set(m, { next: 1, bytes: 0, addMs: 0 }); // its buckets are on the way: never excused now
        this.telemetry.arrived(m.id, msg.computeMs, msg.applyMs, msg.samples, this.roundBytes, 0, msg.dataWaitMs);
        m.stats.record(msg.samples, msg.computeMs);
        this.balancer.observe(m, msg.samples, msg.computeMs + msg.dataWaitMs); // the time to produce its gradient
        this.pending.delete(m);
        this.received.push(slice); // counts toward backup workers and the straggler deadline; the outcome decides
        this.stepTotals.lossSum += msg.lossSum;
        this.stepTotals.correct += msg.correct;
        this.stepTotals.reported += msg.samples;
        break;
      }
      case 'eval-result':
        if (!this.scatter) throw new ProtocolError('UNEXPECTED_MESSAGE', 'eval-result while no evaluation runs');
        if ((msg.metrics?.length ?? 0) !== this.metricSumsExpected)
          throw new ProtocolError(
            'MALFORMED_FRAME',
            `eval-result with ${msg.metrics?.length ?? 0} metric sums, the job's metrics take ${this.metricSumsExpected}`,
          );
        this.scatter.result(m, msg.requestId, {
          lossSum: msg.lossSum,
          correct: msg.correct,
          count: msg.count,
          ...(msg.metrics ? { metrics: msg.metrics } : {}),
        });
        break;
      case 'weights':
        this.onStateBegin(m, msg);
        return;
      case 'state-chunk':
        this.onStateChunk(m, msg, payload);
        return;
      case 'checksum':
        this.checks.record(m.id, msg.step, msg.hash, msg.sum, msg.stream);
        break;
      case 'failure':
        if (msg.jobId !== undefined && msg.jobId !== this.job.id) {
          this.log.warn({ worker: m.id, failedJob: msg.jobId }, 'failure of an earlier job ignored');
          return;
        }
        this.log.error({ worker: m.id, message: msg.message }, 'worker failed');
        this.refusals++;
        this.drop(m, msg.message);
        return;
    }
    this.signal.notify();
  }
}
