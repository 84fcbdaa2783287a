import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EpochSampler,
  buildModel,
  flattenWeights,
  gatherBatch,
  loadDataset,
  maxRelativeDifference,
  selectBackend,
  splitBatch,
  weightsChecksum,
  type DataSplit,
  type Dataset,
  type JobSpecInput,
  type JobStatus,
} from '@gradfleet/core';
import { refusal } from './helpers/api.js';
import { freePort } from './helpers/prometheus.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';

/**
 * BatchNormalization and every non-trainable weight (issue #14): the moving statistics are
 * averaged with the gradient (docs/architecture.md, "Non-trainable weights"), so replicas
 * stay bit-identical, the replica checksum covers them, the downloaded model carries them,
 * and they match what one process training on the global batch computes.
 */

const TRAIN = 300; // not a multiple of the batch: the last step of each epoch is partial
const TEST = 100;
const BATCH = 64;
const EPOCHS = 2;
const STEPS = EPOCHS * Math.ceil(TRAIN / BATCH);
const SEED = 5;
const LR = 0.1;
/** Per weight tensor, relative to its largest value: 1 and 2 workers against a plain `trainOnBatch` loop. */
const TOLERANCE = 1e-4;
/** Smallest scale a weight tensor's differences are measured against (`differences`). */
const FLOOR = 1e-2;

/** Conv2D(4 filters) → BatchNormalization (momentum 0.8: the statistics follow the data within 10 steps) → ReLU → Dense(10). */
function cnnTopology(): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 4, kernelSize: 5, strides: 3 }),
      tfl.layers.batchNormalization({ momentum: 0.8 }),
      tfl.layers.activation({ activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

/** The global batches the coordinator's sampler gives (`shuffle`, seed SEED), as example indices. */
function* batches(split: DataSplit): Generator<Uint32Array> {
  const sampler = new EpochSampler({ size: split.count, seed: SEED });
  for (let e = 0; e < EPOCHS; e++) {
    sampler.beginEpoch(e);
    while (!sampler.exhausted) {
      const batch = sampler.take(BATCH);
      sampler.complete(batch);
      yield Uint32Array.from(batch);
    }
  }
}

/** Examples `indices` of `split` as images and one-hot targets. */
function tensors(split: DataSplit, indices: Uint32Array): { xs: tf.Tensor4D; ys: tf.Tensor2D } {
  const x = new Float32Array(indices.length * 784);
  const y = new Float32Array(indices.length * 10);
  gatherBatch(split, indices, 10, x, y, 'one-hot');
  return { xs: tf.tensor4d(x, [indices.length, 28, 28, 1]), ys: tf.tensor2d(y, [indices.length, 10]) };
}

/**
 * Data-parallel training written as a plain TensorFlow.js loop, independently of the
 * replicas' code: each step's gradient is the sample-weighted mean of the gradients of the
 * coordinator's `workers` slices (`splitBatch`, equal shares), each slice normalised by
 * BatchNormalization with its own moments as a worker's forward pass does; the moving
 * statistics move by TensorFlow.js's own training pass over the whole global batch.
 */
async function dataParallelLoop(split: DataSplit, workers: number): Promise<Float32Array> {
  const model = await buildModel({ topology: cnnTopology() }, SEED);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = tf.train.sgd(LR);
  for (const batch of batches(split)) {
    tf.tidy(() => {
      const moving = model.nonTrainableWeights.map((w) => tf.clone(w.read()));
      let sums = vars.map((v) => tf.zerosLike(v) as tf.Tensor);
      for (const slice of splitBatch(batch, new Array<number>(workers).fill(1))) {
        const { xs, ys } = tensors(split, slice);
        const { grads } = tf.variableGrads(
          () => tf.mean(tfl.metrics.categoricalCrossentropy(ys, model.apply(xs, { training: true }) as tf.Tensor)),
          vars,
        );
        sums = sums.map((s, i) => tf.add(s, tf.mul(grads[vars[i]!.name]!, slice.length)));
      }
      model.nonTrainableWeights.forEach((w, i) => w.write(moving[i]!)); // undo the slices' own updates
      tf.dispose(model.apply(tensors(split, batch).xs, { training: true }) as tf.Tensor); // the global batch's moments
      optimizer.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: tf.div(sums[i]!, batch.length) })));
    });
  }
  const out = flattenWeights(model);
  model.dispose();
  optimizer.dispose();
  return out;
}

/**
 * Per weight tensor, the largest difference relative to the tensor's largest value (at least
 * FLOOR), the worst over all weights and over the moving statistics alone. The floor is for
 * the convolution's bias: BatchNormalization subtracts it again, so its gradient is 0 and it
 * holds rounding noise (around 1e-9) that no two summation orders agree on.
 */
function differences(a: Float32Array, b: Float32Array, model: tfl.LayersModel): { all: number; moving: number } {
  let off = 0;
  const out = { all: 0, moving: 0 };
  for (const w of model.weights) {
    const n = w.shape.reduce((x: number, y) => x * (y ?? 1), 1);
    const [x, y] = [a.subarray(off, off + n), b.subarray(off, off + n)];
    const scale = Math.max(FLOOR, ...Array.from(y, Math.abs));
    const d = maxRelativeDifference(x, y) * (Math.max(...Array.from(y, Math.abs)) / scale);
    out.all = Math.max(out.all, d);
    if (!w.trainable) out.moving = Math.max(out.moving, d);
    off += n;
  }
  return out;
}

describe('BatchNormalization moving statistics across replicas', () => {
  const cluster = new TestCluster();
  const clusters: TestCluster[] = [];
  let data: SmallMnist;
  let mnist: Dataset;
  /** The model as built (layout, which weights are trainable). */
  let shape: tfl.LayersModel;
  let initial: Float32Array;
  /** `model.trainOnBatch` on every global batch in this process. */
  let plain: Float32Array;
  /** `dataParallelLoop` with 2 and 3 slices per step. */
  const parallel = new Map<number, Float32Array>();

  const spec = (workers: number, extra: JobSpecInput = {}): JobSpecInput => ({
    model: { topology: cnnTopology() },
    dataset: data.dataset,
    epochs: EPOCHS,
    batchSize: BATCH,
    validationSplit: 0,
    seed: SEED,
    optimizer: 'sgd',
    learningRate: LR,
    checksumEverySteps: 3,
    minWorkers: workers,
    maxWorkers: workers,
    ...extra,
  });

  async function train(c: TestCluster, s: JobSpecInput): Promise<{ job: JobStatus; weights: Float32Array }> {
    const { id } = await c.client.submit(s);
    const job = await c.client.waitForJob(id);
    expect(job.state, `${job.reason}\n${c.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(job.result?.steps).toBe(STEPS);
    return { job, weights: new Float32Array((await c.client.model(id)).weights) };
  }

  beforeAll(async () => {
    await selectBackend('wasm');
    data = await writeSmallMnist(TRAIN, TEST);
    mnist = await loadDataset(data.dataset);
    shape = await buildModel({ topology: cnnTopology() }, SEED);
    initial = flattenWeights(shape);
    const model = await buildModel({ topology: cnnTopology() }, SEED);
    model.compile({ optimizer: tf.train.sgd(LR), loss: 'categoricalCrossentropy' });
    for (const batch of batches(mnist.train)) {
      const { xs, ys } = tensors(mnist.train, batch);
      await model.trainOnBatch(xs, ys);
      tf.dispose([xs, ys]);
    }
    plain = flattenWeights(model);
    model.dispose();
    for (const workers of [2, 3]) parallel.set(workers, await dataParallelLoop(mnist.train, workers));
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  }, 120_000);
  afterAll(async () => {
    shape.dispose();
    await Promise.all([cluster.stop(), ...clusters.map((c) => c.stop())]);
  });

  it('2 workers: replicas agree on every weight, and the downloaded model carries their statistics and reproduces the test loss', async () => {
    const { job } = await train(cluster, spec(2));
    expect(job.replicas.divergences).toBe(0);
    expect(job.replicas.checks).toBeGreaterThan(0);
    expect(job.replicas.lastStep).toBe(STEPS - 1); // the last check is after the last update
    const { modelJson, weights } = await cluster.client.model(job.id);
    const manifest = modelJson as {
      modelTopology: object;
      weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
    };
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory(manifest.modelTopology, manifest.weightsManifest[0]!.weights, weights),
    );
    // The replicas' agreed hash covers every weight, the moving statistics included: the download is that state.
    expect(weightsChecksum(model.weights.map((w) => w.read().dataSync() as Float32Array)).hash).toBe(
      job.replicas.lastHash,
    );
    const moving = model.nonTrainableWeights.map((w) => w.read().dataSync() as Float32Array);
    expect(moving).toHaveLength(2);
    const [mean, variance] = [moving[0]!, moving[1]!];
    expect(mean.some((v) => v !== 0)).toBe(true); // trained away from the initial 0 and 1
    expect(variance.some((v) => v !== 1)).toBe(true);
    // Inference uses the moving statistics: the reported test loss and accuracy come back.
    const test = mnist.test!;
    const x = tf.tensor4d(
      Float32Array.from(test.x, (v) => v * test.scale),
      [test.count, 28, 28, 1],
    );
    const y = tf.oneHot(tf.tensor1d(Array.from(test.y), 'int32'), 10);
    const predicted = model.predict(x) as tf.Tensor;
    const loss = tf.mean(tfl.metrics.categoricalCrossentropy(y, predicted)).dataSync()[0]!;
    const labels = tf.argMax(predicted, -1).dataSync();
    let correct = 0;
    for (let i = 0; i < test.count; i++) if (labels[i] === test.y[i]) correct++;
    console.log(`reported test loss ${job.result?.testLoss}, downloaded model ${loss}`);
    expect(Math.abs(loss - job.result!.testLoss!) / job.result!.testLoss!).toBeLessThan(1e-5);
    expect(correct / test.count).toBe(job.result!.testAccuracy);
    tf.dispose([x, y, predicted]);
    model.dispose();
  });

  it('1 worker matches model.trainOnBatch; 2 workers match the plain data-parallel loop, moving statistics included', async () => {
    expect(differences(plain, initial, shape).moving).toBeGreaterThan(1e-1); // the statistics moved far from 0 and 1
    // Each worker normalises its own slice, so 2 workers train another model than one process at the same batch.
    const ghost = differences(parallel.get(2)!, plain, shape);
    console.log(`data-parallel loop (2 slices) vs trainOnBatch: ${ghost.all}, moving statistics ${ghost.moving}`);
    expect(ghost.all).toBeGreaterThan(10 * TOLERANCE);
    for (const [workers, reference] of [
      [1, plain],
      [2, parallel.get(2)!],
    ] as const) {
      const { job, weights } = await train(cluster, spec(workers));
      expect(job.replicas.divergences).toBe(0);
      const d = differences(weights, reference, shape);
      console.log(
        `${workers} worker(s): max relative difference to the reference ${d.all}, moving statistics ${d.moving}`,
      );
      expect(d.moving).toBeLessThan(TOLERANCE);
      expect(d.all).toBeLessThan(TOLERANCE);
    }
  });

  it('on the data plane (reducer shards) the statistics block is averaged like the gradient', async () => {
    const c = new TestCluster();
    clusters.push(c);
    await c.startCoordinator(['--reducer-threads', '2'], await freePort()); // shard k listens on port + 1 + k
    await c.startWorkers(2);
    const { job, weights } = await train(c, spec(2, { bucketBytes: 4096 })); // buckets on both shards, the block on the last
    expect(job.replicas.divergences).toBe(0);
    const d = differences(weights, parallel.get(2)!, shape);
    console.log(
      `data plane, 2 workers: max relative difference to the reference ${d.all}, moving statistics ${d.moving}`,
    );
    expect(d.all).toBeLessThan(TOLERANCE);
  });

  it('a replica whose moving statistics were tampered with is caught by the checksum and resynchronised', async () => {
    const c = new TestCluster();
    clusters.push(c);
    await c.startCoordinator();
    c.startWorker(['--name', 'healthy-1']);
    c.startWorker(['--name', 'healthy-2']);
    c.startWorker(['--name', 'faulty'], { GRADFLEET_TEST_CORRUPT_AT_STEP: '4', GRADFLEET_TEST_CORRUPT: 'stats' });
    const workers = await c.client.waitForWorkers(3, 60_000);
    const faulty = workers.find((w) => w.name === 'faulty')!.id;
    const { job, weights } = await train(c, spec(3, { checksumEverySteps: 5 }));
    const events = job.events.map((e) => e.reason).join('\n');
    expect(events).toMatch(new RegExp(`REPLICA DIVERGENCE after step 4: .* resynchronising ${faulty} from it`));
    expect(job.replicas.divergences).toBe(1);
    // Resynchronised from the majority: the job ends with an undisturbed run's weights.
    expect(differences(weights, parallel.get(3)!, shape).all).toBeLessThan(TOLERANCE);
  });

  it('a lossy compression is refused for a model with BatchNormalization, with what to use', async () => {
    const err = await refusal(cluster.client.submit(spec(2, { compression: 'fp16' })));
    expect(err.status).toBe(400);
    expect(err.issues).toEqual([{ path: 'compression', message: expect.stringContaining("use compression 'none'") }]);
  });
});
