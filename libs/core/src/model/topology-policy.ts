import { InvalidJobSpecError } from '../job/job-spec.js';

/**
 * Job specs can't run code: a topology may name only these TensorFlow.js classes (layers,
 * containers, initializers, regularizers, constraints). Custom and lambda-like classes are
 * refused before anything is deserialised.
 */
export const ALLOWED_CLASSES = new Set([
  'Sequential',
  'Model',
  'Functional',
  'InputLayer',
  'Dense',
  'Dropout',
  'Flatten',
  'Reshape',
  'Permute',
  'RepeatVector',
  'Activation',
  'Masking',
  'SpatialDropout1D',
  'GaussianNoise',
  'GaussianDropout',
  'AlphaDropout',
  'Conv1D',
  'Conv2D',
  'Conv2DTranspose',
  'Conv3D',
  'SeparableConv2D',
  'DepthwiseConv2D',
  'Cropping2D',
  'UpSampling2D',
  'ZeroPadding2D',
  'MaxPooling1D',
  'MaxPooling2D',
  'MaxPooling3D',
  'AveragePooling1D',
  'AveragePooling2D',
  'AveragePooling3D',
  'GlobalAveragePooling1D',
  'GlobalAveragePooling2D',
  'GlobalMaxPooling1D',
  'GlobalMaxPooling2D',
  'BatchNormalization',
  'LayerNormalization',
  'Embedding',
  'SimpleRNN',
  'GRU',
  'LSTM',
  'Bidirectional',
  'TimeDistributed',
  'Add',
  'Subtract',
  'Multiply',
  'Average',
  'Maximum',
  'Minimum',
  'Concatenate',
  'Dot',
  'ReLU',
  'LeakyReLU',
  'PReLU',
  'ELU',
  'ThresholdedReLU',
  'Softmax',
  'Zeros',
  'Ones',
  'Constant',
  'RandomNormal',
  'RandomUniform',
  'TruncatedNormal',
  'VarianceScaling',
  'GlorotUniform',
  'GlorotNormal',
  'HeNormal',
  'HeUniform',
  'LeCunNormal',
  'LeCunUniform',
  'Orthogonal',
  'Identity',
  'L1L2',
  'L1',
  'L2',
  'MaxNorm',
  'MinMaxNorm',
  'NonNeg',
  'UnitNorm',
]);

/** Largest value of a size-like field (units, filters, a dimension), against absurd shapes. */
export const MAX_LAYER_DIMENSION = 65_536;
const SIZE_FIELDS = new Set([
  'units',
  'filters',
  'input_dim',
  'output_dim',
  'kernel_size',
  'pool_size',
  'strides',
  'batch_input_shape',
  'target_shape',
]);
/** Nesting and node limits: a topology is data of a bounded size. */
const MAX_DEPTH = 64;
const MAX_NODES = 200_000;

/** Refuses unknown classes and absurd sizes, naming the offending place (`model.topology.config.layers.3`). */
export function checkTopology(topology: unknown): void {
  let nodes = 0;
  const visit = (node: unknown, path: string, depth: number): void => {
    if (++nodes > MAX_NODES || depth > MAX_DEPTH)
      throw new InvalidJobSpecError([{ path, message: 'topology too large or too deeply nested' }]);
    if (Array.isArray(node)) return node.forEach((v, i) => visit(v, `${path}.${i}`, depth + 1));
    if (node === null || typeof node !== 'object') return;
    const obj = node as Record<string, unknown>;
    if (typeof obj['class_name'] === 'string' && !ALLOWED_CLASSES.has(obj['class_name'])) {
      throw new InvalidJobSpecError([
        {
          path,
          message: `class ${JSON.stringify(obj['class_name'])} is not allowed (only TensorFlow.js built-in layers and initializers; no custom or lambda classes)`,
        },
      ]);
    }
    for (const [k, v] of Object.entries(obj)) {
      if (SIZE_FIELDS.has(k)) {
        const values = (Array.isArray(v) ? v : [v]).filter((x) => x !== null);
        if (values.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > MAX_LAYER_DIMENSION)) {
          throw new InvalidJobSpecError([
            {
              path: `${path}.${k}`,
              message: `${k} ${JSON.stringify(v)}: sizes must be integers from 0 to ${MAX_LAYER_DIMENSION}`,
            },
          ]);
        }
      }
      visit(v, `${path}.${k}`, depth + 1);
    }
  };
  visit(topology, 'model.topology', 0);
}
