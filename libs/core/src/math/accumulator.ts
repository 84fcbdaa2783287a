import { SIMD_BLOCK_FLOATS, instantiateSimdKernels, type SimdKernels } from './simd-module.js';

/**
 * Floats staged per kernel call: 64 Ki floats (256 KiB) stay in L2 between the copy into
 * wasm memory and the add, so the staging copy costs a cache write rather than a trip to
 * memory (measured on this machine: 16 Ki, 64 Ki and 256 Ki floats give 0.37, 0.41 and
 * 0.43 of copy bandwidth on 100 MB vectors; 64 Ki is best on 4 MB ones).
 */
export const STAGE_FLOATS = 64 * 1024;
const WASM_PAGE_BYTES = 65_536;

/**
 * A float32 accumulator in WebAssembly memory, added to with SIMD kernels (JS loops where
 * WebAssembly SIMD is missing). Inputs outside wasm memory are staged through an
 * L2-sized buffer; decoders write straight into `staging()` instead.
 */
export class Accumulator {
  readonly values: Float32Array;
  readonly simd: boolean;
  private readonly stage: Float32Array;
  private readonly k: SimdKernels | undefined;

  constructor(readonly size: number) {
    const bytes = (size + STAGE_FLOATS) * 4;
    const memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(bytes / WASM_PAGE_BYTES)) });
    this.k = instantiateSimdKernels(memory);
    this.simd = this.k !== undefined;
    this.values = new Float32Array(memory.buffer, 0, size);
    this.stage = new Float32Array(memory.buffer, size * 4, STAGE_FLOATS);
  }

  /** The staging region (`STAGE_FLOATS` long) a decoder fills before `addStaged`. */
  staging(): Float32Array {
    return this.stage;
  }

  /**
   * `values[offset + i] (=|+=) g[i] * w` for `g` anywhere in memory, then `*= scale`
   * when given (the last add of a step folds the mean in). Returns false when `g` holds
   * NaN or Infinity (the accumulator is then spoiled; the caller drops the step).
   */
  add(offset: number, g: Float32Array, w: number, first: boolean, scale?: number): boolean {
    let ok = true;
    for (let i = 0; i < g.length; i += STAGE_FLOATS) {
      const part = g.subarray(i, Math.min(g.length, i + STAGE_FLOATS));
      this.stage.set(part);
      ok = this.addStaged(offset + i, part.length, w, first, scale) && ok;
    }
    return ok;
  }

  /** Adds the first `n` staged floats at `offset` (see `add`); false when one is not finite. */
  addStaged(offset: number, n: number, weight: number, first: boolean, scale?: number): boolean {
    // A first-and-last add (one contributor) folds the scale into the weight.
    const w = Math.fround(first && scale !== undefined ? weight * scale : weight);
    const s = scale === undefined || first ? undefined : Math.fround(scale);
    const n16 = n - (n % SIMD_BLOCK_FLOATS);
    let bad = 0;
    if (this.k) {
      const accPtr = offset * 4;
      const stagePtr = this.stage.byteOffset;
      bad = first
        ? this.k.assign(accPtr, stagePtr, n16, w)
        : s === undefined
          ? this.k.axpy(accPtr, stagePtr, n16, w)
          : this.k.axpyScale(accPtr, stagePtr, n16, w, s);
    } else {
      bad = jsAdd(this.values, offset, this.stage, 0, n16, w, first, s);
    }
    return (bad | jsAdd(this.values, offset + n16, this.stage, n16, n, w, first, s)) === 0;
  }

  /** `values[offset + idx[j]] += v[j] * w`; false when a value is not finite. */
  addSparse(offset: number, idx: Uint32Array, v: Float32Array, w: number): boolean {
    let probe = 0;
    for (let j = 0; j < idx.length; j++) {
      const x = v[j]!;
      probe += x * 0;
      this.values[offset + idx[j]!]! += Math.fround(x * w);
    }
    return probe === 0;
  }

  /** `values[offset .. offset + n) *= s`. */
  scale(offset: number, n: number, factor: number): void {
    const s = Math.fround(factor);
    const n16 = n - (n % SIMD_BLOCK_FLOATS);
    if (this.k) this.k.scale(offset * 4, n16, s);
    else for (let i = offset; i < offset + n16; i++) this.values[i]! *= s;
    for (let i = offset + n16; i < offset + n; i++) this.values[i]! *= s;
  }
}

/** Scalar kernel: dst[at + i] (=|+=) src[i] * w (then *= s) for i in [from, to); returns 1 when a value is not finite. */
function jsAdd(
  dst: Float32Array,
  at: number,
  src: Float32Array,
  from: number,
  to: number,
  w: number,
  first: boolean,
  s: number | undefined,
): number {
  let probe = 0;
  for (let i = from; i < to; i++) {
    const x = src[i]!;
    probe += x * 0;
    const p = Math.fround(x * w); // float32 ops exactly as the SIMD kernel does them
    const v = first ? p : Math.fround(dst[at + i - from]! + p);
    dst[at + i - from] = s === undefined ? v : v * s;
  }
  return probe === 0 ? 0 : 1;
}
