import * as tf from '@tensorflow/tfjs-core';
import { EpochSampler, gatherBatch, maxRelativeDifference, type DataSplit } from '@gradfleet/core';

/**
 * The global batches the coordinator's sampler gives a job (`shuffle`, `seed`), epoch after
 * epoch, as tensors: what a single process must train on to compare with the cluster.
 * Targets are `classes` wide: one-hot class labels by default, or the label values as they
 * are (`kind: 'value'`: regression, binary and multilabel targets). The tensors are disposed
 * when the generator moves on.
 */
export function* samplerBatches(
  split: DataSplit,
  options: { batch: number; epochs: number; seed: number; classes: number; kind?: 'one-hot' | 'value' },
): Generator<{ xs: tf.Tensor2D; ys: tf.Tensor2D; step: number; examples: number[] }> {
  const { batch: size, epochs, seed, classes, kind = 'one-hot' } = options;
  const sampler = new EpochSampler({ size: split.count, seed });
  const f = split.featureSize;
  const x = new Float32Array(size * f);
  const y = new Float32Array(size * classes);
  let step = 0;
  for (let e = 0; e < epochs; e++) {
    sampler.beginEpoch(e);
    while (!sampler.exhausted) {
      const batch = sampler.take(size);
      sampler.complete(batch);
      gatherBatch(split, batch, classes, x, y, kind);
      const xs = tf.tensor2d(x.subarray(0, batch.length * f), [batch.length, f]);
      const ys = tf.tensor2d(y.subarray(0, batch.length * classes), [batch.length, classes]);
      yield { xs, ys, step: step++, examples: Array.from(batch) };
      tf.dispose([xs, ys]);
    }
  }
}

/** Per weight tensor of `layout` (shapes, in flattening order), the largest relative difference of `a` to `b`. */
export function worstDifference(a: Float32Array, b: Float32Array, layout: number[][]): number {
  let off = 0;
  let worst = 0;
  for (const shape of layout) {
    const n = shape.reduce((x, y) => x * y, 1);
    worst = Math.max(worst, maxRelativeDifference(a.subarray(off, off + n), b.subarray(off, off + n)));
    off += n;
  }
  return worst;
}
