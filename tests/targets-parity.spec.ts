import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EpochSampler,
  buildModel,
  flattenWeights,
  loadDataset,
  loadFlatWeights,
  parseCsv,
  selectBackend,
  type Dataset,
  type JobSpecInput,
} from '@gradfleet/core';
import { samplerBatches, worstDifference } from './helpers/sampler-batches.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';

/**
 * Parity with `model.fit` for multilabel targets and for `classWeight` (issue #14): the same
 * small model, data and batches trained here by tfjs and by the cluster with 1 and 2 workers
 * give the same weights within 1e-4 relative (per weight tensor); and the job's `metrics` on
 * its test file, evaluated across 2 workers, equal `tf.metrics` on the whole file with the
 * cluster's own final weights.
 */

const TRAIN = 300; // not a multiple of the batch: the last step of each epoch is partial
const TEST = 157;
const BATCH = 64;
const EPOCHS = 2;
const STEPS = EPOCHS * Math.ceil(TRAIN / BATCH);
const SEED = 11;
const TOLERANCE = 1e-4;
const TARGETS = 3;

/** Examples of four features and three 0/1 targets that depend on them, from a fixed generator. */
function multilabelRows(rows: number, seed: number): { x: number[]; t: number[] }[] {
  let state = seed;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  return Array.from({ length: rows }, () => {
    const x = [next(), next(), next(), next()].map((v) => Number(v.toFixed(4)));
    const [a, b, c, d] = x as [number, number, number, number];
    const t = [a + b > 1, c > 0.6 || d < 0.2, a * d + 0.2 * next() > 0.3].map((v) => (v ? 1 : 0));
    return { x, t };
  });
}

/** The rows as CSV `a,t0,b,c,t1,d,t2`: targets between the features, named in `labelColumns`. */
function multilabelCsv(rows: { x: number[]; t: number[] }[]): string {
  const line = ({ x, t }: { x: number[]; t: number[] }) => [x[0], t[0], x[1], x[2], t[1], x[3], t[2]].join(',');
  return ['a,t0,b,c,t1,d,t2', ...rows.map(line)].join('\n');
}

/** The sampler's batches of `rows` as tensors, built here from the rows (not through the dataset code). */
function* rowBatches(rows: { x: number[]; t: number[] }[]): Generator<{ xs: tf.Tensor2D; ys: tf.Tensor2D }> {
  const sampler = new EpochSampler({ size: rows.length, seed: SEED });
  for (let e = 0; e < EPOCHS; e++) {
    sampler.beginEpoch(e);
    while (!sampler.exhausted) {
      const batch = Array.from(sampler.take(BATCH));
      sampler.complete(batch);
      const xs = tf.tensor2d(batch.map((i) => rows[i]!.x));
      const ys = tf.tensor2d(batch.map((i) => rows[i]!.t));
      yield { xs, ys };
      tf.dispose([xs, ys]);
    }
  }
}

/** Rows `a,b,c,d,y` with a rare positive class (about one in five). */
function imbalancedCsv(rows: number): string {
  let state = 777;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const out = ['a,b,c,d,y'];
  for (let i = 0; i < rows; i++) {
    const [a, b, c, d] = [next(), next(), next(), next()];
    out.push([a, b, c, d, a + 0.5 * b + 0.3 * next() > 1.1 ? 1 : 0].map((v) => v.toFixed(4)).join(','));
  }
  return out.join('\n');
}

/** A 4-8-`units` MLP with sigmoid outputs. */
function sigmoidTopology(units: number): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [4], units: 8, activation: 'tanh' }),
      tfl.layers.dense({ units, activation: 'sigmoid' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

/** A dropout-free 784-16-10 softmax MLP. */
function mnistTopology(): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [784], units: 16, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

describe('multilabel targets, classWeight and metrics: parity with model.fit (1 and 2 workers)', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;
  let mnist: Dataset;

  beforeAll(async () => {
    await selectBackend('wasm');
    data = await writeSmallMnist(TRAIN, 64);
    mnist = await loadDataset(data.dataset);
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  async function train(workers: number, spec: JobSpecInput) {
    const job = await cluster.client.submit({
      epochs: EPOCHS,
      batchSize: BATCH,
      validationSplit: 0,
      seed: SEED,
      checksumEverySteps: 3,
      ...spec,
      minWorkers: workers,
      maxWorkers: workers,
    });
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(done.workers).toHaveLength(workers);
    expect(done.result?.steps).toBe(STEPS);
    expect(done.replicas.divergences).toBe(0);
    return { done, weights: new Float32Array((await cluster.client.model(job.id)).weights) };
  }

  /** `fit` (one call per global batch, in the sampler's order) against the cluster with 1 and 2 workers. */
  async function expectParity(
    label: string,
    topology: Record<string, unknown>,
    fit: (model: tfl.LayersModel) => Promise<void>,
    spec: JobSpecInput,
  ): Promise<{ reference: Float32Array; layout: number[][] }> {
    const model = await buildModel({ topology }, SEED);
    const layout = model.weights.map((w) => w.shape as number[]);
    const start = flattenWeights(model);
    await fit(model);
    const reference = flattenWeights(model);
    model.dispose();
    expect(worstDifference(reference, start, layout)).toBeGreaterThan(1e-2); // training moved the weights
    for (const workers of [1, 2]) {
      const d = worstDifference((await train(workers, { ...spec, model: { topology } })).weights, reference, layout);
      console.log(`${label}: max relative difference to model.fit, ${workers} worker(s): ${d}`);
      expect(d).toBeLessThan(TOLERANCE);
    }
    return { reference, layout };
  }

  it('multilabel targets train sigmoid outputs with binaryCrossentropy as model.fit does; metrics as tf.metrics', async () => {
    const rows = multilabelRows(TRAIN, 4242);
    const testRows = multilabelRows(TEST, 99);
    const file = join(data.dir, 'multilabel.csv');
    const testFile = join(data.dir, 'multilabel-test.csv');
    writeFileSync(file, multilabelCsv(rows));
    writeFileSync(testFile, multilabelCsv(testRows));
    const labelColumns = ['t0', 't1', 't2'];
    const topology = sigmoidTopology(TARGETS);
    const spec: JobSpecInput = {
      dataset: { csv: { train: file, test: testFile, labelColumns } },
      labels: 'multilabel',
      loss: 'binaryCrossentropy',
      optimizer: 'adam',
      learningRate: 0.05,
      metrics: ['precision', 'recall', 'binaryAccuracy', 'mse', 'accuracy'],
    };
    await expectParity(
      'multilabel',
      topology,
      async (model) => {
        model.compile({ optimizer: tf.train.adam(0.05), loss: 'binaryCrossentropy' });
        for (const { xs, ys } of rowBatches(rows)) await model.trainOnBatch(xs, ys);
      },
      spec,
    );

    // The test file evaluated across 2 workers: its metrics are tf.metrics over the whole file
    // with the weights the cluster ended with (thresholded at 0.5 for precision and recall).
    const { done, weights } = await train(2, { ...spec, model: { topology } });
    const model = await buildModel({ topology }, SEED);
    loadFlatWeights(model, weights);
    const ys = tf.tensor2d(testRows.map((r) => r.t));
    const pred = model.predict(tf.tensor2d(testRows.map((r) => r.x))) as tf.Tensor;
    const positive = tf.cast(tf.greater(pred, 0.5), 'float32');
    const value = (t: tf.Tensor) => t.dataSync()[0]!;
    const want = {
      precision: value(tfl.metrics.precision(ys, positive)),
      recall: value(tfl.metrics.recall(ys, positive)),
      binaryAccuracy: value(tf.mean(tfl.metrics.binaryAccuracy(ys, pred))),
      mse: value(tf.mean(tfl.metrics.meanSquaredError(ys, pred))),
      accuracy: value(tf.mean(tfl.metrics.binaryAccuracy(ys, pred))),
    };
    model.dispose();
    console.log(
      `multilabel test metrics: cluster ${JSON.stringify(done.result?.testMetrics)}, tf.metrics ${JSON.stringify(want)}`,
    );
    expect(want.precision).toBeGreaterThan(0.3); // a trained model: not the degenerate 0
    expect(Object.keys(done.result!.testMetrics!).sort()).toEqual(Object.keys(want).sort());
    for (const [k, v] of Object.entries(want)) expect(done.result!.testMetrics![k], k).toBeCloseTo(v, 5);
    expect(done.result!.testAccuracy).toBeCloseTo(want.binaryAccuracy, 5);
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    const series = new RegExp(`^gradfleet_test_metric\\{job_id="${done.id}",metric="precision"\\} (\\S+)$`, 'm');
    expect(Number(series.exec(metrics)?.[1])).toBeCloseTo(done.result!.testMetrics!['precision']!, 12);
  });

  it('classWeight on binary labels weighs each example loss as model.fit does (mean over the examples)', async () => {
    const text = imbalancedCsv(TRAIN);
    const file = join(data.dir, 'imbalanced.csv');
    writeFileSync(file, text);
    const { split } = parseCsv(text, file, { labelColumn: 'y' });
    const classWeight = { 0: 0.5, 1: 4 };
    const topology = sigmoidTopology(1);
    const spec: JobSpecInput = {
      dataset: { csv: { train: file, labelColumn: 'y' } },
      labels: 'binary',
      loss: 'binaryCrossentropy',
      optimizer: 'adam',
      learningRate: 0.05,
      classWeight: { '0': 0.5, '1': 4 },
    };
    const { reference, layout } = await expectParity(
      'classWeight binary',
      topology,
      async (model) => {
        model.compile({ optimizer: tf.train.adam(0.05), loss: 'binaryCrossentropy' });
        for (const { xs, ys } of samplerBatches(split, {
          batch: BATCH,
          epochs: EPOCHS,
          seed: SEED,
          classes: 1,
          kind: 'value',
        }))
          await model.fit(xs, ys, { batchSize: BATCH, epochs: 1, shuffle: false, classWeight, verbose: 0 });
      },
      spec,
    );
    // The weights matter: without them the cluster lands measurably elsewhere.
    const { classWeight: _, ...unweighted } = spec;
    const plain = await train(1, { ...unweighted, model: { topology } });
    expect(worstDifference(plain.weights, reference, layout)).toBeGreaterThan(10 * TOLERANCE);
  });

  it('classWeight on class labels (an array, one weight per class) matches model.fit', async () => {
    const weights = [1, 3, 0.5, 2, 1, 1, 0.25, 4, 1, 2];
    await expectParity(
      'classWeight class',
      mnistTopology(),
      async (model) => {
        model.compile({ optimizer: tf.train.sgd(0.2), loss: 'categoricalCrossentropy' });
        for (const { xs, ys } of samplerBatches(mnist.train, {
          batch: BATCH,
          epochs: EPOCHS,
          seed: SEED,
          classes: 10,
          kind: 'one-hot',
        }))
          await model.fit(xs, ys, {
            batchSize: BATCH,
            epochs: 1,
            shuffle: false,
            classWeight: { ...weights },
            verbose: 0,
          });
      },
      { dataset: data.dataset, optimizer: 'sgd', learningRate: 0.2, classWeight: weights },
    );
  });
});
