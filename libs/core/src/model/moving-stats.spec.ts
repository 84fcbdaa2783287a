import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../backend/select-backend.js';
import { maxRelativeDifference } from '../math/gradient-math.js';
import { buildModel } from './model-factory.js';
import { MovingStatsCapture, movingStatsCount } from './moving-stats.js';

/** 4x4x1 images → Conv2D(3 filters) → BatchNormalization → Flatten → Dense(1). */
const topology = {
  class_name: 'Sequential',
  config: {
    layers: [
      {
        class_name: 'Conv2D',
        config: { filters: 3, kernel_size: [2, 2], batch_input_shape: [null, 4, 4, 1], name: 'conv' },
      },
      { class_name: 'BatchNormalization', config: { momentum: 0.9, name: 'bn' } },
      { class_name: 'Flatten', config: { name: 'flat' } },
      { class_name: 'Dense', config: { units: 1, name: 'out' } },
    ],
  },
};

/** `n` images; the second half shifted by `shift` (so the halves' means differ). */
function images(n: number, shift: number): tf.Tensor4D {
  const v = Float32Array.from({ length: n * 16 }, (_, i) => Math.sin(i * 0.37) + (i >= (n * 16) / 2 ? shift : 0));
  return tf.tensor4d(v, [n, 4, 4, 1]);
}

/** Examples [start, start + size) of `x`. */
const rows = (x: tf.Tensor4D, start: number, size: number) => tf.slice(x, [start, 0, 0, 0], [size, -1, -1, -1]);

const moving = (m: tfl.LayersModel) => m.nonTrainableWeights.map((w) => Float32Array.from(w.read().dataSync()));

describe('MovingStatsCapture: BatchNormalization statistics from averaged batch moments', () => {
  beforeAll(() => selectBackend('cpu'));

  it('a training pass records the batch moments, changes neither the output nor the moving statistics', async () => {
    const plain = await buildModel({ topology }, 3);
    const captured = await buildModel({ topology }, 3);
    const capture = new MovingStatsCapture(captured);
    expect(capture.count).toBe(6);
    expect(movingStatsCount(plain)).toBe(6);
    const before = moving(captured);
    const x = images(8, 0);
    const a = plain.apply(x, { training: true }) as tf.Tensor;
    const b = captured.apply(x, { training: true }) as tf.Tensor;
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync())); // bit for bit: the same normalisation
    expect(moving(captured)).toEqual(before);
    expect(moving(plain)).not.toEqual(before); // TensorFlow.js moved the uncaptured layer's statistics in place
    // The block, applied, moves the statistics as TensorFlow.js did: the mean bit for bit.
    const block = new Float32Array(capture.count);
    capture.write(block);
    const tensors = tf.memory().numTensors;
    capture.apply(block);
    tf.dispose(captured.apply(x, { training: true }) as tf.Tensor); // the stand-ins leave no tensor behind either
    expect(tf.memory().numTensors).toBe(tensors);
    capture.reset();
    tf.dispose(captured.apply(x, { training: true }) as tf.Tensor);
    capture.write(block);
    const [mean, variance] = moving(captured);
    const [plainMean, plainVariance] = moving(plain);
    expect(Array.from(mean!)).toEqual(Array.from(plainMean!));
    expect(maxRelativeDifference(variance!, plainVariance!)).toBeLessThan(1e-6);
    tf.dispose([x, a, b]);
    plain.dispose();
    captured.dispose();
  });

  it('micro-batches and sample-weighted slices give the statistics of the whole batch, the variance included', async () => {
    const plain = await buildModel({ topology }, 4);
    const x = images(12, 2); // halves whose means differ by about 2 (in the conv's units)
    tf.dispose(plain.apply(x, { training: true }) as tf.Tensor);
    const [plainMean, plainVariance] = moving(plain);
    // Two "replicas" with slices of 8 and 4; the first in two micro-batches of 5 and 3.
    const blocks: Float32Array[] = [];
    const replicas = [await buildModel({ topology }, 4), await buildModel({ topology }, 4)];
    const captures = replicas.map((m) => new MovingStatsCapture(m));
    const slices = [[rows(x, 0, 5), rows(x, 5, 3)], [rows(x, 8, 4)]];
    for (const [r, parts] of slices.entries()) {
      captures[r]!.reset();
      for (const part of parts) tf.dispose(replicas[r]!.apply(part, { training: true }) as tf.Tensor);
      const block = new Float32Array(captures[r]!.count);
      captures[r]!.write(block);
      blocks.push(block);
    }
    // The coordinator's average, weighted by samples.
    const avg = blocks[0]!.map((v, i) => (v * 8 + blocks[1]![i]! * 4) / 12);
    for (const c of captures) c.apply(avg);
    const [m0, v0] = moving(replicas[0]!);
    const [m1, v1] = moving(replicas[1]!);
    expect(Array.from(m1!)).toEqual(Array.from(m0!)); // replicas identical, bit for bit
    expect(Array.from(v1!)).toEqual(Array.from(v0!));
    expect(maxRelativeDifference(m0!, plainMean!)).toBeLessThan(1e-6);
    expect(maxRelativeDifference(v0!, plainVariance!)).toBeLessThan(1e-6);
    // Averaging each slice's own variance instead (leaving out the spread of the slices' means) is far off.
    const within = await buildModel({ topology }, 4);
    const moved = moving(within)[1]!.map((v, j) => {
      const perSlice = [rows(x, 0, 8), rows(x, 8, 4)].map((s) => {
        const conv = within.layers[0]!.apply(s) as tf.Tensor;
        const variance = tf.moments(conv, [0, 1, 2]).variance.dataSync()[j]!;
        tf.dispose([s, conv]);
        return v - (v - variance) * Math.fround(1 - 0.9);
      });
      return (perSlice[0]! * 8 + perSlice[1]! * 4) / 12;
    });
    expect(maxRelativeDifference(moved, plainVariance!)).toBeGreaterThan(1e-2);
    tf.dispose([x, ...slices.flat()]);
    for (const m of [plain, ...replicas, within]) m.dispose();
  });

  it('a model without BatchNormalization exchanges no statistics', async () => {
    const model = await buildModel('mnist-mlp', 1);
    const capture = new MovingStatsCapture(model);
    expect(capture.count).toBe(0);
    expect(capture.layerCount).toBe(0);
    const block = new Float32Array(0);
    capture.write(block);
    capture.apply(block);
    model.dispose();
  });
});
