import * as tfl from '@tensorflow/tfjs-layers';

/**
 * A dropout-free MLP over 28x28 inputs as a Layers topology: training is deterministic,
 * so a disturbed run computes what an undisturbed one does (up to float summation order).
 */
export const dropoutFreeMlp = {
  class_name: 'Sequential',
  config: {
    name: 'mlp',
    layers: [
      { class_name: 'Dense', config: { units: 64, activation: 'relu', batch_input_shape: [null, 784], name: 'h' } },
      { class_name: 'Dense', config: { units: 10, activation: 'softmax', name: 'out' } },
    ],
  },
};

/** A dropout-free 784 → 32 (relu) → 10 (softmax) MLP as a Layers topology (what `model.toJSON()` gives): deterministic training. */
export function smallMlpTopology(): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [784], units: 32, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}
