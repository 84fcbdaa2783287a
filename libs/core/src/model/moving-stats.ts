import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/**
 * BatchNormalization moving statistics, kept identical on every replica.
 *
 * In `model.fit` a training-mode forward pass of a BatchNormalization layer moves its
 * non-trainable `moving_mean` and `moving_variance` towards the batch's mean μ and (biased)
 * variance σ²: `m ← m − (m − μ)·(1 − momentum)`. A replica sees only its slice of the global
 * batch, so updating in place would let replicas drift. Instead (docs/architecture.md,
 * "Non-trainable weights"):
 *
 * 1. the forward pass records each layer's batch moments and leaves the moving statistics
 *    untouched (`MovingStatsCapture` wraps the layer's `call`);
 * 2. the replica appends, per layer, its slice's mean μ_i and its second moment about the
 *    current moving mean m₀, s_i = E_i[(x − m₀)²], to the gradient it sends (the
 *    statistics block, `movingStatsCount` values);
 * 3. the coordinator averages the whole vector weighted by samples, as it does gradients:
 *    M = Σ w_i μ_i is the global batch mean and S = Σ w_i s_i = E[(x − m₀)²] over the global
 *    batch, so σ² = S − (M − m₀)² is the global batch's variance (exact up to rounding,
 *    micro-batches and lost slices included);
 * 4. every replica applies the same update formula as TensorFlow.js to the same averaged
 *    bytes, in float32 arithmetic done in JavaScript (identical on every backend): the
 *    replicas stay bit-identical and equal what one process computes on the global batch.
 */

/** One BatchNormalization layer whose moving statistics travel with the gradient. */
interface StatsLayer {
  layer: tfl.layers.Layer;
  dim: number;
  /** The layer's own `momentum` (the patched call sets it to 0 while it runs). */
  momentum: number;
  movingMean: LayerVariableLike;
  movingVariance: LayerVariableLike;
}

/** What TensorFlow.js's BatchNormalization uses of its moving-statistics `LayerVariable`s. */
interface LayerVariableLike {
  read(): tf.Tensor;
  write(value: tf.Tensor): unknown;
}

interface BatchNormInternals {
  momentum: number;
  movingMean: LayerVariableLike;
  movingVariance: LayerVariableLike;
  call: (inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => tf.Tensor | tf.Tensor[];
}

/** Every BatchNormalization layer of `model`, nested models included, in a fixed order. */
function batchNormLayers(model: tfl.LayersModel): tfl.layers.Layer[] {
  const out: tfl.layers.Layer[] = [];
  const walk = (layers: tfl.layers.Layer[]) => {
    for (const layer of layers) {
      if (layer.getClassName() === 'BatchNormalization') out.push(layer);
      const nested = (layer as unknown as { layers?: tfl.layers.Layer[] }).layers;
      if (Array.isArray(nested)) walk(nested);
    }
  };
  walk(model.layers);
  return out;
}

/** Values of the statistics block a replica appends to its gradient (0: the model has no BatchNormalization). */
export function movingStatsCount(model: tfl.LayersModel): number {
  return batchNormLayers(model).reduce(
    (n, l) => n + 2 * (l as unknown as BatchNormInternals).movingMean.read().size,
    0,
  );
}

/** f32 `a − (a − v)·d`, each operation rounded as TensorFlow.js's float32 kernels round it. */
function movingUpdate(a: number, v: number, d: number): number {
  return Math.fround(a - Math.fround(Math.fround(a - v) * d));
}

/**
 * Captures the batch moments of every BatchNormalization layer during training-mode forward
 * passes (instead of letting the layers update their moving statistics), combines them over
 * a slice's micro-batches, and applies averaged statistics to the layers.
 */
export class MovingStatsCapture {
  private readonly layers: StatsLayer[];
  /** Length of the statistics block: per layer, `dim` means then `dim` second moments. */
  readonly count: number;
  /** Per layer: Σ n·μ_c and Σ n·(σ²_c + (μ_c − m₀)²) over this slice's passes, and their examples n. */
  private readonly sums: { mean: Float64Array; second: Float64Array; examples: number }[];
  /** Set by the wrapped call with the moments it just computed, until both are in. */
  private pending: { mean?: Float32Array; variance?: Float32Array } = {};

  constructor(model: tfl.LayersModel) {
    this.layers = batchNormLayers(model).map((layer, index) => {
      const bn = layer as unknown as BatchNormInternals;
      const entry: StatsLayer = {
        layer,
        dim: bn.movingMean.read().size,
        momentum: bn.momentum,
        movingMean: bn.movingMean,
        movingVariance: bn.movingVariance,
      };
      this.wrap(entry, bn, index);
      return entry;
    });
    this.count = this.layers.reduce((n, l) => n + 2 * l.dim, 0);
    this.sums = this.layers.map((l) => ({
      mean: new Float64Array(l.dim),
      second: new Float64Array(l.dim),
      examples: 0,
    }));
  }

  /** BatchNormalization layers covered. */
  get layerCount(): number {
    return this.layers.length;
  }

  /**
   * Runs the layer's own training-mode call with stand-ins for its moving statistics and a
   * momentum of 0: its update `m − (m − v)·1` with m = 0 writes exactly −(−v) = v, the batch
   * moment, into the stand-in (the normalised output is untouched). Inference passes run as they are.
   */
  private wrap(entry: StatsLayer, bn: BatchNormInternals, index: number): void {
    const call = bn.call.bind(bn);
    const standIn = (key: 'mean' | 'variance'): LayerVariableLike => ({
      read: () => tf.zeros([entry.dim]),
      write: (value) => {
        this.pending[key] = new Float32Array(value.dataSync() as Float32Array);
      },
    });
    bn.call = (inputs, kwargs) => {
      if (!kwargs['training']) return call(inputs, kwargs);
      const input = Array.isArray(inputs) ? inputs[0]! : inputs;
      const examples = input.shape[0] ?? 0;
      const { movingMean, movingVariance, momentum } = bn;
      bn.movingMean = standIn('mean');
      bn.movingVariance = standIn('variance');
      bn.momentum = 0;
      this.pending = {};
      try {
        const out = call(inputs, kwargs);
        this.record(index, examples);
        return out;
      } finally {
        bn.movingMean = movingMean;
        bn.movingVariance = movingVariance;
        bn.momentum = momentum;
      }
    };
  }

  private record(index: number, examples: number): void {
    const { mean, variance } = this.pending;
    const layer = this.layers[index]!;
    if (!mean || !variance || mean.length !== layer.dim || variance.length !== layer.dim)
      throw new Error(
        `BatchNormalization '${layer.layer.name}': its training pass did not report its batch moments (TensorFlow.js internals changed?)`,
      );
    const m0 = layer.movingMean.read().dataSync();
    const s = this.sums[index]!;
    for (let j = 0; j < layer.dim; j++) {
      const d = mean[j]! - m0[j]!;
      s.mean[j] = s.mean[j]! + examples * mean[j]!;
      s.second[j] = s.second[j]! + examples * (variance[j]! + d * d);
    }
    s.examples += examples;
  }

  /** Forgets what earlier passes recorded (call before a slice's first pass). */
  reset(): void {
    for (const s of this.sums) {
      s.examples = 0;
      s.mean.fill(0);
      s.second.fill(0);
    }
  }

  /** Writes the slice's statistics block (per layer: means, then second moments about the moving mean) into `out`. */
  write(out: Float32Array): void {
    if (out.length !== this.count) throw new Error(`statistics block of ${out.length} values, expected ${this.count}`);
    let off = 0;
    for (const [i, s] of this.sums.entries()) {
      if (s.examples === 0)
        throw new Error(`BatchNormalization '${this.layers[i]!.layer.name}': no training pass recorded its moments`);
      for (let j = 0; j < s.mean.length; j++) out[off + j] = s.mean[j]! / s.examples;
      off += s.mean.length;
      for (let j = 0; j < s.second.length; j++) out[off + j] = s.second[j]! / s.examples;
      off += s.second.length;
    }
  }

  /**
   * Moves every layer's statistics with the averaged block (`write`'s layout, averaged over
   * the global batch): mean M, variance S − (M − m₀)², each applied as TensorFlow.js applies
   * a batch's moments, in float32.
   */
  apply(block: Float32Array): void {
    if (block.length !== this.count)
      throw new Error(`statistics block of ${block.length} values, expected ${this.count}`);
    let off = 0;
    for (const l of this.layers) {
      const decay = Math.fround(1 - l.momentum);
      const m0 = l.movingMean.read().dataSync();
      const v0 = l.movingVariance.read().dataSync();
      const mean = new Float32Array(l.dim);
      const variance = new Float32Array(l.dim);
      for (let j = 0; j < l.dim; j++) {
        const m = block[off + j]!;
        const shift = m - m0[j]!;
        const v = Math.fround(Math.max(0, block[off + l.dim + j]! - shift * shift));
        mean[j] = movingUpdate(m0[j]!, m, decay);
        variance[j] = movingUpdate(v0[j]!, v, decay);
      }
      off += 2 * l.dim;
      tf.tidy(() => {
        l.movingMean.write(tf.tensor1d(mean));
        l.movingVariance.write(tf.tensor1d(variance));
      });
    }
  }
}
