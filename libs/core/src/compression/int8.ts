/**
 * Block-scaled int8 quantisation: every block of `INT8_BLOCK` values shares one float32
 * scale (its largest magnitude / 127) and each value is rounded to the nearest multiple.
 * One scale per bucket would let a layer of large gradients crush the small ones of the
 * next layer to zero; 256-value blocks keep that local at 1.6 % extra bytes.
 * Layout: [float32 scale x blocks][int8 x n]. Error bound: |x - q| <= scale / 2 =
 * max|block| / 254 (for |x| < 1e38). A non-finite value makes its block's scale non-finite, so the
 * decoded block is NaN and the coordinator still refuses it.
 */
export const INT8_BLOCK = 256;

export function int8Blocks(n: number): number {
  return Math.ceil(n / INT8_BLOCK);
}

export function int8Bytes(n: number): number {
  return int8Blocks(n) * 4 + n;
}

/** The largest magnitude of `values[lo, hi)`, NaN when one is NaN (the block's scale is this / 127). */
export function blockMax(values: Float32Array, lo: number, hi: number): number {
  let max = 0;
  for (let i = lo; i < hi; i++) {
    const a = Math.abs(values[i]!);
    max = a > max || a !== a ? a : max;
  }
  return max;
}

/** Rounds `values[lo, hi)` to the nearest multiples of `scale` into `q[lo, hi)` (0 for a zero or non-finite scale). */
export function quantizeBlock(values: Float32Array, lo: number, hi: number, scale: number, q: Int8Array): void {
  const inv = scale > 0 && Number.isFinite(scale) ? 1 / scale : 0;
  for (let i = lo; i < hi; i++) q[i] = Math.round(values[i]! * inv);
}

/** Encodes `values` into `out` (at least `int8Bytes(values.length)` bytes, 4-aligned). */
export function encodeInt8(values: Float32Array, out: Uint8Array): number {
  const n = values.length;
  const blocks = int8Blocks(n);
  const scales = new Float32Array(out.buffer, out.byteOffset, blocks);
  const q = new Int8Array(out.buffer, out.byteOffset + blocks * 4, n);
  for (let b = 0; b < blocks; b++) {
    const lo = b * INT8_BLOCK;
    const hi = Math.min(n, lo + INT8_BLOCK);
    const scale = blockMax(values, lo, hi) / 127;
    scales[b] = scale;
    quantizeBlock(values, lo, hi, scale, q);
  }
  return int8Bytes(n);
}

/** Decodes values `[from, to)` (block-aligned `from`) of an int8 payload of `n` values into `out`. */
export function decodeInt8(payload: Uint8Array, n: number, out: Float32Array, from = 0, to = n): void {
  const blocks = int8Blocks(n);
  const scales = new Float32Array(payload.buffer, payload.byteOffset, blocks);
  const q = new Int8Array(payload.buffer, payload.byteOffset + blocks * 4, n);
  for (let i = from; i < to; i++) {
    const s = scales[(i / INT8_BLOCK) | 0]!;
    out[i - from] = Number.isFinite(s) ? q[i]! * s : NaN;
  }
}
