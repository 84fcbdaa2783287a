import { createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SamplerState } from '@gradfleet/core';

export interface TensorSpec {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
}

/** Everything needed to continue a job exactly where it stopped. */
export interface Checkpoint {
  /** Steps completed when it was taken. */
  step: number;
  epoch: number;
  sampler: SamplerState;
  /** The job runner's own counters (epoch totals, history...), opaque here. */
  runner: Record<string, unknown>;
  weights: Float32Array;
  /** The optimizer's state (`optimizer.getWeights()` order), values as float32. */
  optimizer: Float32Array;
  optimizerSpecs: TensorSpec[];
}

interface StateFile extends Omit<Checkpoint, 'weights' | 'optimizer'> {
  version: 1;
  createdAt: string;
  weightsBytes: number;
  weightsSha256: string;
  optimizerBytes: number;
  optimizerSha256: string;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const STEP_DIR = /^step-(\d{12})$/;

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

/**
 * A job's checkpoints on disk: `checkpoints/step-<n>/` holds `model.json` + `weights.bin`
 * (a TensorFlow.js artifact), `optimizer.bin` and `state.json` (sampler position, counters,
 * sizes and SHA-256 of both binaries). A checkpoint is written in a temporary directory,
 * fsynced, then renamed into place: a crash at any point leaves either the previous set
 * or the complete new one, and loading verifies sizes and hashes before trusting a file.
 * The last `keep` are kept. The final model goes to `model/` the same way.
 */
export class CheckpointStore {
  private readonly dir: string;

  constructor(
    jobDir: string,
    private readonly keep = 3,
  ) {
    this.dir = join(jobDir, 'checkpoints');
  }

  async write(ckpt: Checkpoint, modelJson: Record<string, unknown>): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const name = `step-${String(ckpt.step).padStart(12, '0')}`;
    const tmp = join(this.dir, `.${name}.tmp-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    const w = bytes(ckpt.weights);
    const o = bytes(ckpt.optimizer);
    const { weights: _w, optimizer: _o, ...rest } = ckpt;
    const state: StateFile = {
      ...rest,
      version: 1,
      createdAt: new Date().toISOString(),
      weightsBytes: w.byteLength,
      weightsSha256: sha256(w),
      optimizerBytes: o.byteLength,
      optimizerSha256: sha256(o),
    };
    await writeDurably(join(tmp, 'weights.bin'), w);
    await writeDurably(join(tmp, 'optimizer.bin'), o);
    await writeDurably(join(tmp, 'model.json'), JSON.stringify(modelJson));
    await writeDurably(join(tmp, 'state.json'), JSON.stringify(state));
    await syncDir(tmp);
    const final = join(this.dir, name);
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
    await syncDir(this.dir);
    await this.prune();
    return final;
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
      if (n.startsWith('.') && !n.endsWith(`-${process.pid}`))
        await rm(join(this.dir, n), { recursive: true, force: true });
    for (const n of (await this.stepDirs()).slice(this.keep))
      await rm(join(this.dir, n), { recursive: true, force: true });
  }

  /** The newest checkpoint that verifies; damaged ones are skipped. */
  async latest(): Promise<Checkpoint | undefined> {
    for (const name of await this.stepDirs()) {
      const ckpt = await this.load(join(this.dir, name));
      if (ckpt) return ckpt;
    }
    return undefined;
  }

  private async load(dir: string): Promise<Checkpoint | undefined> {
    try {
      const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as StateFile;
      const w = await readFile(join(dir, 'weights.bin'));
      const o = await readFile(join(dir, 'optimizer.bin'));
      if (state.version !== 1 || w.byteLength !== state.weightsBytes || o.byteLength !== state.optimizerBytes)
        return undefined;
      if (sha256(w) !== state.weightsSha256 || sha256(o) !== state.optimizerSha256) return undefined;
      JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
      const {
        version: _v,
        createdAt: _c,
        weightsBytes: _wb,
        weightsSha256: _ws,
        optimizerBytes: _ob,
        optimizerSha256: _os,
        ...rest
      } = state;
      return {
        ...rest,
        weights: new Float32Array(w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength)),
        optimizer: new Float32Array(o.buffer.slice(o.byteOffset, o.byteOffset + o.byteLength)),
      };
    } catch {
      return undefined;
    }
  }
}

/** Writes `model.json` + `weights.bin` into `dir` atomically (temp dir + rename). */
export async function writeModelArtifact(
  dir: string,
  modelJson: Record<string, unknown>,
  weights: Float32Array,
): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeDurably(join(tmp, 'weights.bin'), bytes(weights));
  await writeDurably(join(tmp, 'model.json'), JSON.stringify(modelJson));
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
}

/** Reads an artifact written by `writeModelArtifact`, or undefined. */
export async function readModelArtifact(
  dir: string,
): Promise<{ modelJson: Record<string, unknown>; weights: Buffer } | undefined> {
  try {
    return {
      modelJson: JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>,
      weights: await readFile(join(dir, 'weights.bin')),
    };
  } catch {
    return undefined;
  }
}
