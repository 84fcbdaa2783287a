import { describe, expect, it } from 'vitest';
import { InvalidJobSpecError, parseJobSpec } from './job-spec.js';

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseJobSpec(input);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidJobSpecError);
    return (err as InvalidJobSpecError).issues;
  }
  throw new Error('expected InvalidJobSpecError');
}

describe('parseJobSpec', () => {
  it('fills the reference recipe as defaults', () => {
    expect(parseJobSpec({})).toMatchObject({
      model: 'mnist-mlp',
      dataset: 'mnist',
      optimizer: 'adam',
      learningRate: 0.001,
      loss: 'categoricalCrossentropy',
      epochs: 5,
      batchSize: 32,
      validationSplit: 0.1,
      seed: 42,
      minWorkers: 1,
    });
  });

  it('accepts a topology and IDX paths', () => {
    const spec = parseJobSpec({
      model: { topology: { class_name: 'Sequential', config: {} } },
      dataset: { idx: { trainImages: 'a', trainLabels: 'b' } },
    });
    expect(spec.model).toEqual({ topology: { class_name: 'Sequential', config: {} } });
  });

  it('takes what model.toJSON() returns as the model', () => {
    const topology = { class_name: 'Sequential', config: { layers: [] } };
    expect(parseJobSpec({ model: JSON.stringify(topology) }).model).toEqual({ topology });
    expect(parseJobSpec({ model: topology }).model).toEqual({ topology });
  });

  it('names the offending field of each invalid value', () => {
    expect(issuesOf({ epochs: 0 })[0]!.path).toBe('epochs');
    expect(issuesOf({ batchSize: 1.5 })[0]!.path).toBe('batchSize');
    expect(issuesOf({ learningRate: -1 })[0]!.path).toBe('learningRate');
    expect(issuesOf({ optimizer: 'lbfgs' })[0]!.path).toBe('optimizer');
    expect(issuesOf({ validationSplit: 1 })[0]!.path).toBe('validationSplit');
    expect(issuesOf({ minWorkers: 4, maxWorkers: 2 })[0]!.path).toBe('maxWorkers');
    expect(issuesOf({ epochz: 3 })[0]!.message).toMatch(/epochz/);
    expect(issuesOf({ model: 'resnet' })[0]!.path).toBe('model');
    expect(issuesOf({ dataset: { idx: { trainImages: 'a', trainLabels: 'b', testImages: 'c' } } })[0]!.path).toMatch(
      /^dataset/,
    );
    expect(issuesOf('nope')[0]!.path).toBe('');
  });

  it('defaults the training-math fields to plain constant-rate, unclipped, undecayed training', () => {
    expect(parseJobSpec({})).toMatchObject({
      lrSchedule: { type: 'constant', warmupSteps: 0 },
      optimizerOptions: { weightDecay: 0 },
      clipNorm: 0,
      clipValue: 0,
      regularizers: 'include',
      labels: 'class',
      seededDropout: false,
    });
    expect(parseJobSpec({ lrSchedule: { type: 'cosine', decaySteps: 100 } }).lrSchedule).toEqual({
      type: 'cosine',
      decaySteps: 100,
      alpha: 0,
      warmupSteps: 0,
    });
  });

  it('names the field of each invalid schedule, clip and optimizer option', () => {
    expect(issuesOf({ lrSchedule: { type: 'linear' } })[0]!.path).toBe('lrSchedule.type');
    expect(issuesOf({ lrSchedule: { type: 'step', stepSize: 0 } })[0]!.path).toBe('lrSchedule.stepSize');
    expect(issuesOf({ lrSchedule: { type: 'exponential', decaySteps: 10 } })[0]!.path).toBe('lrSchedule.decayRate');
    expect(issuesOf({ lrSchedule: { type: 'cosine', decaySteps: 10, gamma: 0.5 } })[0]!.path).toBe('lrSchedule');
    expect(issuesOf({ lrSchedule: { type: 'constant', warmupSteps: -1 } })[0]!.path).toBe('lrSchedule.warmupSteps');
    expect(issuesOf({ clipNorm: -1 })[0]!.path).toBe('clipNorm');
    expect(issuesOf({ clipValue: 'big' })[0]!.path).toBe('clipValue');
    expect(issuesOf({ regularizers: 'sometimes' })[0]!.path).toBe('regularizers');
    expect(issuesOf({ optimizerOptions: { beta1: 1 } })[0]!.path).toBe('optimizerOptions.beta1');
    expect(issuesOf({ optimizerOptions: { weightDecay: -0.1 } })[0]!.path).toBe('optimizerOptions.weightDecay');
    expect(issuesOf({ optimizerOptions: { betas: [0.9, 0.99] } })[0]!.message).toMatch(/betas/);
  });

  it('pairs each loss with the labels it takes, on the loss field', () => {
    const csv = { csv: { train: 'a.csv' } };
    expect(parseJobSpec({ dataset: csv, labels: 'regression', loss: 'meanAbsoluteError' }).labels).toBe('regression');
    expect(parseJobSpec({ dataset: csv, labels: 'binary', loss: 'binaryCrossentropy' }).loss).toBe(
      'binaryCrossentropy',
    );
    expect(issuesOf({ dataset: csv, labels: 'regression' })).toEqual([
      {
        path: 'loss',
        message:
          "'categoricalCrossentropy' needs labels 'class'; with labels 'regression' use 'meanSquaredError' or 'meanAbsoluteError'",
      },
    ]);
    expect(issuesOf({ dataset: csv, loss: 'binaryCrossentropy' })[0]!.path).toBe('loss');
    expect(issuesOf({ labels: 'binary', loss: 'binaryCrossentropy' })[0]!.path).toBe('labels'); // mnist
    expect(issuesOf({ labels: 'ordinal' })[0]!.path).toBe('labels');
  });

  it('reads chunks from the coordinator by default; dataStore s3 only for a named dataset', () => {
    expect(parseJobSpec({}).dataStore).toBe('coordinator');
    expect(parseJobSpec({ dataset: { name: 'd' }, dataStore: 's3' }).dataStore).toBe('s3');
    for (const dataset of ['mnist', { csv: { train: 'a.csv' } }])
      expect(issuesOf({ dataset, dataStore: 's3' })).toEqual([
        { path: 'dataStore', message: expect.stringMatching(/named dataset stored in S3/) as string },
      ]);
    expect(issuesOf({ dataStore: 'gcs' })[0]!.path).toBe('dataStore');
  });

  it('refuses an optimizer option the chosen optimizer does not take, saying which does', () => {
    const [nesterov] = issuesOf({ optimizer: 'adam', optimizerOptions: { nesterov: true } });
    expect(nesterov).toEqual({
      path: 'optimizerOptions.nesterov',
      message: "applies to optimizer 'momentum', not 'adam': remove it or change the optimizer",
    });
    expect(issuesOf({ optimizer: 'sgd', optimizerOptions: { beta2: 0.99, epsilon: 1e-8 } }).map((i) => i.path)).toEqual(
      ['optimizerOptions.beta2', 'optimizerOptions.epsilon'],
    );
    expect(
      parseJobSpec({ optimizer: 'momentum', optimizerOptions: { momentum: 0.8, nesterov: true, weightDecay: 0.01 } })
        .optimizerOptions,
    ).toEqual({ momentum: 0.8, nesterov: true, weightDecay: 0.01 });
    expect(
      parseJobSpec({ optimizer: 'sgd', optimizerOptions: { weightDecay: 0.1 } }).optimizerOptions.weightDecay,
    ).toBe(0.1);
  });
});

describe('seeded topologies', () => {
  it('give the same initial weights for the same seed, even with defaulted initializers', async () => {
    const { selectBackend, buildModel, flattenWeights } = await import('../index.js');
    await selectBackend('cpu');
    const topology = {
      class_name: 'Sequential',
      config: { layers: [{ class_name: 'Dense', config: { units: 4, batch_input_shape: [null, 3] } }] },
    };
    const a = flattenWeights(await buildModel({ topology }, 7));
    const b = flattenWeights(await buildModel({ topology }, 7));
    const c = flattenWeights(await buildModel({ topology }, 8));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
  });
});

describe('topology policy', () => {
  it('refuses unknown or custom classes and absurd sizes, naming the place', async () => {
    const { checkTopology } = await import('../index.js');
    const seq = (layers: unknown[]) => ({ class_name: 'Sequential', config: { layers } });
    expect(() =>
      checkTopology(seq([{ class_name: 'Dense', config: { units: 10, batch_input_shape: [null, 4] } }])),
    ).not.toThrow();
    expect(() => checkTopology(seq([{ class_name: 'Lambda', config: { function: 'evil()' } }]))).toThrow(
      /"Lambda" is not allowed/,
    );
    const huge = () => checkTopology(seq([{ class_name: 'Dense', config: { units: 1e9 } }]));
    expect(huge).toThrow(InvalidJobSpecError);
    expect(huge).toThrow(
      expect.objectContaining({
        issues: [expect.objectContaining({ path: expect.stringMatching(/^model\.topology/) })],
      }),
    );
    const customInitializer = () =>
      checkTopology(
        seq([{ class_name: 'Dense', config: { units: 10, kernel_initializer: { class_name: 'MyInit', config: {} } } }]),
      );
    expect(customInitializer).toThrow(InvalidJobSpecError);
    expect(customInitializer).toThrow(
      expect.objectContaining({
        issues: [expect.objectContaining({ path: 'model.topology.config.layers.0.config.kernel_initializer' })],
      }),
    );
  });
});
