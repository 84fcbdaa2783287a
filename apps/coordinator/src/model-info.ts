import {
  InvalidJobSpecError,
  classWeightIssues,
  metricParts,
  buildModel,
  flattenWeights,
  movingStatsCount,
  trainableParameterCount,
  weightLayout,
  type JobSpec,
} from '@gradfleet/core';
import type { PreparedDataset } from './dataset-ingest.js';
import { loadInitialWeights, matchInitialWeights, type ArtifactWeight } from './initial-weights.js';

/** What the coordinator knows of a job's model: enough to start replicas and export artifacts. */
export interface ModelInfo {
  /** Shapes of every weight, `model.getWeights()` order (trainable first). */
  layout: number[][];
  /** Trainable parameters: the gradient part of the exchanged vector. */
  trainableParams: number;
  /**
   * Length of the vector workers exchange each step: the gradient, then the BatchNormalization
   * statistics block (`MovingStatsCapture` in libs/core; none without BatchNormalization).
   */
  exchangeLength: number;
  /** Initial values of every weight, flattened (seeded, or the job's `initialModel`); every replica starts from these. */
  initialWeights: Float32Array;
  /** The Layers topology (`model.toJSON()`), for the exported artifact. */
  topology: Record<string, unknown>;
  weightSpecs: { name: string; shape: number[]; dtype: 'float32' }[];
}

const MNIST = { featureShape: [28, 28], numClasses: 10 };

/** A job's `initialModel` as the model thread sees it: its declared weights (to check) or its staged directory (to load). */
export interface InitialArtifact {
  /** At submission: the weights the artifact declares, matched against the model. */
  weights?: ArtifactWeight[] | undefined;
  /** At start: `<jobDir>/initial` (`model.json` + `weights.bin`), the values all replicas start from. */
  dir?: string | undefined;
}

/**
 * Builds the job's model once on the coordinator (cpu backend), its `trainableLayers`
 * frozen as the workers freeze them: validates the spec's model against its dataset (and
 * its `initialModel`) and yields the initial weights all replicas start from (seeded, or
 * the initial model's).
 */
export async function describeModel(
  spec: JobSpec,
  data?: Pick<PreparedDataset, 'featureShape' | 'numClasses'>,
  maxParams?: number,
  initial: InitialArtifact = {},
): Promise<ModelInfo> {
  const model = await buildModel(spec.model, spec.seed, {
    ...(maxParams === undefined ? {} : { maxParams }),
    trainableLayers: spec.trainableLayers,
  });
  try {
    if (initial.weights) matchInitialWeights(model, initial.weights);
    const input = model.inputs[0]!.shape.slice(1);
    const output = model.outputs[0]!.shape;
    const d = data ?? (spec.dataset === 'mnist' ? MNIST : undefined);
    if (d) {
      const features = input.reduce((a: number, b) => a * (b ?? 1), 1);
      const expected = d.featureShape.reduce((a, b) => a * b, 1);
      const units = output[output.length - 1] ?? 0;
      if (features !== expected)
        throw new InvalidJobSpecError([
          {
            path: 'model',
            message: `model input ${JSON.stringify(input)} has ${features} values; the dataset's examples (${d.featureShape.join('x')}) have ${expected}`,
          },
        ]);
      if (spec.labels === 'multilabel' && units !== d.numClasses)
        throw new InvalidJobSpecError([
          {
            path: 'model',
            message: `model output has ${units} units; the dataset has ${d.numClasses} targets per example: give the last layer ${d.numClasses} units (a sigmoid)`,
          },
        ]);
      if ((spec.labels === 'binary' || spec.labels === 'regression') && units !== 1)
        throw new InvalidJobSpecError([
          {
            path: 'model',
            message: `model output has ${units} units; labels '${spec.labels}' need exactly 1${spec.labels === 'binary' ? ' (a sigmoid)' : ''}`,
          },
        ]);
      if (units < d.numClasses)
        throw new InvalidJobSpecError([
          { path: 'model', message: `model output has ${units} units; the dataset has ${d.numClasses} classes` },
        ]);
      const issues = spec.labels === 'class' && spec.classWeight ? classWeightIssues(spec.classWeight, units) : [];
      spec.metrics.forEach((m, i) => {
        const { name, k } = metricParts(m);
        if (name === 'topKCategoricalAccuracy' && k >= units)
          issues.push({
            path: `metrics.${i}.k`,
            message: `k ${k} is not below the ${units} classes (every prediction would count): use a smaller k`,
          });
      });
      if (issues.length > 0) throw new InvalidJobSpecError(issues);
    }
    const stats = movingStatsCount(model);
    if (stats > 0 && spec.compression !== 'none')
      throw new InvalidJobSpecError([
        {
          path: 'compression',
          message: `'${spec.compression}' cannot carry the model's BatchNormalization statistics, which are averaged with the gradient and must arrive exact (docs/architecture.md, "Non-trainable weights"); use compression 'none' for this model`,
        },
      ]);
    const trainableParams = trainableParameterCount(model);
    return {
      layout: weightLayout(model),
      trainableParams,
      exchangeLength: trainableParams + stats,
      initialWeights: initial.dir ? await loadInitialWeights(model, initial.dir) : flattenWeights(model),
      topology: model.toJSON(null, false) as Record<string, unknown>,
      weightSpecs: model.weights.map((w) => ({
        name: w.originalName,
        shape: [...w.shape] as number[],
        dtype: 'float32' as const,
      })),
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
