import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, flattenWeights, parseJobSpec, selectBackend, weightLayout, type Dataset } from '@gradfleet/core';
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
