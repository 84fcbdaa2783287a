import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  buildModel,
  classWeightVector,
  clipGradient,
  correctCount,
  exampleWeights,
  metricSums,
  createOptimizer,
  flattenWeights,
  gatherBatch,
  learningRateAt,
  loadFlatWeights,
  lossFunction,
  optimizerLearningRate,
  seedDropout,
  setOptimizerLearningRate,
  trainingSize,
  weightLayout,
  weightsChecksum,
  ChunkedSplit,
  MovingStatsCapture,
  type DataSplit,
  type TrainingData,
  type JobSpec,
  type SeededDropout,
  type TensorSpec,
} from '@gradfleet/core';
import { ComputePacer, yieldToEventLoop } from './compute-pacer.js';

/** A computation of a job that ended on this worker meanwhile (job-end, lost connection): not a failure of the job. */
export class JobEndedError extends Error {
  constructor() {
    super('the job ended on this worker during a computation');
    this.name = 'JobEndedError';
  }
}

/** Sums over a set of examples: what the coordinator needs to combine results exactly. */
export interface BatchStats {
  lossSum: number;
  correct: number;
  count: number;
  /** Evaluation only: the sums of the job's `metrics` (`metricSums`), when it lists any. */
  metrics?: number[];
}

/** Optimizer state that `getWeights()` leaves out travels under names with this prefix. */
const DERIVED_PREFIX = '__derived__/';

/** Examples per forward pass during evaluation (bounds memory, keeps passes efficient). */
const EVAL_CHUNK = 1024;

/** Examples of the probe that measures the cost per example at job start (run twice: the first warms up). */
const PROBE_EXAMPLES = 4;

/** Longest a compute chunk may run by default, in ms (the session lowers it for short heartbeat timeouts). */
const DEFAULT_CHUNK_BUDGET_MS = 5_000;

/**
 * One worker's replica of a job's model: computes gradients on the slices it is given
 * and applies the averaged gradient it receives, with the job's optimizer. Every replica
 * applies the same updates in the same order, so all stay identical.
 */
export class Replica {
  /** Trainable parameters: the gradient part of the exchanged vector. */
  readonly paramCount: number;
  /**
   * Length of the vector exchanged each step: the gradient, then the BatchNormalization
   * statistics block (`MovingStatsCapture`; empty for models without BatchNormalization).
   */
  readonly exchangeLength: number;
  /** Records BatchNormalization batch moments instead of letting the layers update in place. */
  private readonly movingStats: MovingStatsCapture;
  private readonly vars: tf.Variable[];
  private readonly loss: (y: tf.Tensor, p: tf.Tensor) => tf.Tensor;
  private readonly inputShape: number[];
  private readonly numClasses: number;
  /** With `classWeight`: one loss weight per class (model output unit, or 0/1 for binary labels). */
  private readonly classWeights: tf.Tensor1D | undefined;
  private xBuf = new Float32Array(0);
  private yBuf = new Float32Array(0);
  /** Set with `seededDropout`: the Dropout layers' seeded streams. */
  private readonly dropout: SeededDropout | undefined;
  /** The averaged gradient after clipping (allocated on the first clipped step; the received one stays as it came). */
  private clipped: Float32Array | undefined;
  private disposed = false;
  /** Cuts long gradient computations and evaluations into chunks with event-loop turns between them. */
  readonly pacer = new ComputePacer(DEFAULT_CHUNK_BUDGET_MS);
  /** TEST ONLY (`TestFaults`): called with the examples of every chunk, to simulate a slow device. */
  onChunk: ((examples: number) => void) | undefined;

  private constructor(
    private readonly spec: JobSpec,
    private readonly model: tfl.LayersModel,
    private readonly optimizer: tf.Optimizer,
    readonly data: TrainingData,
  ) {
    this.vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    this.dropout = spec.seededDropout ? seedDropout(model, spec.seed) : undefined;
    this.paramCount = this.vars.reduce((n, v) => n + v.size, 0);
    this.movingStats = new MovingStatsCapture(model);
    this.exchangeLength = this.paramCount + this.movingStats.count;
    this.loss = lossFunction(spec.loss);
    this.inputShape = (model.inputs[0]!.shape.slice(1) as number[]).map((d) => d ?? 1);
    const outShape = model.outputs[0]!.shape;
    this.numClasses = outShape[outShape.length - 1] ?? 1;
    const features = this.inputShape.reduce((a, b) => a * b, 1);
    if (features !== data.train.featureSize) {
      throw new Error(
        `model input ${this.inputShape.join('x')} (${features} values) does not match dataset examples of ${data.featureShape.join('x')} (${data.train.featureSize} values)`,
      );
    }
    if ((spec.labels === 'binary' || spec.labels === 'regression') && this.numClasses !== 1)
      throw new Error(`labels '${spec.labels}' need a model with 1 output unit, this one has ${this.numClasses}`);
    if (spec.labels === 'multilabel' && data.numClasses !== this.numClasses)
      throw new Error(`dataset has ${data.numClasses} targets per example, model output has ${this.numClasses} units`);
    if (data.numClasses > this.numClasses) {
      throw new Error(`dataset has ${data.numClasses} classes, model output has ${this.numClasses} units`);
    }
    this.classWeights = spec.classWeight
      ? tf.tensor1d(classWeightVector(spec.classWeight, spec.labels === 'binary' ? 2 : this.numClasses))
      : undefined;
  }

  /**
   * Builds the model, checks it against the coordinator's layout and loads its weights
   * (the first part of `values`); when resuming, the rest of `values` is the optimizer
   * state described by `optimizerSpecs`.
   */
  static async create(
    spec: JobSpec,
    layout: number[][],
    values: Float32Array,
    data: TrainingData,
    optimizerSpecs: TensorSpec[] = [],
  ): Promise<Replica> {
    const model = await buildModel(spec.model, spec.seed, { trainableLayers: spec.trainableLayers });
    const mine = weightLayout(model);
    if (JSON.stringify(mine) !== JSON.stringify(layout)) {
      model.dispose();
      throw new Error(
        `model weight layout ${JSON.stringify(mine)} differs from the coordinator's ${JSON.stringify(layout)}`,
      );
    }
    const replica = new Replica(spec, model, createOptimizer(spec), data);
    await replica.loadState(values, optimizerSpecs);
    return replica;
  }

  /**
   * Measures the cost per example of a gradient before the first step, so that a slow
   * worker's first step is already cut into chunks (`ComputePacer`). The first pass warms
   * up the backend and is not counted.
   */
  probe(): void {
    const n = Math.min(PROBE_EXAMPLES, this.data.train.count);
    if (n === 0) return;
    const indices = Array.from({ length: n }, (_, i) => i);
    const out = new Float32Array(this.paramCount);
    this.gradientChunk(indices, out, 0); // records BatchNormalization moments, changes no weight
    const t0 = performance.now();
    this.onChunk?.(n);
    this.gradientChunk(indices, out, 0);
    this.pacer.observe(n, performance.now() - t0);
    if (this.probeChunks && this.data.train instanceof ChunkedSplit) this.data.train.release(this.probeChunks);
    this.probeChunks = undefined;
  }

  /** Takes weights (first part of `values`) and, when `optimizerSpecs` is not empty, the optimizer state (the rest). */
  async loadState(values: Float32Array, optimizerSpecs: TensorSpec[]): Promise<void> {
    const nWeights = this.model.weights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
    loadFlatWeights(this.model, values.subarray(0, nWeights));
    if (optimizerSpecs.length === 0) return;
    let off = nWeights;
    const named = optimizerSpecs.map((s) => {
      const size = s.shape.reduce((a, b) => a * b, 1);
      const tensor = tf.tensor(values.subarray(off, off + size), s.shape, s.dtype);
      off += size;
      return { name: s.name, tensor };
    });
    if (off !== values.length)
      throw new Error(`optimizer state of ${values.length - nWeights} values, specs describe ${off - nWeights}`);
    const derived = named.filter((n) => n.name.startsWith(DERIVED_PREFIX));
    await this.optimizer.setWeights(named.filter((n) => !n.name.startsWith(DERIVED_PREFIX)));
    // Adam recomputes beta^t in setWeights; take the source replica's exact values instead.
    for (const d of derived)
      (this.optimizer as unknown as Record<string, tf.Variable>)[d.name.slice(DERIVED_PREFIX.length)]?.assign(d.tensor);
    tf.dispose(named.map((n) => n.tensor));
  }

  /** The optimizer's state (`optimizer.getWeights()` order) as float32 values and specs. */
  async optimizerState(): Promise<{ specs: TensorSpec[]; values: Float32Array }> {
    const named = await this.optimizer.getWeights();
    // Adam keeps beta1^t and beta2^t outside getWeights(); carry them so replicas stay bit-identical.
    // By class name: TensorFlow.js answers `instanceof` for every optimizer class by duck typing.
    if (this.optimizer.getClassName() === tf.AdamOptimizer.className) {
      const adam = this.optimizer as unknown as { accBeta1: tf.Variable; accBeta2: tf.Variable };
      named.push(
        { name: `${DERIVED_PREFIX}accBeta1`, tensor: adam.accBeta1 },
        { name: `${DERIVED_PREFIX}accBeta2`, tensor: adam.accBeta2 },
      );
    }
    const specs = named.map((n) => ({
      name: n.name,
      shape: [...n.tensor.shape],
      dtype: n.tensor.dtype === 'int32' ? ('int32' as const) : ('float32' as const),
    }));
    const values = new Float32Array(named.reduce((k, n) => k + n.tensor.size, 0));
    let off = 0;
    for (const n of named) {
      values.set(n.tensor.dataSync(), off);
      off += n.tensor.size;
    }
    return { specs, values };
  }

  get trainCount(): number {
    return this.data.train.count;
  }

  /** Examples of the dataset's own validation set (0: none, the tail of the training set validates). */
  get validationCount(): number {
    return this.data.validation?.count ?? 0;
  }

  get testCount(): number {
    return this.data.test?.count ?? 0;
  }

  private batchTensors(split: DataSplit | ChunkedSplit, indices: ArrayLike<number>): { xs: tf.Tensor; ys: tf.Tensor } {
    const n = indices.length;
    const f = split.featureSize;
    if (this.xBuf.length < n * f) this.xBuf = new Float32Array(n * f);
    if (this.yBuf.length < n * this.numClasses) this.yBuf = new Float32Array(n * this.numClasses);
    const targets = this.spec.labels === 'class' ? 'one-hot' : this.spec.labels === 'multilabel' ? 'vector' : 'value';
    if (split instanceof ChunkedSplit) {
      // Named (chunked) datasets hold one label per example: multilabel jobs are refused on them.
      if (targets === 'vector') throw new Error('a chunked dataset holds no multilabel targets');
      split.gather(indices, this.numClasses, this.xBuf, this.yBuf, targets);
    } else gatherBatch(split, indices, this.numClasses, this.xBuf, this.yBuf, targets);
    return {
      xs: tf.tensor(this.xBuf.subarray(0, n * f), [n, ...this.inputShape]),
      ys: tf.tensor2d(this.yBuf.subarray(0, n * this.numClasses), [n, this.numClasses]),
    };
  }

  /** Correct predictions (`correctCount`): arg max for class labels, `binaryAccuracy` for 0/1 targets. */
  private correctCount(ys: tf.Tensor, pred: tf.Tensor): tf.Scalar {
    return correctCount(this.spec.labels, ys, pred);
  }

  /**
   * The loss `model.fit` minimises for a batch: the mean data loss plus every regularizer
   * loss of the model (`calculateLosses()`, added in the same order as fit's train function).
   *
   * Counted once per step although every worker adds it: the coordinator averages the
   * gradients weighted by samples, w_i = n_i / N with Σ w_i = 1 (over the gradients that
   * arrived), so Σ w_i (∇D_i + ∇R) = Σ w_i ∇D_i + ∇R = ∇(mean data loss of the global
   * batch) + ∇R: exactly fit's gradient for that batch. R depends on the weights alone
   * (TensorFlow.js refuses activity regularizers), which every replica holds identically.
   *
   * With `classWeight`, each example's loss is multiplied by its class's weight before the
   * mean over the examples (not over the weights), as `model.fit` applies `classWeight`; the
   * sample-weighted average of the workers' means is then fit's mean over the global batch.
   */
  private fitLoss(ys: tf.Tensor, pred: tf.Tensor): tf.Scalar {
    const perExample = this.loss(ys, pred);
    let total = tf.mean(
      this.classWeights ? tf.mul(perExample, exampleWeights(this.classWeights, ys)) : perExample,
    ) as tf.Scalar;
    if (this.spec.regularizers === 'include')
      for (const penalty of this.model.calculateLosses()) total = tf.add(total, penalty);
    return total;
  }

  /**
   * Gradient of the loss `model.fit` minimises over the examples at `indices` (mean data
   * loss plus regularizer losses; training-mode forward pass, so dropout is active),
   * written into `out` (all trainable weights concatenated). `step` (0-based) picks the
   * seeded dropout streams; it defaults to the optimizer's update count, which equals the
   * coordinator's step number when the step's `train` message arrives.
   *
   * The slice is computed in micro-batches of at most ⌈n / accumulationSteps⌉ examples
   * (gradient accumulation: one forward pass holds that many examples' activations), and a
   * slice too long for one chunk (`pacer`) in smaller chunks still, with a turn of the event
   * loop between them, so heartbeats keep flowing. The chunks' mean gradients are combined
   * weighted by their sizes, which is the gradient of the mean over the whole slice.
   *
   * `out` holds `exchangeLength` values: after the gradient, the slice's BatchNormalization
   * statistics block (its batch moments pooled over the micro-batches); the moving
   * statistics themselves change only in `applyUpdate`, from the averaged block.
   */
  async computeGradient(
    indices: ArrayLike<number>,
    out: Float32Array,
    step: number = this.optimizer.iterations,
  ): Promise<BatchStats> {
    const train = this.data.train;
    if (!(train instanceof ChunkedSplit)) return this.computeResident(indices, out, step);
    // A chunked dataset: fetch the chunks of this slice first (the time is the step's data wait).
    const t0 = performance.now();
    const chunks = await train.ensure(indices);
    this.dataWaitMs += performance.now() - t0;
    if (this.disposed) {
      train.release(chunks);
      throw new JobEndedError();
    }
    try {
      return await this.computeResident(indices, out, step);
    } finally {
      train.release(chunks);
    }
  }

  /** Fetches hinted chunks of a chunked training split ahead of the steps that need them; a no-op for in-memory data. */
  prefetch(chunks: readonly number[]): void {
    if (this.data.train instanceof ChunkedSplit) this.data.train.prefetch(chunks);
  }

  /** Milliseconds spent waiting for chunks of a chunked dataset so far. */
  dataWaitMs = 0;

  /**
   * Fetches what `probe()` reads (the first examples of a chunked training split); a
   * no-op for in-memory data.
   */
  async prepareProbe(): Promise<void> {
    const train = this.data.train;
    if (!(train instanceof ChunkedSplit)) return;
    const n = Math.min(PROBE_EXAMPLES, train.count);
    this.probeChunks = await train.ensure(Array.from({ length: n }, (_, i) => i));
  }

  private probeChunks: number[] | undefined;

  private async computeResident(indices: ArrayLike<number>, out: Float32Array, step: number): Promise<BatchStats> {
    if (out.length !== this.exchangeLength)
      throw new Error(`gradient buffer of ${out.length} values, the replica exchanges ${this.exchangeLength}`);
    this.movingStats.reset();
    const stats = await this.computeSlice(indices, out.subarray(0, this.paramCount), step);
    this.movingStats.write(out.subarray(this.paramCount));
    return stats;
  }

  private async computeSlice(indices: ArrayLike<number>, out: Float32Array, step: number): Promise<BatchStats> {
    const n = indices.length;
    const size = Math.min(this.pacer.chunk(n), Math.ceil(n / this.spec.accumulationSteps));
    if (size >= n) return this.timedChunk(indices, out, step);
    const part = new Float32Array(out.length);
    const total: BatchStats = { lossSum: 0, correct: 0, count: 0 };
    for (let s = 0; s < n; s += size) {
      if (s > 0) await this.yieldChunk();
      const slice = Array.prototype.slice.call(indices, s, Math.min(n, s + size)) as number[];
      const stats = this.timedChunk(slice, s === 0 ? out : part, step);
      const w = slice.length / n;
      if (s === 0) for (let i = 0; i < out.length; i++) out[i] = out[i]! * w;
      else for (let i = 0; i < out.length; i++) out[i] = out[i]! + part[i]! * w;
      total.lossSum += stats.lossSum;
      total.correct += stats.correct;
      total.count += stats.count;
    }
    return total;
  }

  private async yieldChunk(): Promise<void> {
    await yieldToEventLoop();
    if (this.disposed) throw new JobEndedError();
  }

  /** One chunk, timed for the pacer. */
  private timedChunk(indices: ArrayLike<number>, out: Float32Array, step: number): BatchStats {
    const t0 = performance.now();
    this.onChunk?.(indices.length);
    const stats = this.gradientChunk(indices, out, step);
    this.pacer.observe(indices.length, performance.now() - t0);
    return stats;
  }

  /** Gradient of fit's loss over `indices`, in one synchronous pass. */
  private gradientChunk(indices: ArrayLike<number>, out: Float32Array, step: number): BatchStats {
    let pred: tf.Tensor | undefined;
    this.dropout?.setBatch(step, indices);
    const { xs, ys } = this.batchTensors(this.data.train, indices);
    try {
      const { value, grads } = tf.variableGrads(() => {
        pred = tf.keep(this.model.apply(xs, { training: true }) as tf.Tensor);
        return this.fitLoss(ys, pred);
      }, this.vars);
      let off = 0;
      for (const v of this.vars) {
        const g = grads[v.name]!;
        out.set(g.dataSync() as Float32Array, off);
        off += v.size;
      }
      const correct = tf.tidy(() => this.correctCount(ys, pred!).dataSync()[0]!);
      const mean = value.dataSync()[0]!;
      tf.dispose([value, ...Object.values(grads)]);
      return { lossSum: mean * indices.length, correct, count: indices.length };
    } finally {
      tf.dispose([xs, ys]);
      if (pred) pred.dispose();
    }
  }

  /**
   * Applies the averaged gradient of step `step` (0-based), exactly as a plain TensorFlow.js
   * loop does with the same settings:
   * 1. clip a copy of `mean`: entries to ±`clipValue`, then the global norm to `clipNorm`;
   * 2. set the optimizer's rate to `learningRateAt(learningRate, lrSchedule, step)` = lr_t;
   * 3. decoupled weight decay (AdamW, SGDW): every trainable weight w ← w · (1 − lr_t · weightDecay);
   * 4. `optimizer.applyGradients`.
   * The step defaults to the optimizer's own update count, which checkpoints and
   * `load-state` carry with the optimizer state, so it equals the coordinator's step number.
   */
  applyUpdate(update: Float32Array, step: number = this.optimizer.iterations): void {
    if (update.length !== this.exchangeLength)
      throw new Error(`update of ${update.length} values, the replica exchanges ${this.exchangeLength}`);
    const mean = update.subarray(0, this.paramCount);
    const { clipNorm, clipValue, optimizerOptions } = this.spec;
    let gradient = mean;
    if (clipNorm > 0 || clipValue > 0) {
      this.clipped ??= new Float32Array(this.paramCount);
      this.clipped.set(mean);
      clipGradient(this.clipped, clipValue, clipNorm);
      gradient = this.clipped;
    }
    const lr = learningRateAt(this.spec.learningRate, this.spec.lrSchedule, step);
    if (lr !== optimizerLearningRate(this.optimizer)) setOptimizerLearningRate(this.optimizer, lr);
    const decay = optimizerOptions.weightDecay;
    if (decay > 0) tf.tidy(() => this.vars.forEach((v) => v.assign(tf.mul(v, 1 - lr * decay))));
    let off = 0;
    const named = this.vars.map((v) => {
      const tensor = tf.tensor(gradient.subarray(off, off + v.size), v.shape);
      off += v.size;
      return { name: v.name, tensor };
    });
    this.optimizer.applyGradients(named);
    tf.dispose(named.map((n) => n.tensor));
    // 5. BatchNormalization moving statistics from the global batch's averaged moments.
    this.movingStats.apply(update.subarray(this.paramCount));
  }

  /**
   * Loss and accuracy sums over examples [start, end) of the validation tail or the test
   * split, in chunks (at most `EVAL_CHUNK`, fewer when `pacer` says one would run too long)
   * with a turn of the event loop between them.
   */
  async evaluate(split: 'validation' | 'test', start: number, end: number): Promise<BatchStats> {
    const own = split === 'validation' ? this.data.validation : undefined;
    const data = split === 'test' ? this.data.test : (own ?? this.data.train);
    if (!data) throw new Error('this dataset has no test split');
    const lo = split === 'validation' && !own ? trainingSize(data.count, this.spec.validationSplit) : 0;
    if (start < lo || end > data.count || start > end)
      throw new Error(`evaluation range [${start}, ${end}) outside the ${split} split`);
    const metrics = this.spec.metrics;
    const stats: BatchStats = { lossSum: 0, correct: 0, count: 0, ...(metrics.length ? { metrics: [] } : {}) };
    const size = this.pacer.chunk(EVAL_CHUNK);
    for (let s = start; s < end; s += size) {
      if (s > start) await this.yieldChunk();
      const e = Math.min(end, s + size);
      const indices = Array.from({ length: e - s }, (_, i) => s + i);
      const pinned = data instanceof ChunkedSplit ? await data.ensure(indices) : undefined;
      this.onChunk?.(e - s);
      let lossSum: number;
      let correct: number;
      let sums: number[];
      try {
        [lossSum, correct, sums] = tf.tidy(() => {
          const { xs, ys } = this.batchTensors(data, indices);
          const pred = this.model.apply(xs, { training: false }) as tf.Tensor;
          return [
            tf.sum(this.loss(ys, pred)).dataSync()[0]!,
            this.correctCount(ys, pred).dataSync()[0]!,
            metricSums(metrics, this.spec.labels, ys, pred),
          ] as const;
        });
      } finally {
        if (pinned && data instanceof ChunkedSplit) data.release(pinned);
      }
      stats.lossSum += lossSum;
      stats.correct += correct;
      stats.count += e - s;
      if (stats.metrics) sums.forEach((v, i) => (stats.metrics![i] = (stats.metrics![i] ?? 0) + v));
    }
    return stats;
  }

  /**
   * TEST ONLY (`TestFaults`): adds `delta` to every value of the first trainable weight, or
   * with `nonTrainable` of the first non-trainable one (a BatchNormalization moving statistic).
   */
  perturb(delta: number, nonTrainable = false): void {
    const w = nonTrainable ? this.model.nonTrainableWeights[0] : this.model.trainableWeights[0];
    if (!w) throw new Error(`the model has no ${nonTrainable ? 'non-' : ''}trainable weight to perturb`);
    tf.tidy(() => {
      w.write(tf.add(w.read(), delta));
    });
  }

  /**
   * Bit-exact checksum of every weight, trainable and not (`model.weights` order): the
   * replica consistency check covers the BatchNormalization moving statistics too.
   */
  checksum(): { hash: string; sum: number } {
    return weightsChecksum(this.model.weights.map((w) => w.read().dataSync() as Float32Array));
  }

  /** Every weight, flattened (`model.getWeights()` order). */
  weights(): Float32Array {
    return flattenWeights(this.model);
  }

  dispose(): void {
    this.disposed = true;
    this.model.dispose();
    this.optimizer.dispose();
    this.classWeights?.dispose();
  }
}
