import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildModel,
  loadDataset,
  maxRelativeDifference,
  selectBackend,
  type Dataset,
  type JobSpecInput,
} from '@gradfleet/core';
import { modelWeightsByName, saveToDir, weightsByName } from './helpers/artifacts.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { samplerBatches } from './helpers/sampler-batches.js';

/**
 * Fine-tuning parity with `model.fit` (issue #14): the same small model, started from the same
 * uploaded TensorFlow.js artifact with its middle layer frozen (`layer.trainable = false`
 * before compiling), trained on the same batches in this process and by the cluster with 1
 * and 2 workers, gives the same weights within 1e-4 relative (per weight tensor), and the
 * frozen layer ends bit-identical to the artifact.
 */

const TRAIN = 300; // not a multiple of the batch: the last step of each epoch is partial
const BATCH = 64;
const EPOCHS = 2;
const STEPS = EPOCHS * Math.ceil(TRAIN / BATCH);
const SEED = 11;
const TOLERANCE = 1e-4;
const FROZEN = ['b/kernel', 'b/bias'];

/** A 784-16-12-10 MLP, layers `a`, `b`, `c`. */
function topology(): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ name: 'a', inputShape: [784], units: 16, activation: 'relu' }),
      tfl.layers.dense({ name: 'b', units: 12, activation: 'relu' }),
      tfl.layers.dense({ name: 'c', units: 10, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

/** Per weight (by name), the largest relative difference. */
function worstDifference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  return Math.max(...[...a].map(([name, v]) => maxRelativeDifference(v, b.get(name)!)));
}

const bitEqual = (a: Float32Array, b: Float32Array) =>
  Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer)) === 0;

describe('fine-tuning parity with model.fit: initialModel + trainableLayers (1 and 2 workers)', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;
  let mnist: Dataset;
  /** The artifact's weights (a model of the same topology, another seed, saved by TensorFlow.js). */
  let initial: Map<string, Float32Array>;
  let initialModel: { modelJson: string; weights: string };

  beforeAll(async () => {
    await selectBackend('wasm');
    data = await writeSmallMnist(TRAIN, 64);
    mnist = await loadDataset(data.dataset);
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
    const model = await buildModel({ topology: topology() }, SEED + 100);
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-parity-artifact-'));
    await saveToDir(model, dir);
    initial = modelWeightsByName(model);
    model.dispose();
    initialModel = await cluster.client.uploadModel(
      readFileSync(join(dir, 'model.json')),
      readFileSync(join(dir, 'weights.bin')),
    );
  });
  afterAll(() => cluster.stop());

  async function train(workers: number, spec: JobSpecInput): Promise<Map<string, Float32Array>> {
    const job = await cluster.client.submit({
      model: { topology: topology() },
      dataset: data.dataset,
      epochs: EPOCHS,
      batchSize: BATCH,
      validationSplit: 0,
      seed: SEED,
      checksumEverySteps: 3,
      optimizer: 'adam',
      learningRate: 0.01,
      initialModel,
      ...spec,
      minWorkers: workers,
      maxWorkers: workers,
    });
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    expect(done.workers).toHaveLength(workers);
    expect(done.result?.steps).toBe(STEPS);
    expect(done.replicas.divergences).toBe(0);
    const { modelJson, weights } = await cluster.client.model(job.id);
    return weightsByName(modelJson, weights);
  }

  it('matches model.fit from the same weights with layer b frozen; b ends bit-identical to the artifact', async () => {
    // model.fit's train function, one global batch per call, in the sampler's order.
    const model = await buildModel({ topology: topology() }, SEED);
    model.setWeights(model.weights.map((w) => tf.tensor(initial.get(w.originalName)!, w.shape as number[])));
    model.getLayer('b').trainable = false;
    model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
    for (const { xs, ys } of samplerBatches(mnist.train, { batch: BATCH, epochs: EPOCHS, seed: SEED, classes: 10 }))
      await model.trainOnBatch(xs, ys);
    const fit = modelWeightsByName(model);
    model.dispose();
    for (const name of FROZEN) expect(bitEqual(fit.get(name)!, initial.get(name)!), name).toBe(true);
    for (const name of ['a/kernel', 'c/kernel'])
      expect(maxRelativeDifference(fit.get(name)!, initial.get(name)!), name).toBeGreaterThan(1e-2);

    const spec: JobSpecInput = { trainableLayers: ['a', 'c'] };
    const one = await train(1, spec);
    const two = await train(2, spec);
    const d1 = worstDifference(one, fit);
    const d2 = worstDifference(two, fit);
    console.log(`fine-tuning, b frozen: max relative difference to model.fit: 1 worker ${d1}, 2 workers ${d2}`);
    expect(d1).toBeLessThan(TOLERANCE);
    expect(d2).toBeLessThan(TOLERANCE);
    for (const name of FROZEN) {
      expect(bitEqual(one.get(name)!, initial.get(name)!), `${name}, 1 worker`).toBe(true);
      expect(bitEqual(two.get(name)!, initial.get(name)!), `${name}, 2 workers`).toBe(true);
    }
    // Freezing matters here: training every layer from the same weights lands elsewhere.
    const all = await train(2, {});
    expect(worstDifference(all, fit)).toBeGreaterThan(10 * TOLERANCE);
    expect(maxRelativeDifference(all.get('b/kernel')!, initial.get('b/kernel')!)).toBeGreaterThan(1e-3);
  });
});
