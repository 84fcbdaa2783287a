import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/**
 * Saves `model` to `dir` as TensorFlow.js's file handler does (`model.save('file://dir')` in
 * tfjs-node, which cannot be installed here): `model.json` naming one `weights.bin`, written
 * from the artifacts `model.save` hands its handler.
 */
export async function saveToDir(model: tfl.LayersModel, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = artifacts.weightData as ArrayBuffer;
      writeFileSync(
        join(dir, 'model.json'),
        JSON.stringify({
          format: artifacts.format,
          generatedBy: artifacts.generatedBy,
          convertedBy: artifacts.convertedBy,
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: ['./weights.bin'], weights: artifacts.weightSpecs }],
        }),
      );
      writeFileSync(join(dir, 'weights.bin'), new Uint8Array(weights));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}

/** An artifact's weights by name (`layer/weight`), from its `model.json` and weights bytes. */
export function weightsByName(modelJson: Record<string, unknown>, weights: ArrayBuffer): Map<string, Float32Array> {
  const manifest = modelJson['weightsManifest'] as { weights: { name: string; shape: number[] }[] }[];
  const all = new Float32Array(weights);
  const out = new Map<string, Float32Array>();
  let off = 0;
  for (const w of manifest.flatMap((g) => g.weights)) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    out.set(w.name, all.slice(off, off + n));
    off += n;
  }
  return out;
}

/** A model's weights by name (`originalName`). */
export function modelWeightsByName(model: tfl.LayersModel): Map<string, Float32Array> {
  return new Map(model.weights.map((w) => [w.originalName, (w.read().dataSync() as Float32Array).slice()]));
}
