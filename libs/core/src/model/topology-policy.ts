import { InvalidJobSpecError } from '../job/job-spec.js';
import { normalizeTopology, toCamelCase, type NormalizedNode } from './normalize-topology.js';

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
/** Size-like fields, by their normalised (camelCase) names: `kernel_size` and `kernelSize` alike. */
const SIZE_FIELDS = new Set([
  'units',
  'filters',
  'inputDim',
  'outputDim',
  'inputLength',
  'kernelSize',
  'poolSize',
  'strides',
  'dilationRate',
  'depthMultiplier',
  'batchInputShape',
  'inputShape',
  'targetShape',
  'size',
  'n',
]);

/**
 * Refuses unknown or non-string classes and absurd sizes, naming the offending place
 * (`model.topology.config.layers.3`), on the topology as TensorFlow.js will read it
 * (`normalizeTopology`: `className` and `class_name`, `kernelSize` and `kernel_size` alike).
 * Returns the normalised topology, for `countTopologyParams`.
 */
export function checkTopology(topology: unknown): NormalizedNode {
  return normalizeTopology(topology, (field, v, path) => {
    if (field === 'className') {
      const parent = path.slice(0, path.lastIndexOf('.'));
      if (typeof v !== 'string')
        throw new InvalidJobSpecError([{ path: parent, message: 'a class name must be a string' }]);
      if (!ALLOWED_CLASSES.has(toCamelCase(v)))
        throw new InvalidJobSpecError([
          {
            path: parent,
            message: `class ${JSON.stringify(v.slice(0, 100))} is not allowed (only TensorFlow.js built-in layers and initializers; no custom or lambda classes)`,
          },
        ]);
    }
    if (SIZE_FIELDS.has(field)) {
      const values = (Array.isArray(v) ? (v as unknown[]) : [v]).filter((x) => x !== null);
      const min = field === 'targetShape' ? -1 : 0;
      if (values.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < min || x > MAX_LAYER_DIMENSION)) {
        throw new InvalidJobSpecError([
          {
            path,
            message: `${field}: sizes must be integers from 0 to ${MAX_LAYER_DIMENSION} (-1 where a shape infers one)`,
          },
        ]);
      }
    }
  });
}
