import * as tf from '@tensorflow/tfjs-core';
import { EpochSampler, gatherBatch, type DataSplit } from '@gradfleet/core';

/**
 * The global batches the coordinator's sampler gives a job (`shuffle`, `seed`), epoch after
 * epoch, as one-hot tensors: what a single process must train on to compare with the cluster.
 * The tensors are disposed when the generator moves on.
 */
export function* samplerBatches(
  split: DataSplit,
  options: { batch: number; epochs: number; seed: number; classes: number },
): Generator<{ xs: tf.Tensor2D; ys: tf.Tensor2D; step: number }> {
  const { batch: size, epochs, seed, classes } = options;
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
      gatherBatch(split, batch, classes, x, y, 'one-hot');
      const xs = tf.tensor2d(x.subarray(0, batch.length * f), [batch.length, f]);
      const ys = tf.tensor2d(y.subarray(0, batch.length * classes), [batch.length, classes]);
      yield { xs, ys, step: step++ };
      tf.dispose([xs, ys]);
    }
  }
}
