import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../backend/select-backend.js';
import { InvalidJobSpecError } from '../job/job-spec.js';
import { buildModel } from './model-factory.js';
import { normalizeTopology } from './normalize-topology.js';
import { countTopologyParams } from './param-count.js';
import { checkTopology } from './topology-policy.js';

type Layer = { class_name: string; config: Record<string, unknown> };
const seq = (layers: Layer[]) => ({ class_name: 'Sequential', config: { layers } });
/** The same topology with every key in camelCase, as TensorFlow.js also accepts it. */
const camel = (t: unknown) => normalizeTopology(t);
const count = (t: unknown, limit?: number) => countTopologyParams(checkTopology(t), limit);

/** Weights of the model TensorFlow.js actually builds. */
async function built(t: Record<string, unknown>): Promise<number> {
  const m = await tfl.models.modelFromJSON({ modelTopology: t } as never);
  const n = m.countParams();
  m.dispose();
  return n;
}

/** TensorFlow.js's default Orthogonal recurrent initializer fails on the cpu backend here; the count does not depend on it. */
const GLOROT = { class_name: 'GlorotUniform', config: {} };

const TABLE: [string, Layer[]][] = [
  ['dense', [{ class_name: 'Dense', config: { units: 7, batch_input_shape: [null, 5] } }]],
  [
    'dense over 3-d input, dropout, activation',
    [
      { class_name: 'Dense', config: { units: 4, batch_input_shape: [null, 3, 6] } },
      { class_name: 'Dropout', config: { rate: 0.5 } },
      { class_name: 'Activation', config: { activation: 'relu' } },
      { class_name: 'Flatten', config: {} },
      { class_name: 'Dense', config: { units: 2 } },
    ],
  ],
  [
    'cnn',
    [
      { class_name: 'Conv2D', config: { filters: 8, kernel_size: 3, batch_input_shape: [null, 28, 28, 1] } },
      { class_name: 'MaxPooling2D', config: { pool_size: [2, 2] } },
      { class_name: 'Conv2D', config: { filters: 4, kernel_size: [3, 2], strides: 2, padding: 'same' } },
      { class_name: 'BatchNormalization', config: {} },
      { class_name: 'Flatten', config: {} },
      { class_name: 'Dense', config: { units: 10 } },
    ],
  ],
  [
    'separable, depthwise, transpose, padding, upsampling, global pooling',
    [
      { class_name: 'ZeroPadding2D', config: { padding: 1, batch_input_shape: [null, 9, 9, 3] } },
      { class_name: 'SeparableConv2D', config: { filters: 5, kernel_size: 3, depth_multiplier: 2 } },
      { class_name: 'DepthwiseConv2D', config: { kernel_size: 2 } },
      { class_name: 'Conv2DTranspose', config: { filters: 3, kernel_size: 3, strides: 2 } },
      { class_name: 'UpSampling2D', config: { size: [2, 2] } },
      {
        class_name: 'Cropping2D',
        config: {
          cropping: [
            [1, 1],
            [2, 0],
          ],
        },
      },
      { class_name: 'GlobalAveragePooling2D', config: {} },
      { class_name: 'Dense', config: { units: 2 } },
    ],
  ],
  [
    'embedding and recurrent layers',
    [
      {
        class_name: 'Embedding',
        config: { input_dim: 50, output_dim: 8, input_length: 6, batch_input_shape: [null, 6] },
      },
      { class_name: 'LSTM', config: { units: 5, return_sequences: true, recurrent_initializer: GLOROT } },
      { class_name: 'GRU', config: { units: 4, return_sequences: true, recurrent_initializer: GLOROT } },
      {
        class_name: 'Bidirectional',
        config: { layer: { class_name: 'SimpleRNN', config: { units: 3, recurrent_initializer: GLOROT } } },
      },
      { class_name: 'RepeatVector', config: { n: 2 } },
      { class_name: 'TimeDistributed', config: { layer: { class_name: 'Dense', config: { units: 2 } } } },
      { class_name: 'LayerNormalization', config: {} },
      { class_name: 'Reshape', config: { target_shape: [-1] } },
    ],
  ],
  [
    'conv1d and pooling1d',
    [
      { class_name: 'Conv1D', config: { filters: 4, kernel_size: 3, batch_input_shape: [null, 20, 2] } },
      { class_name: 'AveragePooling1D', config: { pool_size: 2 } },
      { class_name: 'GlobalMaxPooling1D', config: {} },
    ],
  ],
];

describe('countTopologyParams', () => {
  beforeAll(() => selectBackend('cpu'));

  it.each(TABLE)('%s: counts what TensorFlow.js builds, in snake_case and camelCase', async (_name, layers) => {
    const t = seq(layers);
    const n = await built(t);
    expect(count(t)).toBe(n);
    expect(count(camel(t))).toBe(n);
  });

  it('counts what model.toJSON() gives for a Sequential (the usual way to write a topology)', () => {
    const m = tfl.sequential({
      layers: [
        tfl.layers.conv2d({ inputShape: [12, 12, 1], filters: 4, kernelSize: 3, activation: 'relu' }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.flatten(),
        tfl.layers.dropout({ rate: 0.1 }),
        tfl.layers.dense({ units: 5, activation: 'softmax' }),
      ],
    });
    expect(count(m.toJSON(null, false))).toBe(m.countParams());
    m.dispose();
  });

  it('counts a functional model with a merge', async () => {
    const input = tfl.input({ shape: [6] });
    const a = tfl.layers.dense({ units: 4 }).apply(input) as tfl.SymbolicTensor;
    const b = tfl.layers.dense({ units: 4 }).apply(input) as tfl.SymbolicTensor;
    const sum = tfl.layers.add().apply([a, b]) as tfl.SymbolicTensor;
    const cat = tfl.layers.concatenate().apply([sum, a]) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 3 }).apply(cat) as tfl.SymbolicTensor;
    const m = tfl.model({ inputs: input, outputs: out });
    const json = m.toJSON(null, false) as Record<string, unknown>;
    expect(count(json)).toBe(m.countParams());
    expect(count(camel(json))).toBe(m.countParams());
  });

  it('matches TensorFlow.js on random dense and conv stacks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 4, max: 12 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant('conv' as const),
              filters: fc.integer({ min: 1, max: 6 }),
              k: fc.integer({ min: 1, max: 3 }),
            }),
            fc.record({ kind: fc.constant('pool' as const), filters: fc.constant(0), k: fc.constant(2) }),
          ),
          { maxLength: 3 },
        ),
        fc.integer({ min: 1, max: 9 }),
        async (size, channels, convs, units) => {
          const layers: Layer[] = [
            { class_name: 'InputLayer', config: { batch_input_shape: [null, size, size, channels] } },
            ...convs.map((c) =>
              c.kind === 'conv'
                ? { class_name: 'Conv2D', config: { filters: c.filters, kernel_size: c.k, padding: 'same' } }
                : { class_name: 'MaxPooling2D', config: { pool_size: 2, padding: 'same' } },
            ),
            { class_name: 'Flatten', config: {} },
            { class_name: 'Dense', config: { units } },
          ];
          const t = seq(layers);
          expect(count(t)).toBe(await built(t));
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('refused before anything is built', () => {
  const refusal = (f: () => unknown): string => {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidJobSpecError);
      const issue = (err as InvalidJobSpecError).issues[0]!;
      return `${issue.path}: ${issue.message}`;
    }
    throw new Error('expected a refusal');
  };

  it.each([
    [
      'a camelCase Embedding of 4 G parameters',
      { className: 'Embedding', config: { inputDim: 65536, outputDim: 65536, batchInputShape: [null, 4] } },
    ],
    [
      'a snake_case Embedding of 4 G parameters',
      { class_name: 'Embedding', config: { input_dim: 65536, output_dim: 65536, batch_input_shape: [null, 4] } },
    ],
    [
      'a Dense over a flattened 65536x65536 input',
      { className: 'Flatten', config: { batchInputShape: [null, 65536, 65536] } },
    ],
  ])('%s (LIMIT_EXCEEDED)', async (_name, l) => {
    const t = { className: 'Sequential', config: { layers: [l, { className: 'Dense', config: { units: 10 } }] } };
    expect(refusal(() => count(t, 200_000_000))).toMatch(
      /^model: LIMIT_EXCEEDED: the topology has more than 200000000/,
    );
    await expect(buildModel({ topology: t }, 1, { maxParams: 200_000_000 })).rejects.toThrow(InvalidJobSpecError);
  });

  it.each([
    ['a camelCase custom class', { className: 'Lambda', config: {} }, /"Lambda" is not allowed/],
    ['a non-string class name', { class_name: ['Lambda'], config: {} }, /a class name must be a string/],
    ['class_name and className together', { class_name: 'Dense', className: 'Lambda', config: {} }, /same field/],
    [
      'a camelCase kernelSize of 1e6',
      { className: 'Conv2D', config: { filters: 1, kernelSize: 1e6 } },
      /kernelSize: sizes must be/,
    ],
    [
      'a camelCase inputDim over the limit',
      { className: 'Embedding', config: { inputDim: 1e7, outputDim: 2 } },
      /inputDim: sizes/,
    ],
    [
      'a camelCase batchInputShape over the limit',
      { className: 'Dense', config: { units: 1, batchInputShape: [null, 1e6] } },
      /batchInputShape/,
    ],
    [
      'a custom initializer in camelCase',
      { className: 'Dense', config: { units: 1, kernelInitializer: { className: 'MyInit' } } },
      /"MyInit"/,
    ],
    [
      'a layer whose size cannot be computed',
      { className: 'Dot', config: { axes: 1 } },
      /cannot be computed before building/,
    ],
  ])('%s', (_name, l, why) => {
    const t = {
      className: 'Sequential',
      config: { layers: [{ className: 'InputLayer', config: { batchInputShape: [null, 4] } }, l] },
    };
    expect(refusal(() => count(t))).toMatch(why);
  });
});
