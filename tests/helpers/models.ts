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
