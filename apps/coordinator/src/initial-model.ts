import { copyFile, link, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidJobSpecError, type InitialModel, type JobState } from '@gradfleet/core';
import { MAX_MODEL_JSON_BYTES, parseWeightsManifest, type ArtifactWeight } from './initial-weights.js';

/** What staging needs of the coordinator. */
export interface InitialModelContext {
  /** Where `POST /v1/datasets` stores uploads (`<dataDir>/uploads`). */
  uploadsDir: string;
  /** `--max-model-params`: the artifact's declared values are checked against it before its weights are read. */
  maxParams: number;
  /** A job the submitting token may see (undefined: unknown, or another token's under the per-user rules). */
  visibleJob: (id: string) => { state: JobState; dir: string } | undefined;
}

const refuse = (path: string, message: string): InvalidJobSpecError => new InvalidJobSpecError([{ path, message }]);

/** The `upload:<id>` file (the spec's pattern already keeps ids to one safe path component). */
async function uploadFile(dir: string, source: string, field: string): Promise<string> {
  const path = join(dir, source.slice('upload:'.length));
  if (!(await stat(path).catch(() => undefined)))
    throw refuse(field, `no upload ${source} (uploads expire; upload the file again with POST /v1/datasets)`);
  return path;
}

/** Hard-links `from` to `to` (both immutable once written), or copies it across file systems. */
async function place(from: string, to: string): Promise<void> {
  await link(from, to).catch(() => copyFile(from, to));
}

/**
 * Checks a job's `initialModel` at submission and places its artifact in `into`
 * (`model.json` + `weights.bin`), so the job starts from it even after the source job is
 * deleted or the upload expires. Before any weight is read: `model.json` is at most
 * `MAX_MODEL_JSON_BYTES`, its float32 weights are counted against `maxParams`, and the
 * weights file must have exactly the bytes the manifest declares. Answers the declared
 * weights, for the model thread to match against the job's model.
 */
export async function stageInitialModel(
  initial: InitialModel,
  into: string,
  ctx: InitialModelContext,
): Promise<ArtifactWeight[]> {
  let modelJson: string;
  let weights: string;
  let jsonField: string;
  let weightsField: string;
  if ('job' in initial) {
    const source = ctx.visibleJob(initial.job);
    jsonField = weightsField = 'initialModel.job';
    if (!source) throw refuse(jsonField, `no job ${initial.job} (of this API token): name a job you submitted`);
    if (source.state !== 'SUCCEEDED')
      throw refuse(
        jsonField,
        `job ${initial.job} is ${source.state}; its weights can start another job once it SUCCEEDED`,
      );
    modelJson = join(source.dir, 'model', 'model.json');
    weights = join(source.dir, 'model', 'weights.bin');
  } else {
    jsonField = 'initialModel.modelJson';
    weightsField = 'initialModel.weights';
    modelJson = await uploadFile(ctx.uploadsDir, initial.modelJson, jsonField);
    weights = await uploadFile(ctx.uploadsDir, initial.weights, weightsField);
  }
  const jsonBytes = (await stat(modelJson).catch(() => undefined))?.size;
  if (jsonBytes === undefined) throw refuse(jsonField, 'the model of this job is gone; name another job');
  if (jsonBytes > MAX_MODEL_JSON_BYTES)
    throw refuse(jsonField, `model.json has ${jsonBytes} bytes; at most ${MAX_MODEL_JSON_BYTES} are accepted`);
  const manifest = parseWeightsManifest(await readFile(modelJson, 'utf8'), jsonField);
  if (manifest.values > ctx.maxParams)
    throw refuse(
      jsonField,
      `LIMIT_EXCEEDED: the initial model declares ${manifest.values} weight values; this coordinator accepts at most ${ctx.maxParams} (--max-model-params)`,
    );
  const size = (await stat(weights).catch(() => undefined))?.size;
  if (size !== manifest.values * 4)
    throw refuse(
      weightsField,
      `the weights file has ${size ?? 0} bytes; model.json declares ${manifest.values} float32 values (${manifest.values * 4} bytes): upload the weights.bin saved with this model.json`,
    );
  await mkdir(into, { recursive: true });
  await place(modelJson, join(into, 'model.json'));
  await place(weights, join(into, 'weights.bin'));
  return manifest.weights;
}
