import { blockMaxI8Body, quantI8Body } from './simd-int8-encode.js';
import { F32, I32, V128, fn, loop64, op, section, str, vec } from './wasm-assembler.js';

export { SIMD_BLOCK_FLOATS } from './wasm-assembler.js';

/**
 * The bytes of a small WebAssembly module with SIMD (f32x4) kernels for gradient
 * arithmetic and the fp16/int8 codecs, assembled here so the build needs no wasm
 * toolchain. Every kernel works on `n16` values (a multiple of 16, the caller handles the
 * tail) at byte addresses in the imported memory. V8 does not vectorise plain JS loops;
 * these kernels do four lanes per instruction (see `npm run bench`).
 *
 * Adds, one per input format (`f32`; `f16` halves; `i8` block-scaled int8 with its
 * float32 scales at `aux`, one per 256 values, `src` block-aligned) and mode:
 *
 *   assign      acc[i] = g[i] * w              (first add of a step: no zero-fill pass)
 *   axpy        acc[i] += g[i] * w
 *   axpyScale   acc[i] = (acc[i] + g[i] * w) * s   (last add, the mean folded in)
 *   assignScale acc[i] = (g[i] * w) * s            (the only add, the mean folded in)
 *   copy        acc[i] = g[i]                   (decoding an update)
 *
 * each rounding to float32 after every operation, exactly as the scalar codecs and
 * `finishBucket`'s separate scale pass do: results are bit-identical to them. The adds
 * return 1 when some g[i] was NaN or +-Infinity: the finiteness check rides in the same
 * pass (g * 0 is 0 exactly for finite g), so a gradient is read once. The accumulator is
 * then spoiled, which is fine: a step that saw a bad gradient is abandoned and its slices
 * retried (docs/architecture.md).
 *
 *   scale(acc, n, s)           acc[i] *= s
 *   encodeF16(dst, src, n)     halves of src's floats (round to nearest even, saturating)
 *   blockMaxI8, quantI8        the int8 encoder (simd-int8-encode.ts)
 */

export type SimdFormat = 'f32' | 'f16' | 'i8';
export type SimdMode = 'assign' | 'axpy' | 'axpyScale' | 'assignScale' | 'copy';
const FORMATS: SimdFormat[] = ['f32', 'f16', 'i8'];
const MODES: SimdMode[] = ['assign', 'axpy', 'axpyScale', 'assignScale', 'copy'];
/** Bytes of input per 16 values. */
const SRC_STEP: Record<SimdFormat, number> = { f32: 64, f16: 32, i8: 16 };

// Add kernels: params acc = 0, src = 1, aux = 2, n = 3, w = 4, s = 5; locals below.
const [ACC, SRC, AUX, N, W, S] = [0, 1, 2, 3, 4, 5];
const [END, BASE] = [6, 7];
const [WV, SV, GV, PROBE, Q, T] = [8, 9, 10, 11, 12, 13];

/** fp16 bits (zero-extended in i32 lanes, in local T) to float32, exactly. */
function halfToFloat(canonicalNaN: boolean): number[] {
  return [
    ...op.get(T),
    ...op.const32(0x7fff),
    ...op.and,
    ...op.set(Q), // Q = exponent and mantissa
    // Normal and subnormal halves: the bits shifted into place are a float 2^112 too small.
    ...op.get(Q),
    ...op.i32(13),
    ...op.i32x4Shl,
    ...op.const32(0x77800000), // 2^112
    ...op.mul,
    // Infinity and NaN: all exponent bits set.
    ...op.get(Q),
    ...op.const32(0x7bff),
    ...op.i32x4GtS,
    ...op.const32(0x7f800000),
    ...op.and,
    ...op.or,
    ...op.get(T),
    ...op.i32(16),
    ...op.i32x4Shl,
    ...op.const32(0x80000000 | 0),
    ...op.and,
    ...op.or,
    // A decoded update's NaN as the scalar table has it (0x7fc00000), whatever its payload.
    ...(canonicalNaN
      ? [
          ...op.set(GV),
          ...op.const32(0x7fc00000),
          ...op.get(GV),
          ...op.get(Q),
          ...op.const32(0x7c00),
          ...op.i32x4GtS,
          ...op.bitselect,
        ]
      : []),
  ];
}

const I8_EXTEND = [
  [op.i16x8ExtendLowI8x16S, op.i32x4ExtendLowI16x8S],
  [op.i16x8ExtendLowI8x16S, op.i32x4ExtendHighI16x8S],
  [op.i16x8ExtendHighI8x16S, op.i32x4ExtendLowI16x8S],
  [op.i16x8ExtendHighI8x16S, op.i32x4ExtendHighI16x8S],
];

/** Code leaving the k-th input vector of an iteration (4 floats) on the stack. */
function loadG(format: SimdFormat, mode: SimdMode, k: number): number[] {
  switch (format) {
    case 'f32':
      return [...op.get(SRC), ...op.load(16 * k)];
    case 'f16':
      return [...op.get(SRC), ...op.load16x4U(8 * k), ...op.set(T), ...halfToFloat(mode === 'copy')];
    case 'i8':
      return [
        // 16 int8 per iteration; the block's scale (one per 256 values) at k = 0.
        ...(k === 0
          ? [
              ...op.get(SRC),
              ...op.load(0),
              ...op.set(Q),
              ...op.get(AUX),
              ...op.get(SRC),
              ...op.get(BASE),
              ...op.i32Sub,
              ...op.i32(8),
              ...op.i32ShrU,
              ...op.i32(2),
              ...op.i32Shl,
              ...op.i32Add,
              ...op.load32Splat(0),
              ...op.set(T),
            ]
          : []),
        ...op.get(Q),
        ...I8_EXTEND[k]![0]!,
        ...I8_EXTEND[k]![1]!,
        ...op.f32x4ConvertI32x4S,
        ...op.get(T),
        ...op.mul,
      ];
  }
}

function addBody(format: SimdFormat, mode: SimdMode): number[] {
  const keepAcc = mode === 'axpy' || mode === 'axpyScale';
  const scaled = mode === 'axpyScale' || mode === 'assignScale';
  const weighted = mode !== 'copy';
  return fn(
    [
      [2, I32],
      [6, V128],
    ],
    [
      ...op.get(W),
      ...op.splat,
      ...op.set(WV),
      ...op.get(S),
      ...op.splat,
      ...op.set(SV),
      ...op.v128Zero,
      ...op.set(PROBE),
      ...op.get(SRC),
      ...op.set(BASE),
      ...loop64(ACC, N, END, [[SRC, SRC_STEP[format]]], (k) => [
        ...loadG(format, mode, k),
        ...op.set(GV),
        ...op.get(PROBE),
        ...op.get(GV),
        ...op.v128Zero,
        ...op.mul,
        ...op.add,
        ...op.set(PROBE),
        ...op.get(ACC),
        ...(keepAcc ? [...op.get(ACC), ...op.load(16 * k)] : []),
        ...op.get(GV),
        ...(weighted ? [...op.get(WV), ...op.mul] : []),
        ...(keepAcc ? op.add : []),
        ...(scaled ? [...op.get(SV), ...op.mul] : []),
        ...op.store(16 * k),
      ]),
      ...op.get(PROBE),
      ...op.get(PROBE),
      ...op.ne,
      ...op.anyTrue,
    ],
  );
}

// scale: acc = 0, n = 1, s = 2; end = 3, sv = 4
const scaleBody = fn(
  [
    [1, I32],
    [1, V128],
  ],
  [
    ...op.get(2),
    ...op.splat,
    ...op.set(4),
    ...loop64(0, 1, 3, [], (k) => [
      ...op.get(0),
      ...op.get(0),
      ...op.load(16 * k),
      ...op.get(4),
      ...op.mul,
      ...op.store(16 * k),
    ]),
  ],
);

/**
 * encodeF16: dst = 0, src = 1, n = 2; end = 3; x, sign, a, r = 4..7, h0..h3 = 8..11.
 * Float32 bits to binary16 (F. Giesen's round-to-nearest-even conversion), then finite
 * values that round past 65504 saturate to it and NaN keeps a quiet-NaN bit, as
 * `halfBits` does.
 */
const encodeF16Body = (() => {
  const [dst, src, n, end, x, sign, a, r] = [0, 1, 2, 3, 4, 5, 6, 7];
  const h = (k: number) => 8 + k;
  const half = (k: number) => [
    ...op.get(src),
    ...op.load(16 * k),
    ...op.set(x),
    ...op.get(x),
    ...op.const32(0x80000000 | 0),
    ...op.and,
    ...op.set(sign),
    ...op.get(x),
    ...op.get(sign),
    ...op.xor,
    ...op.set(a),
    // Below 2^-14 (half subnormals and zero): adding 0.5 rounds to a multiple of 2^-24.
    ...op.get(a),
    ...op.const32(0x3f000000),
    ...op.add,
    ...op.const32(0x3f000000),
    ...op.i32x4Sub,
    // Normal: rebias the exponent, round the 13 dropped bits to nearest even.
    ...op.get(a),
    ...op.const32(0xc8000fff | 0),
    ...op.i32x4Add,
    ...op.get(a),
    ...op.i32(13),
    ...op.i32x4ShrU,
    ...op.const32(1),
    ...op.and,
    ...op.i32x4Add,
    ...op.i32(13),
    ...op.i32x4ShrU,
    ...op.get(a),
    ...op.const32(113 << 23),
    ...op.i32x4LtS,
    ...op.bitselect,
    ...op.set(r),
    // Finite overflow (also past the top binade, where the sum wraps) saturates to 65504.
    ...op.const32(0x7bff),
    ...op.get(r),
    ...op.get(r),
    ...op.const32(0x7bff),
    ...op.i32x4GtU,
    ...op.bitselect,
    ...op.set(r),
    // Infinity -> 0x7c00, NaN -> 0x7e00.
    ...op.const32(0x7c00),
    ...op.get(a),
    ...op.const32(0x7f800000),
    ...op.i32x4GtS,
    ...op.const32(0x200),
    ...op.and,
    ...op.or,
    ...op.get(r),
    ...op.get(a),
    ...op.const32(0x7f7fffff),
    ...op.i32x4GtS,
    ...op.bitselect,
    ...op.get(sign),
    ...op.i32(16),
    ...op.i32x4ShrU,
    ...op.or,
    ...op.set(h(k)),
    ...(k % 2 === 1
      ? [...op.get(dst), ...op.get(h(k - 1)), ...op.get(h(k)), ...op.i16x8NarrowI32x4U, ...op.store(16 * (k >> 1))]
      : []),
  ];
  return fn(
    [
      [1, I32],
      [8, V128],
    ],
    loop64(src, n, end, [[dst, 32]], half),
  );
})();

const addNames = FORMATS.flatMap((f) => MODES.map((m) => [f, m] as const));
const types = vec([
  [0x60, ...vec([[I32], [I32], [I32], [I32], [F32], [F32]]), 1, I32], // adds
  [0x60, ...vec([[I32], [I32], [F32]]), 0], // scale
  [0x60, ...vec([[I32], [I32], [I32]]), 0], // encodeF16, blockMaxI8
  [0x60, ...vec([[I32], [I32], [I32], [I32]]), 0], // quantI8
]);
const exportsList: [string, number][] = [
  ...addNames.map(([f, m], i): [string, number] => [`${m}_${f}`, i]),
  ['scale', addNames.length],
  ['encodeF16', addNames.length + 1],
  ['blockMaxI8', addNames.length + 2],
  ['quantI8', addNames.length + 3],
];

/** The module's bytes: imports `env.memory`, exports the kernels above. */
export const SIMD_MODULE_BYTES = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  ...section(1, types),
  ...section(2, vec([[...str('env'), ...str('memory'), 0x02, 0x00, 0x01]])),
  ...section(3, vec([...addNames.map(() => [0]), [1], [2], [2], [3]])),
  ...section(7, vec(exportsList.map(([name, i]) => [...str(name), 0x00, i]))),
  ...section(
    10,
    vec([...addNames.map(([f, m]) => addBody(f, m)), scaleBody, encodeF16Body, blockMaxI8Body, quantI8Body]),
  ),
]);

/** `acc`, `src`, `aux`: byte addresses; `n16`: values (a multiple of 16); returns 1 when a value was not finite. */
export type AddKernel = (acc: number, src: number, aux: number, n16: number, w: number, s: number) => number;

export type SimdKernels = Record<`${SimdMode}_${SimdFormat}`, AddKernel> & {
  scale(acc: number, n16: number, s: number): void;
  encodeF16(dst: number, src: number, n16: number): void;
  blockMaxI8(dst: number, src: number, blocks: number): void;
  quantI8(dst: number, src: number, inv: number, n16: number): void;
};

let compiled: WebAssembly.Module | null | undefined;

/** Instantiates the kernels over `memory`; undefined where WebAssembly SIMD is unavailable. */
export function instantiateSimdKernels(memory: WebAssembly.Memory): SimdKernels | undefined {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(SIMD_MODULE_BYTES);
    } catch {
      compiled = null;
    }
  }
  if (!compiled) return undefined;
  return new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as SimdKernels;
}
