import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../protocol/protocol-error.js';
import { maxRelativeDifference, weightedMean, weightsChecksum } from './gradient-math.js';
import { GradientReducer } from './gradient-reducer.js';

const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i) * 3);

describe('GradientReducer', () => {
  it('computes the sample-weighted mean of per-worker mean gradients', () => {
    // Per-example gradients; each worker reports the mean over its (unequal) slice.
    const examples = Array.from({ length: 10 }, (_, k) => rand(64, k));
    const meanOf = (xs: Float32Array[]) => weightedMean(xs, xs.map(() => 1));
    const full = meanOf(examples);
    const shards = [examples.slice(0, 7), examples.slice(7, 9), examples.slice(9)];
    const r = new GradientReducer(64);
    r.begin(new Float32Array(64));
    for (const s of shards) r.add(meanOf(s), s.length);
    expect(r.samples).toBe(10);
    expect(maxRelativeDifference(r.finish(), full)).toBeLessThan(1e-6);
  });

  it('refuses NaN/Infinity and wrong sizes before touching the accumulator', () => {
    const r = new GradientReducer(4);
    const acc = new Float32Array(4);
    r.begin(acc);
    r.add(Float32Array.of(1, 2, 3, 4), 2);
    const snapshot = Array.from(acc);
    for (const bad of [Float32Array.of(1, NaN, 0, 0), Float32Array.of(Infinity, 0, 0, 0), Float32Array.of(0, 0, -Infinity, 0)]) {
      expect(() => r.add(bad, 1)).toThrow(expect.objectContaining({ code: 'NON_FINITE_GRADIENT' }));
    }
    expect(() => r.add(new Float32Array(5), 1)).toThrow(ProtocolError);
    expect(Array.from(acc)).toEqual(snapshot);
    expect(Array.from(r.finish())).toEqual([1, 2, 3, 4]);
  });

  it('finish without contributions is an error', () => {
    const r = new GradientReducer(2);
    r.begin(new Float32Array(2));
    expect(() => r.finish()).toThrow();
  });
});

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
