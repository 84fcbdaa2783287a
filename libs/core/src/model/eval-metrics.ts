import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LabelKind } from '../job/job-spec.js';
import { metricKey, metricParts, type Metric } from '../job/targets-spec.js';

/**
 * Evaluation metrics as sums that add across chunks and workers, so that the value over a
 * whole evaluated set is exactly `tf.metrics.*` on all of it, whatever the split:
 *
 * - `accuracy`: `categoricalAccuracy` (class labels) or `binaryAccuracy` (binary, multilabel),
 *   as tfjs resolves `'accuracy'` for the job's loss; with `binaryAccuracy`, `mse`, `mae` and
 *   top-k accuracy: the sum of the per-example values, divided by the example count at the end;
 * - `precision`, `recall`: the counts (tp, fp) and (tp, fn) over every 0/1 target, with
 *   predictions thresholded at 0.5 (`tf.metrics.precision(yTrue, yPred > 0.5)`: tfjs counts a
 *   prediction positive only when it equals 1, which a sigmoid output never is); the ratio of
 *   the summed counts (0 when its denominator is 0), never a mean of per-worker ratios;
 * - `topKCategoricalAccuracy` (tfjs has none; Keras's rule): the target class is among the k
 *   highest outputs, ties at the boundary counting as in (TensorFlow's `in_top_k`).
 */

/** How many sums a metric travels as. */
export function metricSumCount(m: Metric): number {
  const { name } = metricParts(m);
  return name === 'precision' || name === 'recall' ? 2 : 1;
}

/** Sums of every metric, concatenated in `metrics` order (`metricSumCount` each). */
export function metricSums(metrics: readonly Metric[], labels: LabelKind, ys: tf.Tensor, pred: tf.Tensor): number[] {
  if (metrics.length === 0) return [];
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    for (const m of metrics) {
      const { name, k } = metricParts(m);
      switch (name) {
        case 'accuracy':
          parts.push(
            tf.sum(
              labels === 'class' ? tfl.metrics.categoricalAccuracy(ys, pred) : tfl.metrics.binaryAccuracy(ys, pred),
            ),
          );
          break;
        case 'binaryAccuracy':
          parts.push(tf.sum(tfl.metrics.binaryAccuracy(ys, pred)));
          break;
        case 'mse':
          parts.push(tf.sum(tfl.metrics.meanSquaredError(ys, pred)));
          break;
        case 'mae':
          parts.push(tf.sum(tfl.metrics.meanAbsoluteError(ys, pred)));
          break;
        case 'precision':
        case 'recall': {
          const positive = tf.greater(pred, 0.5);
          const truth = tf.equal(ys, 1);
          const tp = tf.sum(tf.cast(tf.logicalAnd(truth, positive), 'float32'));
          const other =
            name === 'precision'
              ? tf.logicalAnd(tf.equal(ys, 0), positive) // false positives
              : tf.logicalAnd(truth, tf.logicalNot(positive)); // false negatives
          parts.push(tp, tf.sum(tf.cast(other, 'float32')));
          break;
        }
        case 'topKCategoricalAccuracy': {
          // The target's output, then how many outputs beat it strictly: in the top k when fewer than k.
          const target = tf.sum(tf.mul(pred, tf.oneHot(tf.argMax(ys, -1), pred.shape.at(-1)!)), -1, true);
          const above = tf.sum(tf.cast(tf.greater(pred, target), 'float32'), -1);
          parts.push(tf.sum(tf.cast(tf.less(above, k), 'float32')));
          break;
        }
      }
    }
    return Array.from(tf.stack(parts.map((p) => tf.reshape(tf.cast(p, 'float32'), []))).dataSync());
  });
}

/** The metrics' values from their sums over `count` examples, under `metricKey` names. */
export function metricValues(
  metrics: readonly Metric[],
  sums: readonly number[],
  count: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  let i = 0;
  for (const m of metrics) {
    const { name } = metricParts(m);
    if (name === 'precision' || name === 'recall') {
      const [tp, other] = [sums[i]!, sums[i + 1]!];
      out[metricKey(m)] = tp + other > 0 ? tp / (tp + other) : 0;
      i += 2;
    } else out[metricKey(m)] = count > 0 ? sums[i++]! / count : 0;
  }
  return out;
}

/**
 * Correct predictions for the training accuracy (and the `accuracy` of old): arg max
 * matches for class labels, the per-example `binaryAccuracy` summed for binary and
 * multilabel ones (a fraction per example for multilabel); 0 for regression.
 */
export function correctCount(labels: LabelKind, ys: tf.Tensor, pred: tf.Tensor): tf.Scalar {
  switch (labels) {
    case 'class':
      return tf.sum(tf.cast(tf.equal(tf.argMax(pred, -1), tf.argMax(ys, -1)), 'int32'));
    case 'binary':
      return tf.sum(tf.cast(tf.equal(tf.cast(tf.greater(pred, 0.5), 'float32'), ys), 'int32'));
    case 'multilabel':
      return tf.sum(tfl.metrics.binaryAccuracy(ys, pred));
    case 'regression':
      return tf.scalar(0, 'int32');
  }
}

/**
 * Per-example loss weights from class weights (`model.fit`'s `classWeight`): the weight of
 * each example's class, the arg max of a one-hot target or the 0/1 value of a binary one.
 */
export function exampleWeights(classWeights: tf.Tensor1D, ys: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const cls = ys.shape.at(-1)! > 1 ? tf.argMax(ys, -1) : tf.cast(tf.reshape(ys, [-1]), 'int32');
    return tf.gather(classWeights, cls) as tf.Tensor1D;
  });
}
