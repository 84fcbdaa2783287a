import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SamplerState } from '@gradfleet/core';
import { FileStateSource, StateFileSink, type StateFiles } from './state-files.js';

export interface TensorSpec {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
}

/** Everything needed to continue a job exactly where it stopped, but the state itself. */
export interface CheckpointMeta {
  /** Steps completed when it was taken. */
  step: number;
  epoch: number;
  sampler: SamplerState;
  /** The job runner's own counters (epoch totals, history...), opaque here. */
  runner: Record<string, unknown>;
  /** The optimizer's state tensors (`optimizer.getWeights()` order), values as float32 after the weights. */
  optimizerSpecs: TensorSpec[];
}

/** A checkpoint held in memory (small models, tests). */
export interface Checkpoint extends CheckpointMeta {
  weights: Float32Array;
  /** The optimizer's state (`optimizer.getWeights()` order), values as float32. */
  optimizer: Float32Array;
}

/** A verified checkpoint on disk: its state is read from `weights.bin` then `optimizer.bin` when sent. */
export interface StoredCheckpoint extends CheckpointMeta {
  dir: string;
  weightsBytes: number;
  optimizerBytes: number;
}

/**
 * A kept checkpoint as `GET /v1/jobs/:id/checkpoints` lists it: its `state.json` and the sizes
 * of its files checked (not hashed: a listing reads no weights; `latest()` hashes before a resume).
 */
export interface ListedCheckpoint extends Omit<CheckpointMeta, 'optimizerSpecs'> {
  dir: string;
  createdAt: string;
  weightsBytes: number;
  weightsSha256: string;
  optimizerBytes: number;
}

interface StateFile extends CheckpointMeta {
  version: 1;
  createdAt: string;
  weightsBytes: number;
  weightsSha256: string;
  optimizerBytes: number;
  optimizerSha256: string;
}

const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const STEP_DIR = /^step-(\d{12})$/;
const stepName = (step: number) => `step-${String(step).padStart(12, '0')}`;

async function writeDurably(path: string, data: Uint8Array | string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** SHA-256 and size of a file, read in a stream (a checkpoint may be larger than memory allows twice). */
async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let n = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    n += chunk.byteLength;
  }
  return { sha256: hash.digest('hex'), bytes: n };
}

let attempts = 0;

/**
 * A job's checkpoints on disk: `checkpoints/step-<n>/` holds `model.json` + `weights.bin`
 * (a TensorFlow.js artifact), `optimizer.bin` and `state.json` (sampler position, counters,
 * sizes and SHA-256 of both binaries). A replica's state is streamed into a temporary
 * directory as its chunks arrive (`sink`), fsynced, completed with `state.json`, then
 * renamed into place (`commit`): a crash at any point (or a worker lost mid-transfer) leaves
 * either the previous set or the complete new one, and loading verifies sizes and hashes
 * before trusting a file. The last `keep` are kept. The final model goes to `model/` the same way.
 */
export class CheckpointStore {
  private readonly dir: string;

  constructor(
    jobDir: string,
    private readonly keep = 3,
  ) {
    this.dir = join(jobDir, 'checkpoints');
  }

  /**
   * Files to receive the state of the checkpoint at `step` into: a fresh temporary
   * directory per attempt (a transfer cut short is aborted, the next one starts clean).
   */
  sink(step: number, weightsBytes: number, totalBytes: number): StateFileSink {
    const dir = join(this.dir, `.${stepName(step)}.tmp-${process.pid}-${++attempts}`);
    return new StateFileSink(dir, [
      { name: 'weights.bin', bytes: weightsBytes },
      { name: 'optimizer.bin', bytes: totalBytes - weightsBytes },
    ]);
  }

  /** Completes a state received by `sink` into checkpoint `meta.step`: state.json, fsync, rename into place. */
  async commit(files: StateFiles, meta: CheckpointMeta, modelJson: Record<string, unknown>): Promise<string> {
    const [w, o] = files.parts;
    if (!w || !o) throw new Error('checkpoint state must have weights and optimizer files');
    const state: StateFile = {
      step: meta.step,
      epoch: meta.epoch,
      sampler: meta.sampler,
      runner: meta.runner,
      optimizerSpecs: meta.optimizerSpecs,
      version: 1,
      createdAt: new Date().toISOString(),
      weightsBytes: w.bytes,
      weightsSha256: w.sha256,
      optimizerBytes: o.bytes,
      optimizerSha256: o.sha256,
    };
    await writeDurably(join(files.dir, 'model.json'), JSON.stringify(modelJson));
    await writeDurably(join(files.dir, 'state.json'), JSON.stringify(state));
    await syncDir(files.dir);
    const final = join(this.dir, stepName(meta.step));
    await rm(final, { recursive: true, force: true });
    await rename(files.dir, final);
    await syncDir(this.dir);
    await this.prune();
    return final;
  }

  /** Writes a checkpoint held in memory (same files, same atomicity as a streamed one). */
  async write(ckpt: Checkpoint, modelJson: Record<string, unknown>): Promise<string> {
    const w = bytes(ckpt.weights);
    const o = bytes(ckpt.optimizer);
    const sink = this.sink(ckpt.step, w.byteLength, w.byteLength + o.byteLength);
    try {
      await sink.write(0, w);
      await sink.write(w.byteLength, o);
      return await this.commit(await sink.finish(), ckpt, modelJson);
    } catch (err) {
      await sink.abort();
      throw err;
    }
  }

  private async stepDirs(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names
      .filter((n) => STEP_DIR.test(n))
      .sort()
      .reverse();
  }

  private async prune(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const n of names)
      if (n.startsWith('.') && !n.includes(`.tmp-${process.pid}-`))
        await rm(join(this.dir, n), { recursive: true, force: true });
    for (const n of (await this.stepDirs()).slice(this.keep))
      await rm(join(this.dir, n), { recursive: true, force: true });
  }

  /** The newest checkpoint that verifies (sizes and SHA-256, read in a stream); damaged ones are skipped. */
  async latest(): Promise<StoredCheckpoint | undefined> {
    for (const name of await this.stepDirs()) {
      const ckpt = await this.verify(join(this.dir, name));
      if (ckpt) return ckpt;
    }
    return undefined;
  }

  /** The kept checkpoints, oldest first; one whose files are missing or of the wrong size is left out. */
  async list(): Promise<ListedCheckpoint[]> {
    const found = await Promise.all((await this.stepDirs()).map((name) => this.listed(join(this.dir, name))));
    return found.filter((c) => c !== undefined).reverse();
  }

  /** The kept checkpoint at `step` (as `list()` has it), or undefined. */
  async find(step: number): Promise<ListedCheckpoint | undefined> {
    if (!Number.isSafeInteger(step) || step < 0) return undefined;
    const found = await this.listed(join(this.dir, stepName(step)));
    return found?.step === step ? found : undefined;
  }

  private async listed(dir: string): Promise<ListedCheckpoint | undefined> {
    try {
      const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as StateFile;
      if (state.version !== 1) return undefined;
      const size = async (name: string) => (await stat(join(dir, name))).size;
      if ((await size('weights.bin')) !== state.weightsBytes) return undefined;
      if ((await size('optimizer.bin')) !== state.optimizerBytes) return undefined;
      await size('model.json');
      return {
        dir,
        step: state.step,
        epoch: state.epoch,
        sampler: state.sampler,
        runner: state.runner,
        createdAt: state.createdAt,
        weightsBytes: state.weightsBytes,
        weightsSha256: state.weightsSha256,
        optimizerBytes: state.optimizerBytes,
      };
    } catch {
      return undefined;
    }
  }

  private async verify(dir: string): Promise<StoredCheckpoint | undefined> {
    try {
      const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as StateFile;
      if (state.version !== 1) return undefined;
      const w = await hashFile(join(dir, 'weights.bin'));
      if (w.bytes !== state.weightsBytes || w.sha256 !== state.weightsSha256) return undefined;
      const o = await hashFile(join(dir, 'optimizer.bin'));
      if (o.bytes !== state.optimizerBytes || o.sha256 !== state.optimizerSha256) return undefined;
      JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
      return {
        step: state.step,
        epoch: state.epoch,
        sampler: state.sampler,
        runner: state.runner,
        optimizerSpecs: state.optimizerSpecs,
        dir,
        weightsBytes: state.weightsBytes,
        optimizerBytes: state.optimizerBytes,
      };
    } catch {
      return undefined;
    }
  }
}

/** The state of a stored checkpoint, read chunk by chunk: weights, then optimizer state. */
export function checkpointSource(ckpt: StoredCheckpoint): FileStateSource {
  return new FileStateSource([
    { path: join(ckpt.dir, 'weights.bin'), bytes: ckpt.weightsBytes },
    { path: join(ckpt.dir, 'optimizer.bin'), bytes: ckpt.optimizerBytes },
  ]);
}

/** Reads a stored checkpoint's state into memory (tests, small models). */
export async function readCheckpoint(ckpt: StoredCheckpoint): Promise<Checkpoint> {
  const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const { dir, weightsBytes: _w, optimizerBytes: _o, ...meta } = ckpt;
  return {
    ...meta,
    weights: f32(await readFile(join(dir, 'weights.bin'))),
    optimizer: f32(await readFile(join(dir, 'optimizer.bin'))),
  };
}

/** Files to receive a job's final weights into, next to the model directory `dir`. */
export function modelArtifactSink(dir: string, weightsBytes: number): StateFileSink {
  return new StateFileSink(`${dir}.tmp-${process.pid}-${++attempts}`, [{ name: 'weights.bin', bytes: weightsBytes }]);
}

/** Completes weights received by `modelArtifactSink` into the artifact `dir` (`model.json` + `weights.bin`), atomically. */
export async function commitModelArtifact(
  files: StateFiles,
  dir: string,
  modelJson: Record<string, unknown>,
): Promise<void> {
  await writeDurably(join(files.dir, 'model.json'), JSON.stringify(modelJson));
  await syncDir(files.dir);
  await rm(dir, { recursive: true, force: true });
  await rename(files.dir, dir);
}

/** Reads the `model.json` of an artifact written by `commitModelArtifact` (its `weights.bin` is served as a file), or undefined. */
export async function readModelArtifact(dir: string): Promise<{ modelJson: Record<string, unknown> } | undefined> {
  try {
    return { modelJson: JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Record<string, unknown> };
  } catch {
    return undefined;
  }
}
