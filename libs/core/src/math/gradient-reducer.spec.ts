import { describe, expect, it } from 'vitest';
import { bucketCodec, type Compression } from '../compression/codec.js';
import { Accumulator, STAGE_FLOATS } from './accumulator.js';
import { BucketPlan } from './bucket-plan.js';
import { maxRelativeDifference, weightedMean, weightsChecksum } from './gradient-math.js';
import { GradientReducer } from './gradient-reducer.js';

const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i) * 3);

/** Encodes a flat gradient bucket by bucket, as a worker does. */
function encodeBuckets(plan: BucketPlan, name: Compression, g: Float32Array): Uint8Array[] {
  const codec = bucketCodec(name);
  const work = Float32Array.from(g);
  return Array.from({ length: plan.count }, (_, b) => {
    const out = new Uint8Array(codec.gradientBytes(plan.length(b)));
    codec.encode(plan.slice(work, b), out);
    return out;
  });
}

/**
 * Reduces `grads` (weighted by `samples`) and returns the averaged gradient. `fold`: name
 * the total in `begin`, so the mean is folded into each bucket's last add; `beforeFinish`
 * sees the accumulator after the last add.
 */
function reduce(
  plan: BucketPlan,
  name: Compression,
  grads: Float32Array[],
  samples: number[],
  fold = false,
  beforeFinish?: (acc: Float32Array) => void,
): Float32Array {
  const r = new GradientReducer(plan, bucketCodec(name));
  const total = samples.reduce((a, b) => a + b, 0);
  r.begin(fold ? total : undefined);
  grads.forEach((g, k) => encodeBuckets(plan, name, g).forEach((p, b) => r.add(b, p, samples[k]!)));
  beforeFinish?.(Float32Array.from(r.acc.values));
  const out = new Float32Array(plan.size);
  for (let b = 0; b < plan.count; b++) out.set(r.finishBucket(b, total), plan.start(b));
  return out;
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const same = (a: Float32Array, b: Float32Array) => Buffer.compare(bytes(a), bytes(b)) === 0;

describe('GradientReducer', () => {
  it('computes the sample-weighted mean of per-worker mean gradients', () => {
    const examples = Array.from({ length: 10 }, (_, k) => rand(64, k));
    const meanOf = (xs: Float32Array[]) =>
      weightedMean(
        xs,
        xs.map(() => 1),
      );
    const shards = [examples.slice(0, 7), examples.slice(7, 9), examples.slice(9)];
    const got = reduce(
      new BucketPlan(64),
      'none',
      shards.map(meanOf),
      shards.map((s) => s.length),
    );
    expect(maxRelativeDifference(got, meanOf(examples))).toBeLessThan(1e-6);
  });

  it('bucketing reassembles exactly: any bucket size gives the bit-identical mean', () => {
    const size = 5 * STAGE_FLOATS + 777; // several staging pieces, a ragged last bucket, a 1-3 float tail
    const grads = [rand(size, 1), rand(size, 2), rand(size, 3)];
    const whole = reduce(new BucketPlan(size, size * 4 + 1024), 'none', grads, [5, 3, 8]);
    for (const bytes of [1024, 4096 + 512, 300_000, 1 << 20]) {
      const plan = new BucketPlan(size, bytes);
      expect(plan.count).toBeGreaterThan(1);
      expect(
        Buffer.compare(Buffer.from(reduce(plan, 'none', grads, [5, 3, 8]).buffer), Buffer.from(whole.buffer)),
      ).toBe(0);
    }
  });

  it("folds the 1/total scale into each bucket's last add when begin names the total, changing no bit", () => {
    const size = STAGE_FLOATS + 1234; // two staging chunks and a scalar tail per bucket
    const plan = new BucketPlan(size, 100_000);
    for (const name of ['none', 'fp16', 'int8'] as const) {
      for (const samples of [[7], [5, 3], [5, 3, 8], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]) {
        const grads = samples.map((_, k) => rand(size, k + 11));
        const total = samples.reduce((a, b) => a + b, 0);
        const unfolded = reduce(plan, name, grads, samples);
        let afterLastAdd: Float32Array = new Float32Array(0);
        const folded = reduce(plan, name, grads, samples, true, (acc) => (afterLastAdd = acc));
        expect(same(folded, unfolded), `${name} ${samples.join(',')}`).toBe(true);
        // The mean is already in the accumulator before finishBucket: no scale pass is left.
        expect(same(afterLastAdd, folded)).toBe(true);
        // Within a few float32 ulps (of the largest term) of the exact float64 mean of what was sent.
        const exact = new Float64Array(size);
        const largest = new Float64Array(size);
        grads.forEach((g, k) => {
          const sent = new Float32Array(size);
          const codec = bucketCodec(name);
          encodeBuckets(plan, name, g).forEach((p, b) => codec.decode(p, plan.slice(sent, b)));
          sent.forEach((x, i) => {
            exact[i]! += (x * samples[k]!) / total;
            largest[i] = Math.max(largest[i]!, Math.abs(x));
          });
        });
        const ulps = folded.reduce((m, x, i) => Math.max(m, Math.abs(x - exact[i]!) / ulp(largest[i]!)), 0);
        expect(ulps).toBeLessThanOrEqual(samples.length + 2);
      }
    }
  });

  it('folds nothing while fewer samples than expected arrived (a straggler excused), and refuses a mismatch', () => {
    const plan = new BucketPlan(100);
    const grads = [rand(100, 1), rand(100, 2)];
    const r = new GradientReducer(plan, bucketCodec('none'));
    r.begin(12); // a third worker's 4 samples never come
    grads.forEach((g) => r.add(0, new Uint8Array(g.buffer), 4));
    expect(same(r.finishBucket(0, 8), reduce(plan, 'none', grads, [4, 4]))).toBe(true);

    const f = new GradientReducer(plan, bucketCodec('none'));
    f.begin(8);
    grads.forEach((g) => f.add(0, new Uint8Array(g.buffer), 4));
    expect(() => f.add(0, new Uint8Array(grads[0]!.buffer), 4)).toThrow(
      expect.objectContaining({ code: 'DUPLICATE_MESSAGE' }),
    );
    expect(() => f.finishBucket(0, 9)).toThrow(/averaged over 8 samples/);
    expect(() => f.begin(0)).toThrow(RangeError);
  });

  it('SIMD and scalar kernels agree bit for bit (tails included)', () => {
    const acc = new Accumulator(1027);
    expect(acc.simd).toBe(true);
    const g = rand(1027, 4);
    acc.add(0, g, 3, true);
    acc.add(0, rand(1027, 5), 0.5, false);
    acc.scale(0, 1027, 1 / 3.5);
    const expected = new Float32Array(1027);
    const h = rand(1027, 5);
    for (let i = 0; i < 1027; i++)
      expected[i] = Math.fround(Math.fround(Math.fround(g[i]! * 3) + Math.fround(h[i]! * 0.5)) * Math.fround(1 / 3.5));
    expect(Array.from(acc.values)).toEqual(Array.from(expected));
  });

  it('refuses a wrong-sized bucket before touching the accumulator and flags NaN/Infinity', () => {
    const plan = new BucketPlan(8);
    const r = new GradientReducer(plan, bucketCodec('none'));
    r.begin();
    r.add(0, new Uint8Array(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8).buffer), 2);
    const snapshot = Array.from(r.acc.values);
    expect(() => r.add(0, new Uint8Array(20), 1)).toThrow(expect.objectContaining({ code: 'GRADIENT_SIZE_MISMATCH' }));
    expect(() => r.add(1, new Uint8Array(32), 1)).toThrow(expect.objectContaining({ code: 'GRADIENT_SIZE_MISMATCH' }));
    expect(Array.from(r.acc.values)).toEqual(snapshot);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const at of [1, 6]) {
        // inside the SIMD part and in the scalar tail
        const g = new Float32Array(8);
        g[at] = bad;
        const rr = new GradientReducer(new BucketPlan(7), bucketCodec('none'));
        rr.begin();
        expect(() => rr.add(0, new Uint8Array(g.buffer, 0, 28), 1)).toThrow(
          expect.objectContaining({ code: 'NON_FINITE_GRADIENT' }),
        );
      }
    }
  });

  it('compressed codecs still refuse non-finite gradients', () => {
    for (const name of ['fp16', 'int8', 'topk'] as const) {
      const plan = new BucketPlan(1000);
      const g = rand(1000, 9);
      g[500] = NaN;
      const r = new GradientReducer(plan, bucketCodec(name));
      r.begin();
      expect(() => r.add(0, encodeBuckets(plan, name, g)[0]!, 1), name).toThrow(
        expect.objectContaining({ code: 'NON_FINITE_GRADIENT' }),
      );
    }
  });
});

/** The float32 ulp at the magnitude of `x`. */
function ulp(x: number): number {
  const a = Math.max(Math.abs(x), 2 ** -126);
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

describe('weightsChecksum', () => {
  it('is bit-exact: equal arrays agree, one ulp differs', () => {
    const a = rand(1000, 1);
    const b = Float32Array.from(a);
    expect(weightsChecksum([a])).toEqual(weightsChecksum([b]));
    const u = new Uint32Array(b.buffer);
    u[500] = u[500]! + 1;
    expect(weightsChecksum([a]).hash).not.toBe(weightsChecksum([b]).hash);
  });
});
