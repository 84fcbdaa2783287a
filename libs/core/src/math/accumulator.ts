import { SIMD_BLOCK_FLOATS, instantiateSimdKernels, type SimdFormat, type SimdKernels } from './simd-module.js';

/**
 * Floats staged per kernel call: 64 Ki floats (256 KiB) stay in L2 between the copy into
 * wasm memory and the add, so the staging copy costs a cache write rather than a trip to
 * memory (measured on this machine: 16 Ki, 64 Ki and 256 Ki floats give 0.37, 0.41 and
 * 0.43 of copy bandwidth on 100 MB vectors; 64 Ki is best on 4 MB ones).
 */
export const STAGE_FLOATS = 64 * 1024;
/** Stage float index where a decoder puts the scalar-decoded tail (under 16 values) of an encoded chunk. */
export const STAGE_TAIL_AT = STAGE_FLOATS - SIMD_BLOCK_FLOATS;
const WASM_PAGE_BYTES = 65_536;
/** WebAssembly memory (32-bit addresses) tops out at 4 GiB; V8 allows up to that. */
const MAX_MEMORY_BYTES = 65_536 * WASM_PAGE_BYTES;

/**
 * A float32 accumulator in WebAssembly memory, added to with SIMD kernels (JS loops where
 * WebAssembly SIMD is missing). Inputs outside wasm memory are staged through an
 * L2-sized buffer; decoders copy their encoded bytes there (`stagingBytes`) and add them
 * with `addEncoded`, or write floats into `staging()` for `addStaged`.
 *
 * Staging costs a full extra pass over every input: measured on this machine, copying a
 * bucket from main memory into the stage takes about as long as the add itself, so a
 * staged reducer runs at about half the speed of the add alone (docs/benchmarks.md). An
 * input that already lies in this accumulator's memory (`receive()`, `receiveBytes` long:
 * a receive buffer for the data plane, e.g. net.Socket's `onread` buffer) is added in
 * place, with no copy.
 */
export class Accumulator {
  readonly values: Float32Array;
  readonly simd: boolean;
  /** The kernels over this accumulator's memory (undefined without WebAssembly SIMD). */
  readonly kernels: SimdKernels | undefined;
  private readonly stage: Float32Array;
  private readonly stageBytes: Uint8Array;
  private readonly receiveRegion: Uint8Array;

  constructor(
    readonly size: number,
    receiveBytes = 0,
  ) {
    if (!Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(receiveBytes) || receiveBytes < 0)
      throw new RangeError(`accumulator of ${size} floats and ${receiveBytes} receive bytes: both must be whole`);
    const receiveAt = (size + STAGE_FLOATS) * 4;
    const bytes = receiveAt + Math.ceil(receiveBytes / 4) * 4;
    if (bytes > MAX_MEMORY_BYTES)
      throw new RangeError(`accumulator of ${bytes} bytes: WebAssembly memory holds at most ${MAX_MEMORY_BYTES}`);
    const memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(bytes / WASM_PAGE_BYTES)) });
    this.kernels = instantiateSimdKernels(memory);
    this.simd = this.kernels !== undefined;
    this.values = new Float32Array(memory.buffer, 0, size);
    this.stage = new Float32Array(memory.buffer, size * 4, STAGE_FLOATS);
    this.stageBytes = new Uint8Array(memory.buffer, size * 4, STAGE_FLOATS * 4);
    this.receiveRegion = new Uint8Array(memory.buffer, receiveAt, receiveBytes);
  }

  /** The receive region (`receiveBytes` long, 4-aligned): inputs written here are added without staging. */
  receive(): Uint8Array {
    return this.receiveRegion;
  }

  /** True when `view` lies in this accumulator's wasm memory (a kernel can read it in place). */
  holds(view: ArrayBufferView): boolean {
    return this.kernels !== undefined && view.buffer === this.values.buffer;
  }

  /** The staging region (`STAGE_FLOATS` long) a decoder fills before `addStaged`. */
  staging(): Float32Array {
    return this.stage;
  }

  /** The same staging region as bytes (wasm byte address `stagingAddress()`), for encoded input. */
  stagingBytes(): Uint8Array {
    return this.stageBytes;
  }

  stagingAddress(): number {
    return this.stageBytes.byteOffset;
  }

  /**
   * `values[offset + i] (=|+=) g[i] * w` for `g` anywhere in memory, then `*= scale`
   * when given (the last add of a step folds the mean in). Returns false when `g` holds
   * NaN or Infinity (the accumulator is then spoiled; the caller drops the step).
   */
  add(offset: number, g: Float32Array, w: number, first: boolean, scale?: number): boolean {
    if (this.holds(g)) return this.addInPlace(offset, g, w, first, scale);
    let ok = true;
    for (let i = 0; i < g.length; i += STAGE_FLOATS) {
      const part = g.subarray(i, Math.min(g.length, i + STAGE_FLOATS));
      this.stage.set(part);
      ok = this.addStaged(offset + i, part.length, w, first, scale) && ok;
    }
    return ok;
  }

  /**
   * Adds the `n` staged floats from stage index `from` at `offset` (see `add`); false when
   * one is not finite. Every operation rounds to float32 exactly as the SIMD kernels do.
   */
  addStaged(offset: number, n: number, weight: number, first: boolean, scale?: number, from = 0): boolean {
    const w = Math.fround(weight);
    const s = scale === undefined ? undefined : Math.fround(scale);
    const n16 = n - (n % SIMD_BLOCK_FLOATS);
    let bad = 0;
    if (this.kernels) {
      bad = this.kernels[`${modeOf(first, s)}_f32`](offset * 4, this.stage.byteOffset + from * 4, 0, n16, w, s ?? 1);
    } else {
      bad = jsAdd(this.values, offset, this.stage, from, from + n16, w, first, s);
    }
    return (bad | jsAdd(this.values, offset + n16, this.stage, from + n16, from + n, w, first, s)) === 0;
  }

  /** `add` for a `g` in this accumulator's memory: the kernel reads it where it lies. */
  private addInPlace(offset: number, g: Float32Array, weight: number, first: boolean, scale?: number): boolean {
    const n = g.length;
    const n16 = n - (n % SIMD_BLOCK_FLOATS);
    const w = Math.fround(weight);
    const s = scale === undefined ? undefined : Math.fround(scale);
    const bad = this.kernels![`${modeOf(first, s)}_f32`](offset * 4, g.byteOffset, 0, n16, w, s ?? 1);
    return (bad | jsAdd(this.values, offset + n16, g, n16, n, w, first, s)) === 0;
  }

  /**
   * SIMD only: adds `n16` values (a multiple of 16) encoded as `format` at wasm byte
   * address `src` (int8: block scales at address `aux`, `src` at a block start), as `add`
   * does; false when one is not finite. Addresses: `stagingAddress()`, or the
   * `byteOffset` of a view this accumulator `holds`.
   */
  addEncoded(
    format: Exclude<SimdFormat, 'f32'>,
    offset: number,
    n16: number,
    weight: number,
    first: boolean,
    scale: number | undefined,
    src: number,
    aux = 0,
  ): boolean {
    if (!this.kernels) throw new Error('addEncoded needs WebAssembly SIMD: check `simd` first');
    const s = scale === undefined ? undefined : Math.fround(scale);
    const kernel = this.kernels[`${modeOf(first, s)}_${format}`];
    return kernel(offset * 4, src, aux, n16, Math.fround(weight), s ?? 1) === 0;
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
    if (this.kernels) this.kernels.scale(offset * 4, n16, s);
    else for (let i = offset; i < offset + n16; i++) this.values[i]! *= s;
    for (let i = offset + n16; i < offset + n; i++) this.values[i]! *= s;
  }
}

function modeOf(first: boolean, s: number | undefined): 'assign' | 'axpy' | 'axpyScale' | 'assignScale' {
  if (first) return s === undefined ? 'assign' : 'assignScale';
  return s === undefined ? 'axpy' : 'axpyScale';
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
