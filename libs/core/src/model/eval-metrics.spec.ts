import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../backend/select-backend.js';
import type { LabelKind } from '../job/job-spec.js';
import type { Metric } from '../job/targets-spec.js';
import { correctCount, exampleWeights, metricSums, metricValues } from './eval-metrics.js';

/** A seeded generator in [0, 1). */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

/** Random targets and predictions: one-hot and softmax-like for class labels, 0/1 and probabilities else. */
function randomSet(n: number, width: number, kind: LabelKind, seed: number): { ys: tf.Tensor2D; pred: tf.Tensor2D } {
  const next = generator(seed);
  const y = new Float32Array(n * width);
  const p = new Float32Array(n * width);
  for (let i = 0; i < n; i++) {
    if (kind === 'class') y[i * width + Math.floor(next() * width)] = 1;
    else
      for (let c = 0; c < width; c++) y[i * width + c] = kind === 'regression' ? next() * 4 - 2 : next() < 0.4 ? 1 : 0;
    // Quantised outputs so that ties (and outputs of exactly 0.5) occur.
    for (let c = 0; c < width; c++) p[i * width + c] = Math.round(next() * 8) / 8;
  }
  return { ys: tf.tensor2d(y, [n, width]), pred: tf.tensor2d(p, [n, width]) };
}

/** The metrics over `n` examples computed in uneven pieces (workers, chunks) and combined by their sums. */
function pieced(metrics: Metric[], kind: LabelKind, ys: tf.Tensor2D, pred: tf.Tensor2D, cuts: number[]) {
  const n = ys.shape[0];
  const total: number[] = [];
  let start = 0;
  for (const end of [...cuts, n]) {
    const s = metricSums(
      metrics,
      kind,
      tf.slice(ys, [start, 0], [end - start, -1]),
      tf.slice(pred, [start, 0], [end - start, -1]),
    );
    s.forEach((v, i) => (total[i] = (total[i] ?? 0) + v));
    start = end;
  }
  return metricValues(metrics, total, n);
}

const scalar = (t: tf.Tensor) => t.dataSync()[0]!;

describe('evaluation metrics as sums (tf.metrics over the whole set, whatever the split)', () => {
  beforeAll(async () => {
    await selectBackend('cpu');
  });

  it('binary and multilabel: accuracy, binaryAccuracy, precision, recall, mse, mae equal tf.metrics on all examples', () => {
    for (const [kind, width, seed] of [
      ['binary', 1, 3],
      ['multilabel', 5, 7],
      ['multilabel', 3, 11],
    ] as const) {
      const { ys, pred } = randomSet(203, width, kind, seed);
      const metrics: Metric[] = ['accuracy', 'binaryAccuracy', 'precision', 'recall', 'mse', 'mae'];
      const got = pieced(metrics, kind, ys, pred, [17, 18, 120]);
      const thresholded = tf.cast(tf.greater(pred, 0.5), 'float32');
      const want = {
        accuracy: scalar(tf.mean(tfl.metrics.binaryAccuracy(ys, pred))),
        binaryAccuracy: scalar(tf.mean(tfl.metrics.binaryAccuracy(ys, pred))),
        precision: scalar(tfl.metrics.precision(ys, thresholded)),
        recall: scalar(tfl.metrics.recall(ys, thresholded)),
        mse: scalar(tf.mean(tfl.metrics.meanSquaredError(ys, pred))),
        mae: scalar(tf.mean(tfl.metrics.meanAbsoluteError(ys, pred))),
      };
      for (const [k, v] of Object.entries(want)) expect(got[k], `${kind} ${width}: ${k}`).toBeCloseTo(v, 5);
      // Not a mean of per-piece ratios: those differ here.
      const pieces = [
        [0, 17],
        [17, 1],
        [18, 185],
      ].map(([s, l]) =>
        scalar(tfl.metrics.precision(tf.slice(ys, [s!, 0], [l!, -1]), tf.slice(thresholded, [s!, 0], [l!, -1]))),
      );
      expect(Math.abs(pieces.reduce((a, b) => a + b, 0) / 3 - want.precision)).toBeGreaterThan(1e-3);
    }
  });

  it('class labels: accuracy is categoricalAccuracy; top-k counts ties at the boundary as in', () => {
    const { ys, pred } = randomSet(150, 6, 'class', 5);
    const got = pieced(
      ['accuracy', { name: 'topKCategoricalAccuracy', k: 2 }, 'topKCategoricalAccuracy', 'mse'],
      'class',
      ys,
      pred,
      [40, 41],
    );
    expect(got['accuracy']).toBeCloseTo(scalar(tf.mean(tfl.metrics.categoricalAccuracy(ys, pred))), 6);
    expect(got['mse']).toBeCloseTo(scalar(tf.mean(tfl.metrics.meanSquaredError(ys, pred))), 6);
    // Keras's rule (TensorFlow's in_top_k), written out here per example.
    const y = ys.arraySync();
    const p = pred.arraySync();
    const topK = (k: number) =>
      y.filter((row, i) => {
        const t = row.indexOf(1);
        return p[i]!.filter((v) => v > p[i]![t]!).length < k;
      }).length / y.length;
    expect(got['top2CategoricalAccuracy']).toBeCloseTo(topK(2), 6);
    expect(got['top5CategoricalAccuracy']).toBeCloseTo(topK(5), 6);
    expect(topK(2)).toBeGreaterThan(got['accuracy']!); // the metric is not accuracy under another name
  });

  it('precision and recall are 0 when nothing is predicted or present, as tf.metrics', () => {
    const ys = tf.tensor2d([0, 0, 0], [3, 1]);
    const pred = tf.tensor2d([0.1, 0.2, 0.3], [3, 1]);
    expect(pieced(['precision', 'recall'], 'binary', ys, pred, [1])).toEqual({ precision: 0, recall: 0 });
    expect(scalar(tfl.metrics.precision(ys, tf.zeros([3, 1])))).toBe(0);
  });

  it('training correct counts: arg max for classes, summed binaryAccuracy for multilabel', () => {
    const { ys, pred } = randomSet(64, 4, 'multilabel', 9);
    expect(scalar(correctCount('multilabel', ys, pred))).toBeCloseTo(
      scalar(tf.sum(tfl.metrics.binaryAccuracy(ys, pred))),
      4,
    );
    const c = randomSet(64, 4, 'class', 9);
    expect(scalar(correctCount('class', c.ys, c.pred))).toBe(
      scalar(tf.sum(tfl.metrics.categoricalAccuracy(c.ys, c.pred))),
    );
  });

  it('example weights: the weight of each one-hot class, or of each 0/1 binary target', () => {
    const w = tf.tensor1d([0.5, 2, 7]);
    expect(Array.from(exampleWeights(w, tf.tensor2d([0, 0, 1, 1, 0, 0], [2, 3])).dataSync())).toEqual([7, 0.5]);
    expect(Array.from(exampleWeights(w, tf.tensor2d([1, 0, 1], [3, 1])).dataSync())).toEqual([2, 0.5, 2]);
  });
});
