import { epochPermutation, epochSeed, mulberry32 } from './prng.js';

/**
 * The shuffle scheme of a chunked dataset (docs/datasets.md): the epoch's chunks in a seeded
 * order, cut into windows of `windowChunks` chunks, and the examples of each window in a
 * seeded order. A step's batch then draws from one window (two at a boundary), so a worker
 * needs only the chunks of the window it owns (`ChunkWindows.owner`), not the whole dataset.
 */
export interface ChunkWindowOptions {
  /** Examples per chunk (the manifest's `chunkExamples`; the last chunk may hold fewer). */
  chunkExamples: number;
  /** Chunks shuffled together; a split of at most this many chunks gets the global permutation. */
  windowChunks: number;
}

/** One epoch's windowed order: the permutation, and each chunk's place in the chunk order. */
export interface ChunkWindows {
  perm: Uint32Array;
  /** `rank[c]`: the position of chunk c in the epoch's chunk order (its window is rank / windowChunks). */
  rank: Uint32Array;
  windowChunks: number;
  chunkExamples: number;
}

/**
 * The epoch's windowed permutation of 0..n-1, or undefined when the split has no more than
 * `windowChunks` chunks: it then gets `epochPermutation`, the same order as in-memory data
 * (so a small chunked dataset trains exactly as its in-memory twin). Depends on (n, seed,
 * epoch, options) only, never on the workers.
 */
export function chunkWindows(n: number, seed: number, epoch: number, o: ChunkWindowOptions): ChunkWindows | undefined {
  const E = o.chunkExamples;
  if (!(Number.isSafeInteger(E) && E >= 1)) throw new RangeError(`chunkExamples must be a positive integer, got ${E}`);
  if (!(Number.isSafeInteger(o.windowChunks) && o.windowChunks >= 1))
    throw new RangeError(`windowChunks must be a positive integer, got ${o.windowChunks}`);
  const chunks = Math.ceil(n / E);
  if (chunks <= o.windowChunks) return undefined;
  // A stream of its own (not the global permutation's), seeded by (seed, epoch).
  const rand = mulberry32(epochSeed(seed ^ 0x5bd1e995, epoch));
  const order = epochPermutation(chunks, 0, 0, false);
  for (let i = chunks - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  const rank = new Uint32Array(chunks);
  order.forEach((c, r) => (rank[c] = r));
  const perm = new Uint32Array(n);
  let out = 0;
  for (let w = 0; w < chunks; w += o.windowChunks) {
    const start = out;
    for (let r = w; r < Math.min(chunks, w + o.windowChunks); r++) {
      const c = order[r]!;
      for (let i = c * E; i < Math.min(n, (c + 1) * E); i++) perm[out++] = i;
    }
    for (let i = out - 1; i > start; i--) {
      const j = start + Math.floor(rand() * (i - start + 1));
      const t = perm[i]!;
      perm[i] = perm[j]!;
      perm[j] = t;
    }
  }
  return { perm, rank, windowChunks: o.windowChunks, chunkExamples: E };
}

/**
 * Splits a batch among workers by chunk owner: a chunk's place in its window belongs to the
 * worker whose share of the cumulative `weights` covers it, so each worker
 * owns about its share of each window's chunks and fetches only those. The slices cover
 * `indices` exactly once (in batch order within each slice); their sizes follow the
 * batch's draw (about the weights, not exactly). A zero weight owns nothing.
 */
export function splitByChunkOwner(indices: Uint32Array, weights: readonly number[], w: ChunkWindows): Uint32Array[] {
  const total = weights.reduce((a, b) => a + Math.max(0, b), 0);
  if (weights.length === 0 || total <= 0) throw new RangeError('splitByChunkOwner needs at least one positive weight');
  const cum: number[] = [];
  let sum = 0;
  for (const x of weights) cum.push((sum += Math.max(0, x)));
  const chunks = w.rank.length;
  // A chunk's place in its window (the last window may be short), mapped onto the weights.
  const ownerOf = (c: number): number => {
    const r = w.rank[c]!;
    const first = r - (r % w.windowChunks);
    const at = ((r - first + 0.5) / Math.min(w.windowChunks, chunks - first)) * total;
    let k = 0;
    while (k < cum.length - 1 && cum[k]! <= at) k++;
    return k;
  };
  const sizes = new Uint32Array(weights.length);
  const of = new Uint16Array(indices.length);
  for (let j = 0; j < indices.length; j++) {
    const m = ownerOf(Math.floor(indices[j]! / w.chunkExamples));
    of[j] = m;
    sizes[m]!++;
  }
  const out = Array.from(sizes, (s) => new Uint32Array(s));
  const fill = new Uint32Array(weights.length);
  for (let j = 0; j < indices.length; j++) out[of[j]!]![fill[of[j]!]!++] = indices[j]!;
  return out;
}
