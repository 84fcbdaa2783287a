import type * as tfl from '@tensorflow/tfjs-layers';
import { InvalidJobSpecError } from '../job/job-spec.js';

/** How many layer names an error lists before it says "…". */
const LISTED = 20;

/**
 * Freezes every layer of `model` that `trainableLayers` does not name (`layer.trainable =
 * false`, as before `model.fit`): its weights leave `model.trainableWeights`, so no gradient
 * is computed, sent or applied for them and they keep their values. The gradient layout
 * shrinks to the trainable weights; `model.weights` lists them first, then the frozen ones.
 * Unknown names are refused on `trainableLayers.<i>`; so is a list that leaves nothing to train.
 */
export function applyTrainableLayers(model: tfl.LayersModel, trainableLayers: readonly string[]): void {
  const names = new Set(model.layers.map((l) => l.name));
  const listed = () => {
    const all = model.layers.map((l) => l.name);
    return all.length > LISTED ? `${all.slice(0, LISTED).join(', ')}, …` : all.join(', ');
  };
  const issues = trainableLayers.flatMap((name, i) =>
    names.has(name)
      ? []
      : [{ path: `trainableLayers.${i}`, message: `the job's model has no layer '${name}'; its layers: ${listed()}` }],
  );
  if (issues.length > 0) throw new InvalidJobSpecError(issues);
  const keep = new Set(trainableLayers);
  for (const layer of model.layers) if (!keep.has(layer.name)) layer.trainable = false;
  if (model.trainableWeights.length === 0)
    throw new InvalidJobSpecError([
      {
        path: 'trainableLayers',
        message: `none of these layers has trainable weights; name at least one of: ${model.layers
          .filter((l) => l.trainableWeights.length > 0 || l.nonTrainableWeights.length > 0)
          .map((l) => l.name)
          .join(', ')}`,
      },
    ]);
}
