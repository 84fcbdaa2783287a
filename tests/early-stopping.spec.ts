import * as tfl from '@tensorflow/tfjs-layers';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend, type JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';

/**
 * `earlyStopping` end to end (issue #14): 2 workers train until the monitored value stops
 * improving; the job ends SUCCEEDED with the reason, at the epoch `tf.callbacks.earlyStopping`
 * stops at on the same values, and `restoreBestWeights` delivers the best epoch's weights.
 */

const TRAIN = 300;
const BATCH = 50;
const EPOCHS = 12;
const VALIDATION = 0.2; // 240 training examples: 5 steps per epoch, 60 validation examples
const STEPS_PER_EPOCH = Math.ceil((TRAIN * (1 - VALIDATION)) / BATCH);

/** A checkpoint's directory name. */
const stepDir = (step: number) => `step-${String(step).padStart(12, '0')}`;

/** The epoch after which `tf.callbacks.earlyStopping` stops fit on these values, or undefined. */
async function tfjsStop(options: tfl.EarlyStoppingCallbackArgs, values: number[]): Promise<number | undefined> {
  const callback = tfl.callbacks.earlyStopping(options);
  const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 1, inputShape: [1] })] });
  model.compile({ optimizer: 'sgd', loss: 'meanSquaredError' });
  callback.setModel(model);
  await callback.onTrainBegin();
  let stopped: number | undefined;
  for (let epoch = 0; epoch < values.length && stopped === undefined; epoch++) {
    await callback.onEpochEnd(epoch, { [options.monitor!]: values[epoch]! });
    if (model.stopTraining) stopped = epoch;
  }
  model.dispose();
  return stopped;
}

describe('earlyStopping (2 workers)', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;

  beforeAll(async () => {
    await selectBackend('cpu');
    data = await writeSmallMnist(TRAIN, 40);
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  async function run(earlyStopping: Record<string, unknown>): Promise<JobStatus> {
    const job = await cluster.client.submit({
      dataset: data.dataset,
      model: 'mnist-mlp',
      epochs: EPOCHS,
      batchSize: BATCH,
      validationSplit: VALIDATION,
      learningRate: 0.003,
      seed: 5,
      seededDropout: true, // mnist-mlp has a Dropout layer: the same values run after run
      minWorkers: 2,
      maxWorkers: 2,
      earlyStopping,
    });
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(done.replicas.divergences).toBe(0);
    return done;
  }

  it('stops where tf.callbacks.earlyStopping stops on the same val_acc, and restores the best weights', async () => {
    const options = { monitor: 'val_acc', minDelta: 0.05, patience: 2 } as const;
    const done = await run({ ...options, restoreBestWeights: true });
    const values = done.history.map((e) => e.valAccuracy!);
    const last = done.history.length - 1;
    console.log(`val_acc per epoch: ${values.join(' ')}; ${done.reason}`);
    expect(last + 1).toBeLessThan(EPOCHS); // it did stop early
    expect(await tfjsStop(options, values)).toBe(last);
    expect(done.result?.steps).toBe((last + 1) * STEPS_PER_EPOCH);
    const s = done.earlyStopping!;
    expect(s.stoppedEpoch).toBe(last);
    expect(s.best).toBe(values[s.bestEpoch!]);
    expect(done.reason).toBe(
      `early stopping after epoch ${last + 1}: val_acc did not improve by more than 0.05 for 2 epoch(s) (best ${s.best!.toPrecision(6)} at epoch ${s.bestEpoch! + 1})`,
    );
    expect(done.events.at(-1)).toMatchObject({ state: 'SUCCEEDED', reason: done.reason });

    // The model is the best epoch's: the checkpoint written at its end holds the same bytes.
    expect(s.bestEpoch).toBe(last - 2);
    const model = Buffer.from((await cluster.client.model(done.id)).weights);
    const dir = join(cluster.dataDir, 'jobs', done.id, 'checkpoints');
    const atEnd = (epoch: number) => readFileSync(join(dir, stepDir((epoch + 1) * STEPS_PER_EPOCH), 'weights.bin'));
    expect(Buffer.compare(model, atEnd(s.bestEpoch!))).toBe(0);
    expect(Buffer.compare(model, atEnd(last - 1))).not.toBe(0);
    // The copies of the best weights kept for a resume are gone once the model is written.
    expect(existsSync(join(cluster.dataDir, 'jobs', done.id, 'best'))).toBe(false);
  });

  it('without restoreBestWeights the model is the last epoch’s; a minDelta nothing beats stops after patience', async () => {
    const done = await run({ monitor: 'val_loss', minDelta: 100, patience: 2 });
    expect(done.history).toHaveLength(3); // epoch 1 beats ∞, epochs 2 and 3 wait
    expect(done.earlyStopping).toEqual({ best: done.history[0]!.valLoss, wait: 2, bestEpoch: 0, stoppedEpoch: 2 });
    expect(done.reason).toMatch(/^early stopping after epoch 3: val_loss did not improve by more than 100 for 2 /);
    expect(existsSync(join(cluster.dataDir, 'jobs', done.id, 'best'))).toBe(false);
    const model = Buffer.from((await cluster.client.model(done.id)).weights);
    const dir = join(cluster.dataDir, 'jobs', done.id, 'checkpoints');
    // The last checkpoint is at the end of epoch 2; epoch 3 trained on from there.
    expect(Buffer.compare(model, readFileSync(join(dir, stepDir(2 * STEPS_PER_EPOCH), 'weights.bin')))).not.toBe(0);
  });
});
