import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { mulberry32 } from '../sampler/prng.js';

/** One splitmix-style mixing round of `h` with `v` (32-bit). */
function mix(h: number, v: number): number {
  h = (h ^ Math.imul((v >>> 0) + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Seed of the dropout stream of one example of one step in one Dropout layer (its index among them). */
export function dropoutStreamSeed(seed: number, step: number, layer: number, example: number): number {
  return mix(mix(mix(mix(0x5eed, seed), step), layer), example);
}

/**
 * Dropout multipliers for a batch, `width` per example (row-major): 0 with probability
 * `rate`, else 1 / (1 − rate), as `tf.dropout` computes them. Row j draws from the stream
 * of example `examples[j]` alone, so an example's mask does not depend on which worker
 * computes it or with which other examples.
 */
export function dropoutMask(
  examples: ArrayLike<number>,
  width: number,
  rate: number,
  seed: number,
  step: number,
  layer: number,
): Float32Array {
  const out = new Float32Array(examples.length * width);
  const keep = 1 / (1 - rate);
  for (let j = 0; j < examples.length; j++) {
    const rand = mulberry32(dropoutStreamSeed(seed, step, layer, examples[j]!));
    for (let k = 0; k < width; k++) out[j * width + k] = rand() >= rate ? keep : 0;
  }
  return out;
}

/** What `seedDropout` changes: the batch the next training-mode forward pass computes. */
export interface SeededDropout {
  /** How many Dropout layers draw from seeded streams. */
  readonly layers: number;
  setBatch(step: number, examples: ArrayLike<number>): void;
}

/**
 * Makes every `Dropout` layer of `model` (top-level layers, without `noiseShape`) draw its
 * mask from `dropoutMask` streams of (job seed, step, layer, example) instead of unseeded
 * randomness, so training is reproducible bit for bit. Call `setBatch` before each
 * training-mode forward pass; inference passes are untouched (no dropout).
 */
export function seedDropout(model: tfl.LayersModel, seed: number): SeededDropout {
  let batch: { step: number; examples: ArrayLike<number> } | undefined;
  let count = 0;
  for (const layer of model.layers) {
    const config = layer.getConfig();
    if (layer.getClassName() !== 'Dropout' || config['noiseShape'] != null) continue;
    const rate = config['rate'] as number;
    const index = count++;
    const patched = layer as unknown as {
      call: (inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }) => tf.Tensor | tf.Tensor[];
    };
    patched.call = (inputs, kwargs) => {
      const input = Array.isArray(inputs) ? inputs[0]! : inputs;
      if (!kwargs['training'] || !(rate > 0 && rate < 1)) return input;
      if (!batch || batch.examples.length !== input.shape[0])
        throw new Error(`seeded dropout: a forward pass of ${input.shape[0]} examples without its batch (setBatch)`);
      const width = input.size / input.shape[0];
      const mask = dropoutMask(batch.examples, width, rate, seed, batch.step, index);
      return tf.tidy(() => tf.mul(input, tf.tensor(mask, input.shape)));
    };
  }
  return {
    layers: count,
    setBatch(step, examples) {
      batch = { step, examples };
    },
  };
}
