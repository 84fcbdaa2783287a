/**
 * The reference recipe in one process with plain `model.fit`: MNIST MLP
 * Dense(128, relu) -> Dropout(0.2) -> Dense(10, softmax), Adam, batch 32, 5 epochs,
 * validation split 0.1, on the backend given as argv[2] (default wasm). Prints one JSON line.
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildModel, loadDataset, parseJobSpec, selectBackend, type BackendPreference } from '@gradfleet/core';

const backend = (process.argv[2] ?? 'wasm') as BackendPreference;
const epochs = Number(process.argv[3] ?? 5);
const spec = parseJobSpec({ epochs });
const selection = await selectBackend(backend);
const data = await loadDataset('mnist');

function tensors(split: NonNullable<typeof data.test>) {
  const x = new Float32Array(split.count * 784);
  for (let i = 0; i < x.length; i++) x[i] = split.x[i]! * split.scale;
  const y = new Float32Array(split.count * 10);
  for (let i = 0; i < split.count; i++) y[i * 10 + split.y[i]!] = 1;
  return { xs: tf.tensor2d(x, [split.count, 784]), ys: tf.tensor2d(y, [split.count, 10]) };
}

const train = tensors(data.train);
const test = tensors(data.test!);
const model = await buildModel(spec.model, spec.seed);
model.compile({ optimizer: tf.train.adam(spec.learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
const t0 = performance.now();
const history = await model.fit(train.xs, train.ys, { batchSize: spec.batchSize, epochs: spec.epochs, validationSplit: spec.validationSplit, shuffle: true, verbose: 0 });
const wallTimeMs = performance.now() - t0;
const [, acc] = model.evaluate(test.xs, test.ys, { batchSize: 1024 }) as tf.Scalar[];
const trainSamples = Math.floor(data.train.count * (1 - spec.validationSplit)) * spec.epochs;
console.log(JSON.stringify({
  backend: selection.backend, epochs, wallTimeMs, samplesPerSecond: trainSamples / (wallTimeMs / 1000),
  testAccuracy: acc!.dataSync()[0], valAccuracy: (history.history['val_acc'] as number[]).at(-1),
}));
