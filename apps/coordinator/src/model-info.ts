import {
  InvalidJobSpecError, buildModel, flattenWeights, trainableParameterCount, weightLayout, type JobSpec,
} from '@gradfleet/core';

/** What the coordinator knows of a job's model: enough to start replicas and export artifacts. */
export interface ModelInfo {
  /** Shapes of every weight, `model.getWeights()` order (trainable first). */
  layout: number[][];
  /** Length of a gradient vector. */
  trainableParams: number;
  /** Initial values of every weight, flattened; every replica starts from these. */
  initialWeights: Float32Array;
  /** The Layers topology (`model.toJSON()`), for the exported artifact. */
  topology: Record<string, unknown>;
  weightSpecs: { name: string; shape: number[]; dtype: 'float32' }[];
}

const MNIST_FEATURES = 784;
const MNIST_CLASSES = 10;

/**
 * Builds the job's model once on the coordinator (cpu backend): validates the spec's model
 * against its dataset and yields the seeded initial weights all replicas start from.
 */
export async function describeModel(spec: JobSpec): Promise<ModelInfo> {
  const model = await buildModel(spec.model, spec.seed);
  try {
    const input = model.inputs[0]!.shape.slice(1);
    const output = model.outputs[0]!.shape;
    if (spec.dataset === 'mnist') {
      const features = input.reduce((a: number, b) => a * (b ?? 1), 1);
      if (features !== MNIST_FEATURES) throw new InvalidJobSpecError([{ path: 'model', message: `model input ${JSON.stringify(input)} has ${features} values; mnist examples have ${MNIST_FEATURES}` }]);
      if (output[output.length - 1] !== MNIST_CLASSES) throw new InvalidJobSpecError([{ path: 'model', message: `model output has ${output[output.length - 1]} units; mnist has ${MNIST_CLASSES} classes` }]);
    }
    return {
      layout: weightLayout(model),
      trainableParams: trainableParameterCount(model),
      initialWeights: flattenWeights(model),
      topology: model.toJSON(null, false) as Record<string, unknown>,
      weightSpecs: model.weights.map((w) => ({ name: w.originalName, shape: [...w.shape] as number[], dtype: 'float32' as const })),
    };
  } finally {
    model.dispose();
  }
}

/** A TensorFlow.js `model.json` (layers-model format) whose weights are in `weights.bin`. */
export function modelArtifactJson(info: ModelInfo): Record<string, unknown> {
  return {
    format: 'layers-model',
    generatedBy: 'gradfleet',
    convertedBy: null,
    modelTopology: info.topology,
    weightsManifest: [{ paths: ['weights.bin'], weights: info.weightSpecs }],
  };
}
