import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Accumulator, STAGE_FLOATS } from '../math/accumulator.js';
import { bucketCodec } from './codec.js';
import { decodeHalves, encodeHalves, halfBits } from './fp16.js';
import { decodeHalvesSimd, encodeHalvesSimd } from './fp16-simd.js';
import { INT8_BLOCK, decodeInt8, encodeInt8, int8Blocks, int8Bytes } from './int8.js';
import { decodeInt8Simd, encodeInt8Simd } from './int8-simd.js';

// The SIMD codecs against the scalar code of fp16.ts / int8.ts, bit for bit: every replica
// must decode identical values whichever path a process takes.

const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const f32 = (bits: number) => new Float32Array(Uint32Array.of(bits).buffer)[0]!;

/** Float32 patterns that exercise fp16's edges: zeros, subnormals, ties, the saturation point, Inf, NaN. */
const EDGE_FLOATS = [
  0,
  -0,
  1,
  -1,
  1 + 2 ** -11,
  1 + 3 * 2 ** -11,
  2 ** -14,
  2 ** -14 - 2 ** -25,
  2 ** -24,
  2 ** -25,
  3 * 2 ** -26,
  2 ** -26,
  6e-8,
  65504,
  65519.99,
  65520,
  65536,
  1e30,
  3.4e38,
  Infinity,
  -Infinity,
  NaN,
  1e-45,
  -1e-40,
  2 ** -14 + 2 ** -24,
].map(Math.fround);

/** Lengths around the 16-value SIMD blocks, the 256-value int8 blocks and the staging chunks. */
const lengthArb = fc.oneof(
  fc.integer({ min: 1, max: 600 }),
  fc.constantFrom(15, 16, 17, 255, 256, 257, STAGE_FLOATS - 1, STAGE_FLOATS + 17, 2 * STAGE_FLOATS + 300),
);

/** Random fp16 payloads: any of the 65,536 patterns, or only finite ones. */
const halvesArb = (finite: boolean) =>
  lengthArb.chain((n) =>
    fc
      .array(fc.integer({ min: 0, max: 0xffff }), { minLength: n, maxLength: n })
      .map((a) => Uint16Array.from(a, (h) => (finite && (h & 0x7c00) === 0x7c00 ? h & 0xfbff : h))),
  );

/** Random int8 payloads with random (normal, subnormal, zero, huge) block scales. */
const int8Arb = (finite: boolean) =>
  lengthArb.chain((n) =>
    fc
      .tuple(
        fc.array(fc.float({ noNaN: finite, noDefaultInfinity: finite }), {
          minLength: int8Blocks(n),
          maxLength: int8Blocks(n),
        }),
        fc.array(fc.integer({ min: -128, max: 127 }), { minLength: n, maxLength: n }),
      )
      .map(([scales, q]) => {
        const p = new Uint8Array(int8Bytes(n));
        new Float32Array(p.buffer, 0, scales.length).set(scales);
        new Int8Array(p.buffer, scales.length * 4, n).set(q);
        return { n, p };
      }),
  );

const addArgs = fc.record({
  w: fc.integer({ min: 1, max: 5000 }),
  first: fc.boolean(),
  total: fc.option(fc.integer({ min: 1, max: 100_000 }), { nil: undefined }),
});

/** The scalar reference of one add: float32 rounding after each operation. */
function referenceAdd(acc0: Float32Array, g: Float32Array, w: number, first: boolean, total?: number): Float32Array {
  const out = new Float32Array(g.length);
  const s = total === undefined ? undefined : Math.fround(1 / total);
  for (let i = 0; i < g.length; i++) {
    const p = Math.fround(g[i]! * w);
    const v = first ? p : Math.fround(acc0[i]! + p);
    out[i] = s === undefined ? v : v * s;
  }
  return out;
}

/** Runs `accumulate` into a fresh accumulator prefilled with `acc0`, at offset 3 (unaligned). */
function simdAdd(
  codec: 'fp16' | 'int8',
  payload: Uint8Array,
  acc0: Float32Array,
  args: { w: number; first: boolean; total?: number },
) {
  const acc = new Accumulator(acc0.length + 3);
  expect(acc.simd).toBe(true);
  acc.values.set(acc0, 3);
  const scale = args.total === undefined ? undefined : 1 / args.total;
  const ok = bucketCodec(codec).accumulate(payload, acc0.length, acc, 3, args.w, args.first, scale);
  return { ok, values: acc.values.subarray(3) };
}

const prefill = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 100);

describe('fp16 on the SIMD kernels', () => {
  it('decodes all 65,536 halves to the same float32 bits as the scalar table (NaN, Inf, subnormals)', () => {
    const h = Uint16Array.from({ length: 65536 + 13 }, (_, i) => i & 0xffff);
    const scalar = new Float32Array(h.length);
    const simd = new Float32Array(h.length);
    decodeHalves(h, scalar);
    decodeHalvesSimd(h, simd);
    expect(bitsOf(simd)).toEqual(bitsOf(scalar));
  });

  it('encodes edge floats and random float32 bit patterns to the same halves as halfBits', () => {
    const check = (f: Float32Array) => {
      const scalar = new Uint16Array(f.length);
      const simd = new Uint16Array(f.length);
      encodeHalves(f, scalar);
      encodeHalvesSimd(f, simd);
      expect(Array.from(simd)).toEqual(Array.from(scalar));
    };
    const edges = Float32Array.from([...EDGE_FLOATS, ...EDGE_FLOATS.map((x) => -x)]);
    check(edges);
    // Every exponent with the mantissas just below, at and above each rounding tie.
    const ties: number[] = [];
    for (let e = 0; e < 256; e++)
      for (const m of [0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x7fe000, 0x7ff000, 0x7fffff])
        ties.push(f32(((e << 23) | m) >>> 0), f32(((1 << 31) | (e << 23) | m) >>> 0));
    check(Float32Array.from(ties));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 700 }), (bits) =>
        check(new Float32Array(Uint32Array.from(bits).buffer)),
      ),
      { numRuns: 300 },
    );
    expect(halfBits(0x477ff000)).toBe(0x7bff); // 65520 would round to Infinity: saturates
  });

  it('adds decoded halves into the accumulator bit-identically to the scalar path, every mode', () => {
    fc.assert(
      fc.property(halvesArb(true), addArgs, (h, args) => {
        const g = new Float32Array(h.length);
        decodeHalves(h, g);
        const acc0 = prefill(h.length);
        const { ok, values } = simdAdd('fp16', new Uint8Array(h.buffer), acc0, args);
        expect(ok).toBe(true);
        expect(bitsOf(values)).toEqual(bitsOf(referenceAdd(acc0, g, args.w, args.first, args.total)));
      }),
      { numRuns: 60 },
    );
  });

  it('reports a NaN or Infinity half wherever it sits (SIMD body or scalar tail)', () => {
    for (const n of [16, 40, 1000]) {
      for (const at of [0, 17, n - 1]) {
        for (const bad of [0x7c00, 0xfc00, 0x7e00, 0x7c01]) {
          if (at >= n) continue;
          const h = new Uint16Array(n).fill(0x3c00);
          h[at] = bad;
          expect(simdAdd('fp16', new Uint8Array(h.buffer), new Float32Array(n), { w: 1, first: false }).ok).toBe(false);
        }
      }
    }
  });
});

describe('int8 on the SIMD kernels', () => {
  it('adds block-scaled values into the accumulator bit-identically to the scalar path, every mode', () => {
    fc.assert(
      fc.property(int8Arb(true), addArgs, ({ n, p }, args) => {
        const g = new Float32Array(n);
        decodeInt8(p, n, g);
        const acc0 = prefill(n);
        const { ok, values } = simdAdd('int8', p, acc0, args);
        const finite = g.every(Number.isFinite);
        expect(ok).toBe(finite);
        if (finite) expect(bitsOf(values)).toEqual(bitsOf(referenceAdd(acc0, g, args.w, args.first, args.total)));
      }),
      { numRuns: 60 },
    );
  });

  it('decodes an update bit-identically to the scalar decoder (non-finite scales give NaN blocks as before)', () => {
    fc.assert(
      fc.property(int8Arb(false), ({ n, p }) => {
        const scalar = new Float32Array(n);
        const simd = new Float32Array(n);
        decodeInt8(p, n, scalar);
        decodeInt8Simd(p, simd);
        expect(bitsOf(simd)).toEqual(bitsOf(scalar));
      }),
      { numRuns: 60 },
    );
  });

  it('encodes to the same bytes as the scalar encoder (NaN, Inf, subnormals, ties, ragged last block)', () => {
    const check = (v: Float32Array) => {
      const scalar = new Uint8Array(int8Bytes(v.length));
      const simd = new Uint8Array(int8Bytes(v.length)).fill(0x5a);
      encodeInt8(Float32Array.from(v), scalar);
      expect(encodeInt8Simd(Float32Array.from(v), simd)).toBe(scalar.byteLength);
      expect(Array.from(simd)).toEqual(Array.from(scalar));
    };
    // Ties: a block whose maximum is 127 has scale 1, so k + 0.5 rounds up (Math.round), -k - 0.5 toward zero.
    const ties = Float32Array.from({ length: 2 * INT8_BLOCK }, (_, i) => (i === 0 ? 127 : (i % 253) - 126 + 0.5));
    check(ties);
    check(Float32Array.from({ length: 3 * INT8_BLOCK + 7 }, (_, i) => EDGE_FLOATS[i % EDGE_FLOATS.length]!));
    check(Float32Array.from({ length: INT8_BLOCK }, (_, i) => (i + 1) * 1e-45)); // all subnormal
    fc.assert(
      fc.property(
        lengthArb,
        fc.float32Array({ minLength: 1, maxLength: 600 }),
        fc.integer({ min: -40, max: 40 }),
        (n, pool, shift) => {
          const v = Float32Array.from({ length: n }, (_, i) => pool[(i * 31) % pool.length]! * 2 ** shift);
          check(v);
        },
      ),
      { numRuns: 80 },
    );
  });

  it('reports a block with a NaN or Infinity scale', () => {
    const n = 3 * INT8_BLOCK + 5;
    for (const block of [0, 3]) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const p = new Uint8Array(int8Bytes(n));
        const scales = new Float32Array(p.buffer, 0, int8Blocks(n));
        scales.fill(0.5);
        scales[block] = bad;
        new Int8Array(p.buffer, scales.byteLength, n).fill(3);
        expect(simdAdd('int8', p, new Float32Array(n), { w: 2, first: true }).ok).toBe(false);
      }
    }
  });
});

describe('inputs received into the accumulator memory', () => {
  it('are added in place, without staging, bit-identically to the staged path (float32, fp16, int8)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('none' as const, 'fp16' as const, 'int8' as const),
        fc.integer({ min: 1, max: 3000 }),
        addArgs,
        (name, n, args) => {
          const codec = bucketCodec(name);
          const g = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + n) * 40);
          const payload = new Uint8Array(codec.gradientBytes(n));
          codec.encode(g, payload);
          const scale = args.total === undefined ? undefined : 1 / args.total;
          const staged = new Accumulator(n);
          staged.values.set(prefill(n));
          expect(codec.accumulate(payload, n, staged, 0, args.w, args.first, scale)).toBe(true);
          const inPlace = new Accumulator(n, payload.byteLength + 64);
          inPlace.values.set(prefill(n));
          const received = inPlace.receive().subarray(0, payload.byteLength);
          received.set(payload);
          expect(inPlace.holds(received)).toBe(true);
          inPlace.stagingBytes().fill(0xab);
          expect(codec.accumulate(received, n, inPlace, 0, args.w, args.first, scale)).toBe(true);
          expect(bitsOf(inPlace.values)).toEqual(bitsOf(staged.values));
          // Nothing was staged (only the scalar tail, under 16 values, uses the stage's end).
          const untouched = inPlace.stagingBytes().subarray(0, STAGE_FLOATS * 4 - 64);
          expect(untouched.every((b) => b === 0xab)).toBe(true);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('still reports a NaN received in place', () => {
    const acc = new Accumulator(40, 160);
    const g = new Float32Array(acc.receive().buffer, acc.receive().byteOffset, 40).fill(1);
    g[20] = NaN;
    expect(bucketCodec('none').accumulate(new Uint8Array(g.buffer, g.byteOffset, 160), 40, acc, 0, 1, true)).toBe(
      false,
    );
  });
});
