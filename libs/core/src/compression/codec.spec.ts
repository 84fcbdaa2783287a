import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Accumulator } from '../math/accumulator.js';
import { bucketCodec } from './codec.js';
import { FP16_MAX, halfBits } from './fp16.js';
import { INT8_BLOCK, int8Bytes } from './int8.js';
import { sparseBytes, topkCount } from './topk.js';

const roundTrip = (name: 'none' | 'fp16' | 'int8', v: Float32Array) => {
  const c = bucketCodec(name);
  const bytes = new Uint8Array(c.gradientBytes(v.length) + 8);
  const p = bytes.subarray(0, c.gradientBytes(v.length));
  c.encode(Float32Array.from(v), p);
  const out = new Float32Array(v.length);
  c.decode(p, out);
  return out;
};
const floats = fc.float32Array({ minLength: 1, maxLength: 2000, noNaN: true, noDefaultInfinity: true });

describe('fp16', () => {
  it('round-trips within 2^-11 relative (normal range), 2^-25 absolute (subnormal), saturating at 65504', () => {
    fc.assert(
      fc.property(floats, (v) => {
        const out = roundTrip('fp16', v);
        v.forEach((x, i) => {
          const y = out[i]!;
          if (Math.abs(x) > FP16_MAX) expect(Math.abs(y)).toBe(FP16_MAX);
          else if (Math.abs(x) >= 2 ** -14) expect(Math.abs(y - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
          else expect(Math.abs(y - x)).toBeLessThanOrEqual(2 ** -25);
        });
      }),
      { numRuns: 200 },
    );
  });

  it('rounds to nearest even and keeps NaN/Infinity non-finite', () => {
    const bits = (x: number) => halfBits(new Uint32Array(Float32Array.of(x).buffer)[0]!);
    expect(bits(1)).toBe(0x3c00);
    expect(bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(bits(2 ** -24)).toBe(0x0001);
    expect(bits(-0)).toBe(0x8000);
    expect(bits(Infinity)).toBe(0x7c00);
    expect(bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(bits(65520)).toBe(0x7bff); // would round to Infinity: saturates
  });
});

describe('int8', () => {
  it('round-trips within max|block|/254 per block, at n + 4*ceil(n/256) bytes', () => {
    const big = Math.fround(1e30); // the bound holds below float32's top binade, far beyond any gradient
    fc.assert(
      fc.property(fc.float32Array({ minLength: 1, maxLength: 2000, min: -big, max: big, noNaN: true }), (v) => {
        expect(bucketCodec('int8').gradientBytes(v.length)).toBe(int8Bytes(v.length));
        const out = roundTrip('int8', v);
        for (let lo = 0; lo < v.length; lo += INT8_BLOCK) {
          const block = v.subarray(lo, lo + INT8_BLOCK);
          const bound = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0) / 254;
          block.forEach((x, i) => expect(Math.abs(out[lo + i]! - x)).toBeLessThanOrEqual(bound * (1 + 1e-6) + 1e-30));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('top-k with error feedback', () => {
  it('keeps exactly the k largest magnitudes and leaves the rest as the residual', () => {
    const c = bucketCodec('topk', 0.1);
    const v = Float32Array.from({ length: 100 }, (_, i) => (i % 2 ? -1 : 1) * ((i * 37) % 100));
    const original = Float32Array.from(v);
    const p = new Uint8Array(c.gradientBytes(100));
    expect(p.byteLength).toBe(sparseBytes(topkCount(100, 0.1)));
    c.encode(v, p);
    const out = new Float32Array(100);
    c.decode(p, out);
    const kept = [...out.keys()].filter((i) => out[i] !== 0);
    expect(kept).toHaveLength(10);
    const smallestKept = Math.min(...kept.map((i) => Math.abs(original[i]!)));
    for (let i = 0; i < 100; i++) {
      expect(out[i]! + v[i]!).toBe(original[i]); // sent + residual = input, exactly
      if (out[i] === 0) expect(Math.abs(original[i]!)).toBeLessThanOrEqual(smallestKept);
    }
  });

  it('cumulative sent updates converge to the cumulative uncompressed sum', () => {
    const n = 5000;
    const c = bucketCodec('topk', 0.01);
    const residual = new Float32Array(n);
    const sent = new Float64Array(n);
    const truth = new Float64Array(n);
    const p = new Uint8Array(c.gradientBytes(n));
    const decoded = new Float32Array(n);
    const gap = () => {
      let num = 0;
      let den = 0;
      for (let i = 0; i < n; i++) {
        num += (sent[i]! - truth[i]!) ** 2;
        den += truth[i]! ** 2;
      }
      return Math.sqrt(num / den);
    };
    const gaps: number[] = [];
    const residuals: number[] = [];
    for (let step = 1; step <= 2000; step++) {
      for (let i = 0; i < n; i++) {
        const g = Math.sin(i * 0.37 + step * 0.011) * (1 + (i % 7)) + 0.5; // a drift every coordinate shares
        truth[i]! += g;
        residual[i]! += g;
      }
      c.encode(residual, p);
      c.decode(p, decoded);
      for (let i = 0; i < n; i++) sent[i]! += decoded[i]!;
      if (step % 500 === 0) {
        gaps.push(gap());
        residuals.push(residual.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
      }
    }
    // The residual (sum - delivered) stays bounded, so the relative gap falls like 1/steps:
    // nothing is lost for good. Without feedback the gap would stay near 1 (99 % dropped).
    expect(residuals[3]!).toBeLessThan(residuals[1]! * 1.5);
    expect(gaps[3]!).toBeLessThan(gaps[0]! * 0.4);
    expect(gaps[3]!).toBeLessThan(0.1);
  });

  it('the coordinator sums sparse contributions into a zeroed accumulator and rejects indices outside the bucket', () => {
    const c = bucketCodec('topk', 0.5);
    const acc = new Accumulator(4);
    acc.values.fill(0);
    const a = new Uint8Array(16);
    c.encode(Float32Array.of(0, 5, 0, 1), a);
    const b = new Uint8Array(16);
    c.encode(Float32Array.of(2, 0, 0, 3), b);
    expect(c.accumulate(a, 4, acc, 0, 1, false)).toBe(true);
    expect(c.accumulate(b, 4, acc, 0, 2, false)).toBe(true);
    expect(Array.from(acc.values)).toEqual([4, 5, 0, 7]);
    new Uint32Array(b.buffer)[0] = 4;
    expect(() => c.accumulate(b, 4, acc, 0, 1, false)).toThrow(
      expect.objectContaining({ code: 'GRADIENT_SIZE_MISMATCH' }),
    );
    // 3 of 4 values non-zero: 24 bytes sparse, 16 dense, so the update travels dense.
    expect(c.updateBytes(acc.values)).toBe(16);
  });

  it('encodes the update dense once the union of entries makes sparse larger, and decodes both layouts', () => {
    const n = 1000;
    const c = bucketCodec('topk', 0.01);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: n }), fc.integer({ min: 0, max: 2 ** 31 }), (k, seed) => {
        // k non-zeros, as the mean of many workers' top-k entries gives.
        const values = new Float32Array(n);
        for (let j = 0; j < k; j++) values[(seed + j * 7919) % n] = Math.fround(((seed + j) % 97) - 48.5);
        const nonZeros = values.reduce((m, x) => m + (x !== 0 ? 1 : 0), 0);
        const bytes = c.updateBytes(values);
        expect(bytes).toBe(Math.min(sparseBytes(nonZeros), n * 4));
        expect(bytes).toBeLessThanOrEqual(n * 4);
        const p = new Uint8Array(bytes);
        c.encodeUpdate(values, p);
        const out = new Float32Array(n).fill(9);
        c.decode(p, out);
        expect(Array.from(out)).toEqual(Array.from(values));
      }),
      { numRuns: 200 },
    );
    // The tie (sparse exactly as large as dense) goes dense: 4 n bytes always means dense.
    const half = Float32Array.from({ length: 8 }, (_, i) => (i % 2 ? 0 : i + 1));
    expect(c.updateBytes(half)).toBe(32);
    expect(() => c.decode(new Uint8Array(40), new Float32Array(8))).toThrow(
      expect.objectContaining({ code: 'GRADIENT_SIZE_MISMATCH' }),
    );
    expect(() => c.decode(new Uint8Array(12), new Float32Array(8))).toThrow(
      expect.objectContaining({ code: 'GRADIENT_SIZE_MISMATCH' }),
    );
  });

  it("the update stays within the dense size however many workers' entries it unites", () => {
    const n = 4096;
    const c = bucketCodec('topk', 0.01);
    const acc = new Accumulator(n);
    for (const workers of [2, 16, 64]) {
      acc.values.fill(0);
      for (let k = 0; k < workers; k++) {
        const g = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k * 1.3) * (1 + ((i + k) % 5)));
        const p = new Uint8Array(c.gradientBytes(n));
        c.encode(g, p);
        expect(c.accumulate(p, n, acc, 0, 1, false)).toBe(true);
      }
      expect(c.updateBytes(acc.values)).toBeLessThanOrEqual(n * 4);
    }
    expect(c.updateBytes(acc.values)).toBe(n * 4); // 64 workers x 1 %: over half the entries
  });
});
