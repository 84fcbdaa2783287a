import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { InvalidJobSpecError, type JobSpec, type ModelSpec, type OptimizerOptions } from '../job/job-spec.js';
import { countTopologyParams } from './param-count.js';
import { checkTopology } from './topology-policy.js';
import { applyTrainableLayers } from './trainable-layers.js';

/** Initializers that accept a `seed`; seeding them makes initial weights reproducible. */
const SEEDED_INITIALIZERS = new Set([
  'VarianceScaling',
  'GlorotUniform',
  'GlorotNormal',
  'HeNormal',
  'HeUniform',
  'LeCunNormal',
  'LeCunUniform',
  'RandomNormal',
  'RandomUniform',
  'TruncatedNormal',
  'Orthogonal',
]);

/** Deep-copies a Layers topology and gives every unseeded random initializer a seed derived from `seed`. */
export function seedTopology(topology: Record<string, unknown>, seed: number): Record<string, unknown> {
  let next = seed >>> 0;
  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (node === null || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) {
      const init = value as { class_name?: unknown; config?: Record<string, unknown> } | null;
      if (
        key.endsWith('_initializer') &&
        init &&
        typeof init.class_name === 'string' &&
        SEEDED_INITIALIZERS.has(init.class_name)
      ) {
        const config = { ...(init.config ?? {}) };
        if (config['seed'] === undefined || config['seed'] === null) config['seed'] = next++ >>> 0;
        out[key] = { ...init, config };
      } else {
        out[key] = visit(value);
      }
    }
    return out;
  };
  return visit(topology) as Record<string, unknown>;
}

function mnistMlp(seed: number): tfl.LayersModel {
  return tfl.sequential({
    name: 'mnist_mlp',
    layers: [
      tfl.layers.dense({
        name: 'dense_1',
        inputShape: [784],
        units: 128,
        activation: 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed }),
      }),
      tfl.layers.dropout({ name: 'dropout_1', rate: 0.2 }),
      tfl.layers.dense({
        name: 'dense_2',
        units: 10,
        activation: 'softmax',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }),
      }),
    ],
  });
}

function mnistCnn(seed: number): tfl.LayersModel {
  const glorot = (k: number) => tfl.initializers.glorotUniform({ seed: seed + k });
  return tfl.sequential({
    name: 'mnist_cnn',
    layers: [
      tfl.layers.conv2d({
        name: 'conv_1',
        inputShape: [28, 28, 1],
        filters: 16,
        kernelSize: 3,
        activation: 'relu',
        kernelInitializer: glorot(0),
      }),
      tfl.layers.maxPooling2d({ name: 'pool_1', poolSize: 2 }),
      tfl.layers.conv2d({
        name: 'conv_2',
        filters: 32,
        kernelSize: 3,
        activation: 'relu',
        kernelInitializer: glorot(1),
      }),
      tfl.layers.maxPooling2d({ name: 'pool_2', poolSize: 2 }),
      tfl.layers.flatten({ name: 'flatten' }),
      tfl.layers.dense({ name: 'dense_1', units: 64, activation: 'relu', kernelInitializer: glorot(2) }),
      tfl.layers.dense({ name: 'dense_2', units: 10, activation: 'softmax', kernelInitializer: glorot(3) }),
    ],
  });
}

/** Thrown when a model spec cannot be turned into a model (unknown layer class, bad shapes...). */
export class InvalidModelError extends Error {
  readonly code = 'INVALID_MODEL';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidModelError';
  }
}

/**
 * Builds a job's model on the active backend. Built-ins are constructed in code; a
 * topology is deserialised by TensorFlow.js from JSON (only registered layer classes
 * load; nothing is evaluated). Same spec + seed gives the same initial weights. A topology
 * is checked (allowlist, sizes) and its weights counted against `limits.maxParams` on its
 * normalised config before anything is built. With `trainableLayers`, every other layer is
 * frozen (`applyTrainableLayers`).
 */
export async function buildModel(
  spec: ModelSpec,
  seed: number,
  limits: { maxParams?: number; trainableLayers?: readonly string[] | undefined } = {},
): Promise<tfl.LayersModel> {
  const model = await buildUnfrozen(spec, seed, limits.maxParams);
  if (limits.trainableLayers === undefined) return model;
  try {
    applyTrainableLayers(model, limits.trainableLayers);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

async function buildUnfrozen(spec: ModelSpec, seed: number, maxParams: number | undefined): Promise<tfl.LayersModel> {
  try {
    if (spec === 'mnist-mlp') return mnistMlp(seed);
    if (spec === 'mnist-cnn') return mnistCnn(seed);
    countTopologyParams(checkTopology(spec.topology), maxParams);
    // Serialise once so that defaulted initializers appear explicitly, then seed them all.
    const first = await tfl.models.modelFromJSON({ modelTopology: spec.topology } as never);
    const explicit = first.toJSON(null, false) as Record<string, unknown>;
    first.dispose();
    return await tfl.models.modelFromJSON({ modelTopology: seedTopology(explicit, seed) } as never);
  } catch (err) {
    if (err instanceof InvalidJobSpecError) throw err;
    throw new InvalidModelError(`cannot build model: ${(err as Error).message}`);
  }
}

/** Shapes of every weight (`model.getWeights()` order): trainable ones first. */
export function weightLayout(model: tfl.LayersModel): number[][] {
  return model.weights.map((w) => [...w.shape] as number[]);
}

/** Number of trainable parameters: the length of a gradient vector. */
export function trainableParameterCount(model: tfl.LayersModel): number {
  return model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}

/** Concatenates every weight into one Float32 vector (`model.getWeights()` order). */
export function flattenWeights(model: tfl.LayersModel): Float32Array {
  const values = model.getWeights().map((w) => w.dataSync() as Float32Array);
  const out = new Float32Array(values.reduce((n, v) => n + v.length, 0));
  let off = 0;
  for (const v of values) {
    out.set(v, off);
    off += v.length;
  }
  return out;
}

/** Sets every weight from one Float32 vector laid out as `flattenWeights` writes it. */
export function loadFlatWeights(model: tfl.LayersModel, flat: Float32Array): void {
  let off = 0;
  const tensors = model.weights.map((w) => {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.subarray(off, off + size), shape);
    off += size;
    return t;
  });
  if (off !== flat.length) throw new RangeError(`weights vector has ${flat.length} values, model needs ${off}`);
  model.setWeights(tensors);
  tf.dispose(tensors);
}

/**
 * The job's optimizer with its `optimizerOptions` (an absent option keeps TensorFlow.js's
 * default: Adam 0.9/0.999, momentum 0.9, RMSProp momentum 0, epsilon the backend's).
 * `weightDecay` is not an optimizer argument: the replica applies it, decoupled.
 */
export function createOptimizer(
  spec: Pick<JobSpec, 'optimizer' | 'learningRate'> & { optimizerOptions?: Partial<OptimizerOptions> },
): tf.Optimizer {
  const lr = spec.learningRate;
  const o = spec.optimizerOptions ?? {};
  switch (spec.optimizer) {
    case 'adam':
      return tf.train.adam(lr, o.beta1, o.beta2, o.epsilon);
    case 'sgd':
      return tf.train.sgd(lr);
    case 'momentum':
      return tf.train.momentum(lr, o.momentum ?? 0.9, o.nesterov ?? false);
    case 'rmsprop':
      return tf.train.rmsprop(lr, undefined, o.momentum, o.epsilon);
    case 'adagrad':
      return tf.train.adagrad(lr);
  }
}

/**
 * Sets the rate an optimizer's next `applyGradients` uses (SGD and momentum cache it as a
 * tensor, so they need `setLearningRate`). Not `instanceof`: TensorFlow.js optimizers answer
 * it by duck typing, so every optimizer is an `instanceof tf.SGDOptimizer`.
 */
export function setOptimizerLearningRate(optimizer: tf.Optimizer, lr: number): void {
  const o = optimizer as unknown as { learningRate: number; setLearningRate?: (lr: number) => void };
  if (typeof o.setLearningRate === 'function') o.setLearningRate(lr);
  else o.learningRate = lr;
}

/** The rate an optimizer's next `applyGradients` uses. */
export function optimizerLearningRate(optimizer: tf.Optimizer): number {
  return (optimizer as unknown as { learningRate: number }).learningRate;
}

/** Per-example loss, exactly as `model.fit` computes it for the same loss name. */
export function lossFunction(loss: JobSpec['loss']): (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor {
  switch (loss) {
    case 'categoricalCrossentropy':
    case 'sparseCategoricalCrossentropy': // labels are one-hot encoded by the batcher: same value
      return (y, p) => tfl.metrics.categoricalCrossentropy(y, p);
    case 'meanSquaredError':
      return (y, p) => tfl.metrics.meanSquaredError(y, p);
    case 'meanAbsoluteError':
      return (y, p) => tfl.metrics.meanAbsoluteError(y, p);
    case 'binaryCrossentropy':
      return (y, p) => tfl.metrics.binaryCrossentropy(y, p);
  }
}
