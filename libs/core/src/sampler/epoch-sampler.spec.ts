import { describe, expect, it } from 'vitest';
import { EpochSampler, splitBatch, type SamplerState } from './epoch-sampler.js';
import { epochPermutation } from './prng.js';

/** Runs one epoch with `world` workers at global batch `batch`; returns how often each index was used. */
function runEpoch(
  size: number,
  batch: number,
  weights: number[],
  sampler = new EpochSampler({ size, seed: 7 }),
  epoch = 0,
): Uint32Array {
  const counts = new Uint32Array(size);
  sampler.beginEpoch(epoch);
  while (!sampler.epochComplete) {
    const slices = splitBatch(sampler.take(batch), weights);
    for (const s of slices) {
      for (const i of s) counts[i]!++;
      sampler.complete(s);
    }
  }
  expect(sampler.audit()).toMatchObject({ ok: true, missing: 0, duplicated: 0, seen: size });
  return counts;
}

describe('EpochSampler', () => {
  it('gives every index exactly once per epoch for world sizes 1..8 and sizes not divisible by the batch', () => {
    for (let world = 1; world <= 8; world++) {
      for (const [size, batch] of [
        [100, 32],
        [1000, 64],
        [97, 10],
        [5, 32],
        [33, 1],
      ] as const) {
        const counts = runEpoch(size, batch, Array(world).fill(1));
        expect(counts.every((c) => c === 1)).toBe(true);
      }
    }
  });

  it('gives every index exactly once with unequal shards', () => {
    for (const weights of [
      [1, 2],
      [3, 1, 1],
      [0.1, 5, 2, 0],
      [1, 0, 0, 0, 0, 0, 0, 7],
    ]) {
      const counts = runEpoch(1234, 50, weights);
      expect(counts.every((c) => c === 1)).toBe(true);
    }
  });

  it('serves given-back slices first and still covers every index once', () => {
    const size = 500;
    const s = new EpochSampler({ size, seed: 3 });
    s.beginEpoch(0);
    const used = new Uint32Array(size);
    let step = 0;
    while (!s.epochComplete) {
      const [a, b] = splitBatch(s.take(32), [1, 1]);
      // every third step worker b "dies": its slice is given back
      if (step++ % 3 === 0) {
        s.giveBack(b!);
        const again = s.take(b!.length);
        expect(Array.from(again)).toEqual(Array.from(b!));
        s.complete(again);
        for (const i of again) used[i]!++;
      } else {
        s.complete(b!);
        for (const i of b!) used[i]!++;
      }
      s.complete(a!);
      for (const i of a!) used[i]!++;
    }
    expect(used.every((c) => c === 1)).toBe(true);
    expect(s.audit().ok).toBe(true);
  });

  it('handles the last partial batch without dropping or duplicating', () => {
    const s = new EpochSampler({ size: 70, seed: 1 });
    s.beginEpoch(0);
    const sizes: number[] = [];
    while (!s.exhausted) {
      const b = s.take(32);
      sizes.push(b.length);
      s.complete(b);
    }
    expect(sizes).toEqual([32, 32, 6]);
    expect(s.epochComplete).toBe(true);
  });

  it('is deterministic per (seed, epoch) and reshuffles each epoch', () => {
    expect(Array.from(epochPermutation(50, 9, 0))).toEqual(Array.from(epochPermutation(50, 9, 0)));
    expect(Array.from(epochPermutation(50, 9, 0))).not.toEqual(Array.from(epochPermutation(50, 9, 1)));
    expect(Array.from(epochPermutation(50, 9, 0))).not.toEqual(Array.from(epochPermutation(50, 10, 0)));
    expect(Array.from(epochPermutation(5, 9, 0, false))).toEqual([0, 1, 2, 3, 4]);
  });

  it('resumes mid-epoch from its state without skipping or repeating', () => {
    const a = new EpochSampler({ size: 300, seed: 5 });
    a.beginEpoch(2);
    const first: number[] = [];
    for (let k = 0; k < 3; k++) {
      const b = a.take(40);
      a.complete(b);
      first.push(...b);
    }
    const lost = a.take(40);
    a.giveBack(lost);
    const b = new EpochSampler({ size: 300, seed: 5 });
    b.beginEpoch(2, a.state());
    const rest: number[] = [];
    while (!b.epochComplete) {
      const x = b.take(40);
      b.complete(x);
      rest.push(...x);
    }
    expect(new Set([...first, ...rest]).size).toBe(300);
    expect(first.length + rest.length).toBe(300);
    expect(b.audit().ok).toBe(true);
  });

  it('audits a resume from what was really trained: a skipped or repeated stretch fails it', () => {
    const trainToCheckpoint = () => {
      const a = new EpochSampler({ size: 300, seed: 5 });
      a.beginEpoch(1);
      for (let k = 0; k < 3; k++) a.complete(a.take(40));
      a.giveBack(a.take(40));
      return JSON.parse(JSON.stringify(a.state())) as SamplerState; // as written to state.json
    };
    const finish = (state: SamplerState) => {
      const b = new EpochSampler({ size: 300, seed: 5 });
      b.beginEpoch(1, state);
      while (!b.epochComplete) b.complete(b.take(40));
      return b.audit();
    };
    expect(finish(trainToCheckpoint())).toMatchObject({ ok: true, seen: 300, missing: 0, duplicated: 0 });
    const skipped = trainToCheckpoint();
    expect(finish({ ...skipped, cursor: skipped.cursor + 40 })).toMatchObject({ ok: false, missing: 40 });
    const repeated = trainToCheckpoint();
    expect(finish({ ...repeated, cursor: repeated.cursor - 40 })).toMatchObject({ ok: false, duplicated: 40 });
    const again = trainToCheckpoint();
    expect(finish({ ...again, repeated: [again.retry[0]!] })).toMatchObject({ ok: false, duplicated: 1 });
  });

  it('refuses a checkpointed bitmap of another training set size, saying what to do', () => {
    const a = new EpochSampler({ size: 300, seed: 5 });
    a.beginEpoch(0);
    a.complete(a.take(40));
    const b = new EpochSampler({ size: 200, seed: 5 });
    expect(() => b.beginEpoch(0, a.state())).toThrow(
      /does not fit a training set of 200 examples; resume with the same/,
    );
    expect(() => a.beginEpoch(0, { ...a.state(), repeated: [300] })).toThrow(RangeError);
  });

  it('flags a repeated index in the audit', () => {
    const s = new EpochSampler({ size: 10, seed: 1, shuffle: false });
    s.beginEpoch(0);
    const b = s.take(10);
    s.complete(b);
    s.complete(b.subarray(0, 1));
    expect(s.audit()).toMatchObject({ ok: false, duplicated: 1 });
  });
});

describe('splitBatch', () => {
  it('splits proportionally with sizes summing to the batch', () => {
    const idx = Uint32Array.from({ length: 10 }, (_, i) => i);
    expect(splitBatch(idx, [1, 1, 1]).map((s) => s.length)).toEqual([4, 3, 3]);
    expect(splitBatch(idx, [3, 1]).map((s) => s.length)).toEqual([8, 2]);
    expect(splitBatch(idx, [1, 0]).map((s) => s.length)).toEqual([10, 0]);
    expect(() => splitBatch(idx, [0, 0])).toThrow(RangeError);
  });
});
