import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../backend/select-backend.js';
import { EarlyStopper, EarlyStoppingSchema, type EarlyStoppingOptions } from './early-stopping.js';

/** The epoch after which `tf.callbacks.earlyStopping` sets `model.stopTraining`, or undefined. */
async function tfjsStop(options: EarlyStoppingOptions, values: number[]): Promise<number | undefined> {
  const callback = tfl.callbacks.earlyStopping({
    monitor: options.monitor,
    minDelta: options.minDelta,
    patience: options.patience,
    mode: options.mode,
    ...(options.baseline === undefined ? {} : { baseline: options.baseline }),
  });
  const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 1, inputShape: [1] })] });
  model.compile({ optimizer: 'sgd', loss: 'meanSquaredError' });
  callback.setModel(model);
  await callback.onTrainBegin();
  for (let epoch = 0; epoch < values.length; epoch++) {
    await callback.onEpochEnd(epoch, { [options.monitor]: values[epoch]! });
    if (model.stopTraining) {
      model.dispose();
      return epoch;
    }
  }
  model.dispose();
  return undefined;
}

/** The epoch after which an EarlyStopper says stop, or undefined. */
function ourStop(options: EarlyStoppingOptions, values: number[]): number | undefined {
  const stopper = new EarlyStopper(options);
  for (let epoch = 0; epoch < values.length; epoch++)
    if (stopper.onEpochEnd(epoch, { [options.monitor]: values[epoch]! }) === 'stop') return epoch;
  return undefined;
}

describe('EarlyStopper', () => {
  beforeAll(() => selectBackend('cpu'));

  it('stops after the same epoch as tf.callbacks.earlyStopping for any options and values', async () => {
    const value = fc.oneof(
      fc.double({ min: -2, max: 2, noNaN: true }),
      fc.constantFrom(0, 0.5, 0.5 + 1e-9, Number.NaN), // plateaus, ties and NaN
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          monitor: fc.constantFrom('val_loss', 'val_acc', 'val_accuracy', 'loss', 'acc', 'accuracy'),
          minDelta: fc.constantFrom(0, 1e-3, 0.1, 0.5),
          patience: fc.integer({ min: 0, max: 4 }),
          mode: fc.constantFrom('auto', 'min', 'max'),
          baseline: fc.option(fc.double({ min: -1, max: 1, noNaN: true }), { nil: undefined }),
        }),
        fc.array(value, { minLength: 1, maxLength: 12 }),
        async (raw, values) => {
          const options = EarlyStoppingSchema.parse(raw);
          expect(ourStop(options, values)).toBe(await tfjsStop(options, values));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('remembers the best epoch, resumes from its state and says why it stopped', () => {
    const options = EarlyStoppingSchema.parse({ monitor: 'val_loss', minDelta: 0.01, patience: 2 });
    const first = new EarlyStopper(options);
    expect(first.onEpochEnd(0, { val_loss: 1 })).toBe('improved');
    expect(first.onEpochEnd(1, { val_loss: 0.5 })).toBe('improved');
    expect(first.onEpochEnd(2, { val_loss: 0.495 })).toBe('waiting'); // not by more than minDelta
    expect(first.onEpochEnd(3, { loss: 0.1 })).toBe('missing');
    // A checkpoint carries the state through JSON; the resumed stopper continues the count.
    const resumed = new EarlyStopper(options, JSON.parse(JSON.stringify(first.state())));
    expect(resumed.onEpochEnd(3, { val_loss: 0.6 })).toBe('stop');
    expect(resumed.state()).toEqual({ best: 0.5, wait: 2, bestEpoch: 1, stoppedEpoch: 3 });
    expect(resumed.describe()).toBe(
      'early stopping after epoch 4: val_loss did not improve by more than 0.01 for 2 epoch(s) (best 0.500000 at epoch 2)',
    );
  });
});
