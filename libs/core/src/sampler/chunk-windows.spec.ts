import { describe, expect, it } from 'vitest';
import { chunkWindows, splitByChunkOwner } from './chunk-windows.js';
import { EpochSampler, splitBatch } from './epoch-sampler.js';
import { epochPermutation } from './prng.js';

const sorted = (a: ArrayLike<number>) => Array.from(a).sort((x, y) => x - y);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('chunkWindows: the windowed shuffle of a chunked dataset', () => {
  it('is a permutation, the same for the same (seed, epoch), another for another epoch', () => {
    const o = { chunkExamples: 100, windowChunks: 4 };
    const a = chunkWindows(2_050, 7, 3, o)!;
    expect(sorted(a.perm)).toEqual(range(2_050));
    expect(chunkWindows(2_050, 7, 3, o)!.perm).toEqual(a.perm);
    expect(chunkWindows(2_050, 7, 4, o)!.perm).not.toEqual(a.perm);
    expect(sorted(a.rank)).toEqual(range(21));
  });

  it('draws each window from its own chunks: every stretch of window examples touches at most windowChunks chunks', () => {
    const o = { chunkExamples: 100, windowChunks: 4 };
    const w = chunkWindows(2_050, 1, 0, o)!;
    let at = 0;
    for (let win = 0; win * 4 < 21; win++) {
      const chunks = range(21).filter((c) => Math.floor(w.rank[c]! / 4) === win);
      const size = chunks.reduce((n, c) => n + Math.min(100, 2_050 - c * 100), 0);
      const seen = new Set(Array.from(w.perm.subarray(at, at + size), (i) => Math.floor(i / 100)));
      expect([...seen].sort((x, y) => x - y)).toEqual(chunks);
      at += size;
    }
    expect(at).toBe(2_050);
  });

  it('gives a split of at most windowChunks chunks the global permutation (as in-memory data)', () => {
    expect(chunkWindows(400, 9, 2, { chunkExamples: 100, windowChunks: 4 })).toBeUndefined();
    const s = new EpochSampler({ size: 400, seed: 9, chunks: { chunkExamples: 100, windowChunks: 4 } });
    s.beginEpoch(2);
    expect(s.windowed).toBe(false);
    expect(s.take(400)).toEqual(epochPermutation(400, 9, 2));
  });
});

describe('splitByChunkOwner', () => {
  const w = chunkWindows(10_000, 3, 0, { chunkExamples: 100, windowChunks: 8 })!;

  it('covers the batch exactly once, each worker only the chunks it owns, owners in proportion to weights', () => {
    const owners = new Map<number, number>();
    for (let step = 0; step < 100; step++) {
      const batch = w.perm.subarray(step * 100, step * 100 + 100);
      const slices = splitByChunkOwner(batch, [1, 1, 2], w);
      expect(sorted(slices.flatMap((s) => Array.from(s)))).toEqual(sorted(batch));
      slices.forEach((s, m) =>
        s.forEach((i) => {
          const c = Math.floor(i / 100);
          expect(owners.get(c) ?? m).toBe(m); // a chunk always goes to the same worker
          owners.set(c, m);
        }),
      );
    }
    const count = [0, 0, 0];
    for (const m of owners.values()) count[m]!++;
    expect(count).toEqual([25, 25, 50]);
  });

  it('gives a zero weight nothing', () => {
    const slices = splitByChunkOwner(w.perm.subarray(0, 500), [0, 1], w);
    expect(slices[0]!.length).toBe(0);
    expect(slices[1]!.length).toBe(500);
  });
});

describe('EpochSampler with chunks', () => {
  it('splits by owner when windowed and keeps the exactly-once audit through give-backs', () => {
    const s = new EpochSampler({ size: 5_000, seed: 5, chunks: { chunkExamples: 50, windowChunks: 10 } });
    s.beginEpoch(0);
    expect(s.windowed).toBe(true);
    let k = 0;
    while (!s.exhausted) {
      const next = s.peek(64);
      const batch = s.take(64);
      expect(batch).toEqual(next);
      const [a, b] = s.split(batch, [1, 1]);
      expect(a!.length + b!.length).toBe(batch.length);
      if (k++ % 7 === 3)
        s.giveBack(b!); // a lost worker's slice comes back first
      else s.complete(b!);
      s.complete(a!);
    }
    expect(s.audit()).toMatchObject({ ok: true, seen: 5_000 });
  });

  it('splits in contiguous slices (splitBatch) when not windowed', () => {
    const s = new EpochSampler({ size: 1_000, seed: 5 });
    s.beginEpoch(0);
    const batch = s.take(10);
    expect(s.split(batch, [1, 1])).toEqual(splitBatch(batch, [1, 1]));
  });
});
