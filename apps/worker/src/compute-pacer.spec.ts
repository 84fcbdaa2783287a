import { describe, expect, it } from 'vitest';
import {
  buildModel,
  flattenWeights,
  maxRelativeDifference,
  parseJobSpec,
  selectBackend,
  weightLayout,
  type Dataset,
} from '@gradfleet/core';
import { ComputePacer } from './compute-pacer.js';
import { Replica } from './replica.js';

describe('ComputePacer', () => {
  it('keeps a slice whole until a measurement says it would overrun the budget, then cuts it', () => {
    const pacer = new ComputePacer(500);
    expect(pacer.chunk(64)).toBe(64); // nothing measured yet
    pacer.observe(4, 40); // 10 ms per example: 50 fit the budget, cut to a power of two
    expect(pacer.chunk(64)).toBe(32);
    expect(pacer.chunk(50)).toBe(50); // fits whole
    expect(pacer.chunk(32)).toBe(32);
    pacer.observe(1, 10_000); // a very slow example: never below one per chunk
    expect(pacer.chunk(64)).toBe(1);
  });
});

/** A tiny dense model and random data: enough to compare chunked and whole-slice gradients. */
async function tinyReplica(): Promise<Replica> {
  await selectBackend('cpu');
  const spec = parseJobSpec({
    model: {
      topology: {
        class_name: 'Sequential',
        config: {
          name: 'tiny',
          layers: [
            { class_name: 'Dense', config: { units: 8, activation: 'relu', batch_input_shape: [null, 6], name: 'h' } },
            { class_name: 'Dense', config: { units: 3, activation: 'softmax', name: 'out' } },
          ],
        },
      },
    },
    dataset: 'mnist',
    seed: 1,
  });
  const model = await buildModel(spec.model, spec.seed);
  const layout = weightLayout(model);
  const weights = flattenWeights(model);
  model.dispose();
  const n = 40;
  const x = Float32Array.from({ length: n * 6 }, (_, i) => Math.sin(i * 1.7));
  const y = Int32Array.from({ length: n }, (_, i) => i % 3);
  const data: Dataset = {
    name: 'tiny',
    train: { x, y, count: n, featureSize: 6, scale: 1 },
    featureShape: [6],
    numClasses: 3,
  };
  return Replica.create(spec, layout, weights, data);
}

describe('Replica.computeGradient in chunks', () => {
  it('equals the whole-slice gradient (weighted by chunk sizes) and the same loss sum', async () => {
    const replica = await tinyReplica();
    const indices = Uint32Array.from({ length: 37 }, (_, i) => i); // 37: the last chunk is partial
    const whole = new Float32Array(replica.paramCount);
    const wholeStats = await replica.computeGradient(indices, whole);
    replica.pacer.budgetMs = 1.1;
    for (let i = 0; i < 40; i++) replica.pacer.observe(10, 2); // the estimate settles at 0.2 ms per example: 5 fit, 4 per chunk
    expect(replica.pacer.chunk(indices.length)).toBe(4);
    const chunked = new Float32Array(replica.paramCount);
    const chunkedStats = await replica.computeGradient(indices, chunked);
    expect(maxRelativeDifference(chunked, whole)).toBeLessThan(1e-5);
    expect(chunkedStats.count).toBe(37);
    expect(chunkedStats.correct).toBe(wholeStats.correct);
    expect(chunkedStats.lossSum).toBeCloseTo(wholeStats.lossSum, 4);
    replica.dispose();
  });
});
