import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel, gatherBatch, loadFlatWeights, parseCsv, selectBackend } from '@gradfleet/core';
import { refusal } from './helpers/api.js';
import { TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

/**
 * A validation set of its own (issue #14): `dataset.csv.validation` (here an upload) replaces
 * `validationSplit`; every training row trains, and the per-epoch validation figures are
 * `model.evaluate`'s on that file with the job's model.
 */

const TRAIN = 200;
const VALIDATION = 60;

/** Rows `a,b,c,d,label` with 3 classes from a fixed generator. */
function rows(n: number, seed: number): string {
  let state = seed;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const out = ['a,b,c,d,label'];
  for (let i = 0; i < n; i++) {
    const x = [next(), next(), next(), next()];
    const label = x[0]! + x[1]! > 1.2 ? 2 : x[2]! > 0.5 ? 1 : 0;
    out.push([...x.map((v) => v.toFixed(4)), label].join(','));
  }
  return out.join('\n');
}

function topology(): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [4], units: 8, activation: 'relu' }),
      tfl.layers.dense({ units: 3, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

describe('a validation file instead of validationSplit (2 workers)', () => {
  const cluster = new TestCluster();

  beforeAll(async () => {
    await selectBackend('cpu');
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  it('trains on every training row and validates on the file, as model.evaluate does', async () => {
    const trainFile = join(cluster.dataDir, 'train.csv');
    writeFileSync(trainFile, rows(TRAIN, 7));
    const valText = rows(VALIDATION, 99);
    const upload = await cluster.client.upload(new TextEncoder().encode(valText), 'validation.csv');
    const job = await cluster.client.submit({
      model: { topology: topology() },
      dataset: { csv: { train: trainFile, validation: upload.source } },
      epochs: 2,
      batchSize: 25,
      optimizer: 'adam',
      learningRate: 0.05,
      minWorkers: 2,
      maxWorkers: 2,
    });
    expect(job.spec.validationSplit).toBe(0);
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(done.dataset?.validation?.examples).toBe(VALIDATION);
    expect(done.history.map((e) => e.samples)).toEqual([TRAIN, TRAIN]);

    // model.evaluate of the downloaded model on the validation file.
    const model = await buildModel({ topology: topology() }, 0);
    loadFlatWeights(model, new Float32Array((await cluster.client.model(job.id)).weights));
    model.compile({ optimizer: 'sgd', loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
    const { split } = parseCsv(valText, 'validation.csv', { labelColumn: 'label' });
    const x = new Float32Array(VALIDATION * 4);
    const y = new Float32Array(VALIDATION * 3);
    gatherBatch(
      split,
      Array.from({ length: VALIDATION }, (_, i) => i),
      3,
      x,
      y,
      'one-hot',
    );
    const [loss, acc] = (
      model.evaluate(tf.tensor2d(x, [VALIDATION, 4]), tf.tensor2d(y, [VALIDATION, 3]), {
        batchSize: VALIDATION,
      }) as tf.Scalar[]
    ).map((t) => t.dataSync()[0]!);
    const last = done.history.at(-1)!;
    console.log(
      `validation file: job val_loss ${last.valLoss} val_acc ${last.valAccuracy}; model.evaluate ${loss} ${acc}`,
    );
    expect(Math.abs(last.valLoss! - loss!) / loss!).toBeLessThan(1e-5);
    expect(last.valAccuracy).toBeCloseTo(acc!, 6);
    model.dispose();
  });

  it('takes IDX validation files (validationImages, validationLabels) instead of validationSplit', async () => {
    const mnist = await writeSmallMnist(600, 200);
    const { trainImages, trainLabels, testImages, testLabels } = mnist.dataset.idx;
    const idx = { trainImages, trainLabels, testImages, testLabels };
    const half = await refusal(
      cluster.client.submit({ dataset: { idx: { ...idx, validationImages: testImages } }, epochs: 1 }),
    );
    expect([half.status, half.issues[0]!.message]).toEqual([
      400,
      'validationImages and validationLabels must be given together',
    ]);
    // The test files serve as the validation files too: the last epoch's validation and the
    // test evaluation then see the same examples with the same weights.
    const job = await cluster.client.submit({
      model: { topology: dropoutFreeMlp },
      dataset: { idx: { ...idx, validationImages: testImages, validationLabels: testLabels } },
      epochs: 2,
      batchSize: 50,
      minWorkers: 2,
      maxWorkers: 2,
    });
    expect(job.spec.validationSplit).toBe(0);
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(done.dataset?.validation?.examples).toBe(200);
    expect(done.history.map((e) => e.samples)).toEqual([600, 600]);
    const last = done.history.at(-1)!;
    expect(Math.abs(last.valLoss! - done.result!.testLoss!) / done.result!.testLoss!).toBeLessThan(1e-5);
    expect(last.valAccuracy).toBeCloseTo(done.result!.testAccuracy!, 6);
  });
});
