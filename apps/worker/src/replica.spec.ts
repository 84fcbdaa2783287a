import { beforeAll, describe, expect, it } from 'vitest';
import {
  buildModel,
  flattenWeights,
  maxRelativeDifference,
  parseJobSpec,
  selectBackend,
  weightLayout,
  type Dataset,
} from '@gradfleet/core';
import { Replica } from './replica.js';

/** 4 inputs → Dropout → 1 linear output: small enough to step through by hand. */
const topology = {
  class_name: 'Sequential',
  config: {
    layers: [
      { class_name: 'Dense', config: { units: 6, activation: 'tanh', batch_input_shape: [null, 4], name: 'h' } },
      { class_name: 'Dropout', config: { rate: 0.25, name: 'drop' } },
      { class_name: 'Dense', config: { units: 1, name: 'out' } },
    ],
  },
};

const COUNT = 16;
const data: Dataset = {
  name: 'table',
  train: {
    x: Float32Array.from({ length: COUNT * 4 }, (_, i) => Math.sin(i)),
    y: Float32Array.from({ length: COUNT }, (_, i) => Math.cos(i)),
    count: COUNT,
    featureSize: 4,
    scale: 1,
  },
  featureShape: [4],
  numClasses: 1,
};

describe('Replica: the step number survives checkpoints and joins', () => {
  beforeAll(() => selectBackend('cpu'));

  for (const optimizer of ['momentum', 'adam'] as const) {
    it(`a ${optimizer} replica rebuilt from another's state continues its schedule and dropout streams`, async () => {
      const spec = parseJobSpec({
        model: { topology },
        dataset: { csv: { train: 'unused.csv' } },
        labels: 'regression',
        loss: 'meanSquaredError',
        optimizer,
        learningRate: 0.05,
        lrSchedule: { type: 'step', stepSize: 2, gamma: 0.5, warmupSteps: 1 },
        optimizerOptions: { weightDecay: 0.1 },
        clipNorm: 0.5,
        seededDropout: true,
      });
      const model = await buildModel(spec.model, spec.seed);
      const layout = weightLayout(model);
      const initial = flattenWeights(model);
      model.dispose();
      const step = async (r: Replica, t: number) => {
        const g = new Float32Array(r.paramCount);
        await r.computeGradient([(t * 5) % COUNT, (t * 3 + 1) % COUNT, (t * 7 + 2) % COUNT], g);
        r.applyUpdate(g);
      };
      const continuous = await Replica.create(spec, layout, initial, data);
      for (let t = 0; t < 6; t++) await step(continuous, t);

      const first = await Replica.create(spec, layout, initial, data);
      for (let t = 0; t < 3; t++) await step(first, t);
      const weights = first.weights();
      const { specs, values } = await first.optimizerState();
      const state = new Float32Array(weights.length + values.length);
      state.set(weights);
      state.set(values, weights.length);
      const joined = await Replica.create(spec, layout, state, data, specs);
      for (let t = 3; t < 6; t++) await step(joined, t);

      expect(Array.from(joined.weights())).toEqual(Array.from(continuous.weights()));
      expect(Array.from(joined.weights())).not.toEqual(Array.from(initial));
      [continuous, first, joined].forEach((r) => r.dispose());
    });
  }
});

describe('Replica: gradient accumulation', () => {
  beforeAll(() => selectBackend('cpu'));

  it('accumulationSteps=k computes micro-batches whose weighted mean is the gradient of the whole slice', async () => {
    const spec = (accumulationSteps: number) =>
      parseJobSpec({
        model: { topology },
        dataset: { csv: { train: 'unused.csv' } },
        labels: 'regression',
        loss: 'meanSquaredError',
        optimizer: 'adam',
        learningRate: 0.05,
        seededDropout: true,
        accumulationSteps,
      });
    const model = await buildModel(spec(1).model, spec(1).seed);
    const layout = weightLayout(model);
    const initial = flattenWeights(model);
    model.dispose();
    const whole = await Replica.create(spec(1), layout, initial, data);
    const micro = await Replica.create(spec(3), layout, initial, data);
    const passes: number[] = [];
    micro.onChunk = (examples) => passes.push(examples);
    const slice = [0, 3, 5, 6, 8, 9, 11, 12, 14, 15]; // 10 examples: micro-batches of 4, 4 and 2
    for (let t = 0; t < 4; t++) {
      const a = new Float32Array(whole.paramCount);
      const b = new Float32Array(micro.paramCount);
      const sa = await whole.computeGradient(slice, a);
      const sb = await micro.computeGradient(slice, b);
      expect(maxRelativeDifference(b, a)).toBeLessThan(1e-5);
      expect(sb.count).toBe(sa.count);
      expect(Math.abs(sb.lossSum - sa.lossSum)).toBeLessThan(1e-5 * Math.abs(sa.lossSum));
      whole.applyUpdate(a);
      micro.applyUpdate(b);
    }
    expect(passes).toEqual([4, 4, 2, 4, 4, 2, 4, 4, 2, 4, 4, 2]);
    expect(maxRelativeDifference(micro.weights(), whole.weights())).toBeLessThan(1e-5);
    expect(maxRelativeDifference(micro.weights(), initial)).toBeGreaterThan(1e-2);
    [whole, micro].forEach((r) => r.dispose());
  });
});
