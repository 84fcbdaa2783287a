import { I32, V128, fn, loop64, op } from './wasm-assembler.js';

/**
 * The int8 encoder's two SIMD kernels (see compression/int8.ts for the layout). They
 * reproduce the scalar encoder bit for bit: the block maximum is exact, and the
 * quantisation runs in float64 lanes, as JS does `Math.round(values[i] * inv)`.
 *
 *   blockMaxI8(dst, src, blocks)  dst[b] = max |src[256b .. 256b + 256)|, NaN if one is NaN
 *   quantI8(dst, src, inv, n)     dst[i] = int8(round(float64(src[i]) * inv[i >> 8]))
 *
 * `inv` holds one float64 per 256 values; round is `Math.round` (halves up, toward
 * +Infinity: floor(y) + (y - floor(y) >= 0.5)); NaN becomes 0 as in an Int8Array.
 */

/** Bytes of float32 per int8 block (256 values). */
const BLOCK_BYTES = 1024;

// blockMaxI8: dst = 0, src = 1, blocks = 2; end = 3, srcEnd = 4, n256 = 5; m = 6
export const blockMaxI8Body = (() => {
  const [dst, src, blocks, end, srcEnd, n256, m] = [0, 1, 2, 3, 4, 5, 6];
  const halves = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
  const pairs = [4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11];
  return fn(
    [
      [3, I32],
      [1, V128],
    ],
    [
      ...op.get(src),
      ...op.get(blocks),
      ...op.i32(10),
      ...op.i32Shl,
      ...op.i32Add,
      ...op.set(srcEnd),
      ...op.i32(256),
      ...op.set(n256),
      ...op.block,
      ...op.get(src),
      ...op.get(srcEnd),
      ...op.i32GeU,
      ...op.brIf(0),
      ...op.loop,
      ...op.v128Zero,
      ...op.set(m),
      ...loop64(src, n256, end, [], (k) => [
        ...op.get(m),
        ...op.get(src),
        ...op.load(16 * k),
        ...op.f32x4Abs,
        ...op.f32x4Max,
        ...op.set(m),
      ]),
      ...op.get(m),
      ...op.get(m),
      ...op.get(m),
      ...op.shuffle(halves),
      ...op.f32x4Max,
      ...op.set(m),
      ...op.get(dst),
      ...op.get(m),
      ...op.get(m),
      ...op.get(m),
      ...op.shuffle(pairs),
      ...op.f32x4Max,
      ...op.f32x4ExtractLane(0),
      ...op.f32Store(0),
      ...op.get(dst),
      ...op.i32(4),
      ...op.i32Add,
      ...op.set(dst),
      ...op.get(src),
      ...op.get(srcEnd),
      ...op.i32LtU,
      ...op.brIf(0),
      ...op.end,
      ...op.end,
    ],
  );
})();

// quantI8: dst = 0, src = 1, inv = 2, n = 3; end = 4, base = 5; iv, y, f, lo, c0..c3 = 6..13
export const quantI8Body = (() => {
  const [dst, src, inv, n, end, base, iv, y, f, lo] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const c = (k: number) => 10 + k;
  const lowPairs = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
  /** Two floats at src + offset, scaled and rounded, as two int32 in the low lanes. */
  const two = (offset: number) => [
    ...op.get(src),
    ...op.load64Zero(offset),
    ...op.f64x2PromoteLowF32x4,
    ...op.get(iv),
    ...op.f64x2Mul,
    ...op.set(y),
    ...op.get(y),
    ...op.f64x2Floor,
    ...op.set(f),
    ...op.get(f),
    ...op.get(y),
    ...op.get(f),
    ...op.f64x2Sub,
    ...op.constF64(0.5),
    ...op.f64x2Ge,
    ...op.constF64(1),
    ...op.and,
    ...op.f64x2Add,
    ...op.i32x4TruncSatF64x2SZero,
  ];
  return fn(
    [
      [2, I32],
      [8, V128],
    ],
    [
      ...op.get(src),
      ...op.set(base),
      ...loop64(src, n, end, [[dst, 16]], (k) => [
        ...(k === 0
          ? [
              ...op.get(inv),
              ...op.get(src),
              ...op.get(base),
              ...op.i32Sub,
              ...op.i32(Math.log2(BLOCK_BYTES)),
              ...op.i32ShrU,
              ...op.i32(3),
              ...op.i32Shl,
              ...op.i32Add,
              ...op.load64Splat(0),
              ...op.set(iv),
            ]
          : []),
        ...two(16 * k),
        ...op.set(lo),
        ...op.get(lo),
        ...two(16 * k + 8),
        ...op.shuffle(lowPairs),
        ...op.set(c(k)),
        ...(k === 3
          ? [
              ...op.get(dst),
              ...op.get(c(0)),
              ...op.get(c(1)),
              ...op.i16x8NarrowI32x4S,
              ...op.get(c(2)),
              ...op.get(c(3)),
              ...op.i16x8NarrowI32x4S,
              ...op.i8x16NarrowI16x8S,
              ...op.store(0),
            ]
          : []),
      ]),
    ],
  );
})();
