import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EpochSampler,
  buildModel,
  flattenWeights,
  gatherBatch,
  loadDataset,
  selectBackend,
  type JobSpecInput,
} from '@gradfleet/core';
import { worstDifference } from './helpers/sampler-batches.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { smallMlpTopology } from './helpers/models.js';

const TRAIN = 600; // not a multiple of the batch: the last step of each epoch is partial
const BATCH = 64;
const EPOCHS = 2; // 2 x ceil(600 / 64) = 20 steps

describe('equivalence: N workers at global batch B = 1 worker at B = plain TensorFlow.js', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;
  let spec: JobSpecInput;

  beforeAll(async () => {
    await selectBackend('wasm');
    data = await writeSmallMnist(TRAIN, 200);
    spec = {
      model: { topology: smallMlpTopology() },
      dataset: data.dataset,
      epochs: EPOCHS,
      batchSize: BATCH,
      validationSplit: 0,
      seed: 7,
      optimizer: 'adam',
      learningRate: 0.01,
      checksumEverySteps: 5,
    };
    await cluster.startCoordinator();
    await cluster.startWorkers(3);
  });
  afterAll(() => cluster.stop());

  async function train(workers: number, extra: JobSpecInput = {}): Promise<Float32Array> {
    const job = await cluster.client.submit({ ...spec, ...extra, minWorkers: workers, maxWorkers: workers });
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    expect(done.workers, cluster.log.slice(-4000)).toHaveLength(workers);
    expect(done.result?.steps).toBe(EPOCHS * Math.ceil(TRAIN / BATCH));
    expect(done.history.every((h) => h.audit.ok)).toBe(true);
    expect(done.replicas.divergences).toBe(0);
    if (workers > 1) expect(done.replicas.checks).toBeGreaterThan(0);
    const { weights } = await cluster.client.model(job.id);
    lastLoss = done.history.at(-1)!.loss;
    return new Float32Array(weights);
  }
  let lastLoss = 0;

  it('gives the same weights within 1e-4 relative difference', async () => {
    const two = await train(2);
    const three = await train(3); // 64 = 22 + 21 + 21: unequal slices, weighted mean
    const one = await train(1);

    // Plain TensorFlow.js on the same batches, same backend, same initial weights.
    const model = await buildModel({ topology: smallMlpTopology() }, 7);
    const layout = model.weights.map((w) => w.shape as number[]);
    model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
    const mnist = await loadDataset(data.dataset);
    const sampler = new EpochSampler({ size: TRAIN, seed: 7 });
    const x = new Float32Array(BATCH * 784);
    const y = new Float32Array(BATCH * 10);
    for (let e = 0; e < EPOCHS; e++) {
      sampler.beginEpoch(e);
      while (!sampler.exhausted) {
        const batch = sampler.take(BATCH);
        sampler.complete(batch);
        gatherBatch(mnist.train, batch, 10, x, y);
        const xs = tf.tensor2d(x.subarray(0, batch.length * 784), [batch.length, 784]);
        const ys = tf.tensor2d(y.subarray(0, batch.length * 10), [batch.length, 10]);
        await model.trainOnBatch(xs, ys);
        tf.dispose([xs, ys]);
      }
    }
    const plain = flattenWeights(model);
    const initial = flattenWeights(await buildModel({ topology: smallMlpTopology() }, 7));

    expect(two.length).toBe(plain.length);
    expect(worstDifference(two, initial, layout)).toBeGreaterThan(1e-2); // training moved the weights
    expect(worstDifference(two, one, layout)).toBeLessThan(1e-4);
    expect(worstDifference(one, plain, layout)).toBeLessThan(1e-4);
    expect(worstDifference(two, plain, layout)).toBeLessThan(1e-4);
    expect(worstDifference(three, one, layout)).toBeLessThan(1e-4);
    console.log(
      'max relative differences: 2 vs 1',
      worstDifference(two, one, layout),
      '3 vs 1',
      worstDifference(three, one, layout),
      '1 vs plain',
      worstDifference(one, plain, layout),
    );

    // Cut into 25 buckets of 1,024 floats: the same arithmetic per element, so bit-identical.
    const bucketed = await train(2, { bucketBytes: 4096 });
    expect(Buffer.compare(Buffer.from(bucketed.buffer), Buffer.from(two.buffer))).toBe(0);
  });

  it('compressed gradients keep replicas identical and the loss close to uncompressed', async () => {
    await train(2, { bucketBytes: 8192 });
    const reference = lastLoss;
    const losses: Record<string, number> = {};
    for (const compression of ['fp16', 'int8', 'topk'] as const) {
      await train(2, { compression, bucketBytes: 8192, topkRatio: 0.05 }); // asserts audit, no divergence
      losses[compression] = lastLoss;
    }
    console.log('final-epoch training loss: none', reference, losses);
    expect(Math.abs(losses['fp16']! - reference)).toBeLessThan(0.02 * reference);
    expect(Math.abs(losses['int8']! - reference)).toBeLessThan(0.05 * reference);
    expect(losses['topk']!).toBeLessThan(2 * reference);
  });
});
