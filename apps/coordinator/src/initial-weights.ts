import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidJobSpecError, type buildModel } from '@gradfleet/core';

type LayersModel = Awaited<ReturnType<typeof buildModel>>;

/** One weight an artifact's `weightsManifest` declares (validated: a name, integer dimensions, float32). */
export interface ArtifactWeight {
  name: string;
  shape: number[];
}

/** Largest `model.json` of an initial model, in bytes: a topology (at most 4 MiB in a job spec) and its manifest. */
export const MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024;

/** Most weights a manifest may list. */
const MAX_WEIGHTS = 100_000;

const refuse = (path: string, message: string): InvalidJobSpecError => new InvalidJobSpecError([{ path, message }]);

const values = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Reads the weights a TensorFlow.js `model.json` (layers-model format) declares, in file
 * order (the groups of `weightsManifest` one after another, as TensorFlow.js concatenates
 * their files). float32 only: any other dtype or a quantized weight is refused. Errors are
 * on `field` and never quote the file (its names, values or JSON), only positions and counts.
 */
export function parseWeightsManifest(text: string, field: string): { weights: ArtifactWeight[]; values: number } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw refuse(field, 'not a JSON model.json: give the model.json that TensorFlow.js model.save() writes');
  }
  const manifest = (json as { weightsManifest?: unknown } | null)?.weightsManifest;
  if (!Array.isArray(manifest))
    throw refuse(field, 'model.json has no weightsManifest list: give the model.json that model.save() writes');
  const weights: ArtifactWeight[] = [];
  const names = new Set<string>();
  let total = 0;
  for (const [g, group] of manifest.entries()) {
    const list = (group as { weights?: unknown } | null)?.weights;
    if (!Array.isArray(list)) throw refuse(field, `weightsManifest group ${g} has no weights list`);
    for (const entry of list as unknown[]) {
      const i = weights.length;
      const e = (entry ?? {}) as { name?: unknown; shape?: unknown; dtype?: unknown; quantization?: unknown };
      if (weights.length >= MAX_WEIGHTS) throw refuse(field, `weightsManifest lists more than ${MAX_WEIGHTS} weights`);
      if (typeof e.name !== 'string' || e.name.length === 0 || e.name.length > 1024)
        throw refuse(field, `weight ${i} of the manifest has no name (a string of 1-1024 characters)`);
      if (
        !Array.isArray(e.shape) ||
        e.shape.length > 8 ||
        !e.shape.every((d): d is number => Number.isInteger(d) && (d as number) >= 0 && (d as number) <= 2 ** 31)
      )
        throw refuse(field, `weight ${i} of the manifest has no valid shape (at most 8 non-negative integers)`);
      if (e.dtype !== 'float32' || e.quantization !== undefined)
        throw refuse(
          field,
          `weight ${i} of the manifest is not plain float32; only float32 weights are accepted (save the model without quantization, with float32 weights)`,
        );
      if (names.has(e.name)) throw refuse(field, `weight ${i} of the manifest repeats the name of an earlier weight`);
      names.add(e.name);
      total += values(e.shape);
      weights.push({ name: e.name, shape: [...e.shape] });
    }
  }
  return { weights, values: total };
}

/**
 * Where each of the model's weights (`model.weights` order) starts in the artifact's values,
 * matched by name (`layer/weight`, as `tf.loadLayersModel` matches them): the topology of
 * the initial model must be the job's, same layer names and weight shapes. The first
 * mismatch is refused on `initialModel`, named by the job's model (the artifact is not quoted).
 */
export function matchInitialWeights(model: LayersModel, artifact: readonly ArtifactWeight[]): number[] {
  const at = new Map<string, { offset: number; shape: number[] }>();
  let offset = 0;
  for (const w of artifact) {
    at.set(w.name, { offset, shape: w.shape });
    offset += values(w.shape);
  }
  const hint = 'the initial model must have the topology of the job model: the same layer names and weight shapes';
  const offsets = model.weights.map((w) => {
    const shape = [...w.shape] as number[];
    const found = at.get(w.originalName);
    if (!found)
      throw refuse(
        'initialModel',
        `the initial model has no weight ${w.originalName} (shape [${shape.join(',')}]) of the job's model; ${hint}`,
      );
    if (found.shape.length !== shape.length || found.shape.some((d, k) => d !== shape[k]))
      throw refuse(
        'initialModel',
        `weight ${w.originalName} has shape [${found.shape.join(',')}] in the initial model, [${shape.join(',')}] in the job's model; ${hint}`,
      );
    return found.offset;
  });
  if (artifact.length !== model.weights.length)
    throw refuse(
      'initialModel',
      `the initial model has ${artifact.length - model.weights.length} weights the job's model does not have; ${hint}`,
    );
  return offsets;
}

/**
 * The job's initial weights (`model.weights` order, flattened) from a staged artifact
 * (`<dir>/model.json` + `<dir>/weights.bin`, checked at submission): matched by name, read
 * little-endian float32 as TensorFlow.js writes them.
 */
export async function loadInitialWeights(model: LayersModel, dir: string): Promise<Float32Array> {
  const { weights, values: count } = parseWeightsManifest(
    await readFile(join(dir, 'model.json'), 'utf8'),
    'initialModel',
  );
  const offsets = matchInitialWeights(model, weights);
  const bytes = await readFile(join(dir, 'weights.bin'));
  if (bytes.byteLength !== count * 4)
    throw refuse('initialModel', `weights.bin has ${bytes.byteLength} bytes; its manifest declares ${count * 4}`);
  const source = new Float32Array(count);
  new Uint8Array(source.buffer).set(bytes);
  const out = new Float32Array(model.weights.reduce((n, w) => n + values(w.shape as number[]), 0));
  let pos = 0;
  model.weights.forEach((w, i) => {
    const n = values(w.shape as number[]);
    out.set(source.subarray(offsets[i]!, offsets[i]! + n), pos);
    pos += n;
  });
  return out;
}
