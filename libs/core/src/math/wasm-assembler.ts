/**
 * Just enough of a WebAssembly assembler to write the SIMD kernels of `simd-module.ts` as
 * byte arrays: opcodes (core and SIMD, the 0xfd prefix), LEB128, sections and a counted
 * loop. Opcode numbers follow the WebAssembly 2.0 specification (fixed-width SIMD).
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

export function uleb(v: number): number[] {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

export function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
}

const simd = (code: number) => [0xfd, ...uleb(code)];
/** A memory access: log2 of the alignment hint, then the constant byte offset. */
const memarg = (align: number, offset: number) => [align, ...uleb(offset)];

/** Four copies of the 32-bit pattern `v` as a v128 constant. */
function i32x4Const(v: number): number[] {
  const lane = [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  return [...simd(0x0c), ...lane, ...lane, ...lane, ...lane];
}

/** Two copies of the float64 `v` as a v128 constant. */
function f64x2Const(v: number): number[] {
  const lane = Array.from(new Uint8Array(Float64Array.of(v).buffer));
  return [...simd(0x0c), ...lane, ...lane];
}

export const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  brIf: (d: number) => [0x0d, d],
  get: (i: number) => [0x20, i],
  set: (i: number) => [0x21, i],
  tee: (i: number) => [0x22, i],
  i32: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Shl: [0x74],
  i32ShrU: [0x76],
  i32LtU: [0x49],
  i32GeU: [0x4f],
  f32Store: (offset: number) => [0x38, ...memarg(2, offset)],
  load: (offset: number) => [...simd(0x00), ...memarg(2, offset)],
  /** Four uint16 widened to four uint32 lanes. */
  load16x4U: (offset: number) => [...simd(0x04), ...memarg(1, offset)],
  /** One 32-bit value copied to four lanes. */
  load32Splat: (offset: number) => [...simd(0x09), ...memarg(2, offset)],
  store: (offset: number) => [...simd(0x0b), ...memarg(2, offset)],
  /** One 64-bit value copied to both lanes. */
  load64Splat: (offset: number) => [...simd(0x0a), ...memarg(3, offset)],
  /** 64 bits into the low lane, the high lane zero. */
  load64Zero: (offset: number) => [...simd(0x5d), ...memarg(3, offset)],
  /** A v128 constant: two lanes of the float64 `v`. */
  constF64: f64x2Const,
  /** Bytes of two vectors picked by 16 lane indices (0-15 first, 16-31 second). */
  shuffle: (lanes: number[]) => [...simd(0x0d), ...lanes],
  f32x4ExtractLane: (lane: number) => [...simd(0x1f), lane],
  /** A v128 constant: four lanes of the 32-bit pattern (int bits or float bits). */
  const32: i32x4Const,
  splat: simd(0x13),
  and: simd(0x4e),
  or: simd(0x50),
  xor: simd(0x51),
  /** bitselect(a, b, mask) = (a & mask) | (b & ~mask). */
  bitselect: simd(0x52),
  anyTrue: simd(0x53),
  i8x16NarrowI16x8S: simd(0x65),
  i16x8NarrowI32x4S: simd(0x85),
  i16x8NarrowI32x4U: simd(0x86),
  i16x8ExtendLowI8x16S: simd(0x87),
  i16x8ExtendHighI8x16S: simd(0x88),
  i32x4ExtendLowI16x8S: simd(0xa7),
  i32x4ExtendHighI16x8S: simd(0xa8),
  i32x4Shl: simd(0xab),
  i32x4ShrU: simd(0xad),
  i32x4Add: simd(0xae),
  i32x4Sub: simd(0xb1),
  i32x4LtS: simd(0x39),
  i32x4GtS: simd(0x3b),
  i32x4GtU: simd(0x3c),
  ne: simd(0x42),
  add: simd(0xe4),
  mul: simd(0xe6),
  f32x4ConvertI32x4S: simd(0xfa),
  f32x4Abs: simd(0xe0),
  f32x4Max: simd(0xe9),
  f64x2PromoteLowF32x4: simd(0x5f),
  f64x2Floor: simd(0x75),
  f64x2Ge: simd(0x4c),
  f64x2Add: simd(0xf0),
  f64x2Sub: simd(0xf1),
  f64x2Mul: simd(0xf2),
  i32x4TruncSatF64x2SZero: simd(0xfc),
  v128Zero: i32x4Const(0),
};

export const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
export const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
export const str = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

/** Floats per loop iteration: four f32x4 vectors (unrolled: fewer branches per byte). */
export const SIMD_BLOCK_FLOATS = 16;
/** Bytes of float32 per loop iteration. */
export const STEP = SIMD_BLOCK_FLOATS * 4;

/**
 * A loop over `[first, first + n*4)` in 64-byte steps (n a multiple of 16): `end` = local
 * for the end address, `others` = [pointer local, bytes per iteration] advanced with
 * `first`, `body(k)` = the work on the k-th vector of an iteration (k = 0..3, at byte
 * offset 16k of `first`).
 */
export function loop64(
  first: number,
  n: number,
  end: number,
  others: [number, number][],
  body: (k: number) => number[],
): number[] {
  return [
    ...op.get(first),
    ...op.get(n),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.set(end),
    ...op.block,
    ...op.get(first),
    ...op.get(end),
    ...op.i32GeU,
    ...op.brIf(0),
    ...op.loop,
    ...[0, 1, 2, 3].flatMap(body),
    ...others.flatMap(([p, step]) => [...op.get(p), ...op.i32(step), ...op.i32Add, ...op.set(p)]),
    ...op.get(first),
    ...op.i32(STEP),
    ...op.i32Add,
    ...op.tee(first),
    ...op.get(end),
    ...op.i32LtU,
    ...op.brIf(0),
    ...op.end,
    ...op.end,
  ];
}

/** A function body: `locals` as [count, type] runs, then the code. */
export function fn(locals: [number, number][], body: number[]): number[] {
  const code = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...body, ...op.end];
  return [...uleb(code.length), ...code];
}
