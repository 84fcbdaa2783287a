import { chunkWindows, splitByChunkOwner, type ChunkWindowOptions, type ChunkWindows } from './chunk-windows.js';
import { epochPermutation } from './prng.js';

/** What a checkpoint needs to continue an epoch exactly where it stopped. */
export interface SamplerState {
  epoch: number;
  /** Position in the epoch's permutation: everything before it was handed out. */
  cursor: number;
  /** Indices handed out whose gradients never arrived; served before the cursor moves. */
  retry: number[];
  /**
   * The epoch's examples really trained so far: a bitmap (bit `i % 8` of byte `i / 8` is
   * index i), base64. The audit after a resume counts from it rather than from the cursor,
   * so a resume that skips or repeats examples fails the audit. Absent in checkpoints
   * written before it existed: those resume with everything before the cursor counted once.
   */
  used?: string;
  /** Indices trained more than once so far (normally empty), kept for the audit. */
  repeated?: number[];
}

export interface SamplerOptions {
  /** Number of examples in the training set. */
  size: number;
  /** Job seed; the permutation of epoch e depends only on (seed, e). */
  seed: number;
  /** @defaultValue true */
  shuffle?: boolean;
  /**
   * A chunked dataset's layout: with `shuffle`, epochs of more than `windowChunks` chunks
   * are drawn in windows of chunks (`chunk-windows.ts`) and batches split by chunk owner.
   * Absent: one global permutation, batches split in contiguous slices.
   */
  chunks?: ChunkWindowOptions | undefined;
}

/** Result of the exactly-once audit for one epoch. */
export interface EpochAudit {
  epoch: number;
  /** Every index used exactly once. */
  ok: boolean;
  /** Indices used at least once. */
  seen: number;
  /** Indices never used. */
  missing: number;
  /** Indices used more than once. */
  duplicated: number;
}

/**
 * Elastic epoch sampler (design in docs/architecture.md). The coordinator holds one
 * seeded permutation per epoch and a cursor into it; each step takes the next global
 * batch and splits it among whichever workers are there. A slice whose gradient never
 * arrives is given back and served first at the next step. Membership changes only how
 * the next batch is split: nothing restarts, nothing is dropped or repeated.
 */
export class EpochSampler {
  readonly size: number;
  readonly seed: number;
  readonly shuffle: boolean;
  private epochNo = -1;
  private perm: Uint32Array = new Uint32Array(0);
  private cursor = 0;
  private retry: number[] = [];
  private inFlight = 0;
  private counts: Uint8Array;
  private readonly chunkOptions: ChunkWindowOptions | undefined;
  /** This epoch's windows (chunked datasets larger than a window, shuffled). */
  private windows: ChunkWindows | undefined;

  constructor(options: SamplerOptions) {
    if (!Number.isSafeInteger(options.size) || options.size < 1)
      throw new RangeError(`dataset size must be a positive integer, got ${options.size}`);
    this.size = options.size;
    this.seed = options.seed;
    this.shuffle = options.shuffle ?? true;
    this.chunkOptions = options.chunks;
    this.counts = new Uint8Array(this.size);
  }

  /** The epoch draws from windows of chunks, and `split` hands each worker its chunks' examples. */
  get windowed(): boolean {
    return this.windows !== undefined;
  }

  get epoch(): number {
    return this.epochNo;
  }

  /** Starts epoch `epoch`, optionally from a checkpointed state (resume mid-epoch). */
  beginEpoch(epoch: number, resume?: SamplerState): void {
    this.epochNo = epoch;
    this.windows =
      this.shuffle && this.chunkOptions ? chunkWindows(this.size, this.seed, epoch, this.chunkOptions) : undefined;
    this.perm = this.windows?.perm ?? epochPermutation(this.size, this.seed, epoch, this.shuffle);
    this.cursor = resume?.cursor ?? 0;
    this.retry = [...(resume?.retry ?? [])];
    this.inFlight = 0;
    this.counts.fill(0);
    if (resume?.used !== undefined) this.restoreCounts(resume.used, resume.repeated ?? []);
    else if (resume) {
      // Older checkpoints: indices before the cursor (and not in the retry queue) count as used once.
      for (let i = 0; i < this.cursor; i++) this.counts[this.perm[i]!] = 1;
      for (const idx of this.retry) this.counts[idx] = 0;
    }
  }

  private restoreCounts(used: string, repeated: readonly number[]): void {
    const bytes = Math.ceil(this.size / 8);
    // base64 of `bytes` bytes is 4 * ceil(bytes / 3) characters: checked before decoding.
    if (used.length !== 4 * Math.ceil(bytes / 3))
      throw new RangeError(
        `checkpointed sampler bitmap does not fit a training set of ${this.size} examples; resume with the same dataset and validationSplit`,
      );
    const bitmap = Buffer.from(used, 'base64');
    for (let i = 0; i < this.size; i++) this.counts[i] = (bitmap[i >> 3]! >> (i & 7)) & 1;
    for (const idx of repeated) {
      if (!Number.isSafeInteger(idx) || idx < 0 || idx >= this.size)
        throw new RangeError(`checkpointed sampler index ${idx} is outside the training set of ${this.size}`);
      this.counts[idx] = 2;
    }
  }

  /** Hands out up to `max` indices: the retry queue first, then the permutation. */
  take(max: number): Uint32Array {
    const n = Math.min(max, this.retry.length + (this.size - this.cursor));
    const out = new Uint32Array(n);
    let k = 0;
    while (k < n && this.retry.length > 0) out[k++] = this.retry.shift()!;
    if (k < n) {
      out.set(this.perm.subarray(this.cursor, this.cursor + (n - k)), k);
      this.cursor += n - k;
    }
    this.inFlight += n;
    return out;
  }

  /**
   * The indices the next `take(max)` would hand out, without handing them out (what the
   * coordinator tells workers to prefetch). A copy.
   */
  peek(max: number): Uint32Array {
    const fromRetry = Math.min(max, this.retry.length);
    const n = Math.min(max, this.retry.length + (this.size - this.cursor));
    const out = new Uint32Array(n);
    for (let k = 0; k < fromRetry; k++) out[k] = this.retry[k]!;
    out.set(this.perm.subarray(this.cursor, this.cursor + (n - fromRetry)), fromRetry);
    return out;
  }

  /**
   * Splits a batch among workers in proportion to `weights`: by chunk owner when the epoch
   * is windowed (each worker fetches only its chunks), else in contiguous slices
   * (`splitBatch`). Either way the slices cover the batch exactly once.
   */
  split(batch: Uint32Array, weights: readonly number[]): Uint32Array[] {
    return this.windows ? splitByChunkOwner(batch, weights, this.windows) : splitBatch(batch, weights);
  }

  /** A slice whose gradient arrived and was applied: count it for the audit. */
  complete(indices: ArrayLike<number>): void {
    for (let i = 0; i < indices.length; i++) {
      const idx = indices[i]!;
      if (this.counts[idx]! < 255) this.counts[idx]!++;
    }
    this.inFlight -= indices.length;
  }

  /** A slice whose gradient will never arrive: serve it again first. */
  giveBack(indices: ArrayLike<number>): void {
    this.retry.unshift(...Array.from(indices));
    this.inFlight -= indices.length;
  }

  /** Nothing left to hand out in this epoch (some slices may still be in flight). */
  get exhausted(): boolean {
    return this.cursor >= this.size && this.retry.length === 0;
  }

  /** Every index handed out and completed. */
  get epochComplete(): boolean {
    return this.exhausted && this.inFlight === 0;
  }

  /** Examples completed so far in this epoch. */
  get completed(): number {
    return this.cursor - this.retry.length - this.inFlight;
  }

  /** The position and the examples trained so far (call at a step boundary, nothing in flight). */
  state(): SamplerState {
    const bitmap = Buffer.alloc(Math.ceil(this.size / 8));
    const repeated: number[] = [];
    for (let i = 0; i < this.size; i++) {
      const c = this.counts[i]!;
      if (c > 0) bitmap[i >> 3]! |= 1 << (i & 7);
      if (c > 1) repeated.push(i);
    }
    return {
      epoch: this.epochNo,
      cursor: this.cursor,
      retry: [...this.retry],
      used: bitmap.toString('base64'),
      repeated,
    };
  }

  /** Exactly-once audit of the current epoch (call when `epochComplete`). */
  audit(): EpochAudit {
    let seen = 0;
    let missing = 0;
    let duplicated = 0;
    for (let i = 0; i < this.size; i++) {
      const c = this.counts[i]!;
      if (c === 0) missing++;
      else seen++;
      if (c > 1) duplicated++;
    }
    return { epoch: this.epochNo, ok: missing === 0 && duplicated === 0, seen, missing, duplicated };
  }
}

/**
 * Splits a global batch among workers in proportion to `weights` (largest remainder),
 * as contiguous views. Sizes differ by at most one for equal weights; zero weight gets
 * nothing. The slices cover `indices` exactly once.
 */
export function splitBatch(indices: Uint32Array, weights: readonly number[]): Uint32Array[] {
  const total = weights.reduce((a, b) => a + Math.max(0, b), 0);
  if (weights.length === 0 || total <= 0) throw new RangeError('splitBatch needs at least one positive weight');
  const n = indices.length;
  const exact = weights.map((w) => (Math.max(0, w) / total) * n);
  const sizes = exact.map(Math.floor);
  let left = n - sizes.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left === 0) break;
    if (weights[i]! > 0) {
      sizes[i]!++;
      left--;
    }
  }
  const out: Uint32Array[] = [];
  let off = 0;
  for (const size of sizes) {
    out.push(indices.subarray(off, off + size));
    off += size;
  }
  return out;
}
