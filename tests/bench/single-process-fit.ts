/**
 * A job spec's recipe in one process with plain `model.fit` (the baseline of the
 * end-to-end and reference benchmarks). Prints one JSON line.
 *
 *   single-process-fit.ts [--backend wasm] [--spec '<job spec JSON>'] [--test-every-epoch]
 *
 * The default spec is the reference recipe: MNIST MLP Dense(128, relu) -> Dropout(0.2) ->
 * Dense(10, softmax), Adam, batch 32, 5 epochs, validation split 0.1. With
 * --test-every-epoch the test split is evaluated after each epoch (time not counted).
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildModel, loadDataset, parseJobSpec, selectBackend, type BackendPreference } from '@gradfleet/core';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const backend = (arg('--backend') ?? 'wasm') as BackendPreference;
const spec = parseJobSpec(JSON.parse(arg('--spec') ?? '{}'));
const testEveryEpoch = process.argv.includes('--test-every-epoch');
const selection = await selectBackend(backend);
if (spec.dataset !== 'mnist' && !('idx' in spec.dataset))
  throw new Error('single-process-fit: only mnist and IDX datasets');
const data = await loadDataset(spec.dataset);

const model = await buildModel(spec.model, spec.seed);
const inputShape = model.inputs[0]!.shape.slice(1) as number[];

function tensors(split: NonNullable<typeof data.test>) {
  const x = new Float32Array(split.count * split.featureSize);
  for (let i = 0; i < x.length; i++) x[i] = split.x[i]! * split.scale;
  const y = new Float32Array(split.count * 10);
  for (let i = 0; i < split.count; i++) y[i * 10 + split.y[i]!] = 1;
  return { xs: tf.tensor(x, [split.count, ...inputShape]), ys: tf.tensor2d(y, [split.count, 10]) };
}

const train = tensors(data.train);
const test = data.test && data.test.count > 0 ? tensors(data.test) : undefined;
model.compile({ optimizer: tf.train.adam(spec.learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
const evaluate = () =>
  test ? (model.evaluate(test.xs, test.ys, { batchSize: 1024 }) as tf.Scalar[])[1]!.dataSync()[0]! : NaN;
const epochs: { epoch: number; elapsedMs: number; testAccuracy?: number }[] = [];
let evalMs = 0;
const t0 = performance.now();
const history = await model.fit(train.xs, train.ys, {
  batchSize: spec.batchSize,
  epochs: spec.epochs,
  validationSplit: spec.validationSplit,
  shuffle: true,
  verbose: 0,
  callbacks: {
    onEpochEnd: async (epoch) => {
      const elapsedMs = performance.now() - t0 - evalMs;
      if (!testEveryEpoch) return void epochs.push({ epoch, elapsedMs });
      const e0 = performance.now();
      epochs.push({ epoch, elapsedMs, testAccuracy: evaluate() });
      evalMs += performance.now() - e0;
    },
  },
});
const wallTimeMs = performance.now() - t0 - evalMs;
const trainSamples = Math.floor(data.train.count * (1 - spec.validationSplit)) * spec.epochs;
console.log(
  JSON.stringify({
    backend: selection.backend,
    epochs,
    wallTimeMs,
    samplesPerSecond: trainSamples / (wallTimeMs / 1000),
    testAccuracy: evaluate(),
    valAccuracy: (history.history['val_acc'] as number[] | undefined)?.at(-1),
  }),
);
