import { Accumulator, STAGE_FLOATS, STAGE_TAIL_AT } from '../math/accumulator.js';
import { SIMD_BLOCK_FLOATS } from '../math/simd-module.js';
import { INT8_BLOCK, blockMax, decodeInt8, encodeInt8, int8Blocks, int8Bytes, quantizeBlock } from './int8.js';
import { simdScratch } from './simd-scratch.js';

/**
 * The int8 codec on the WebAssembly SIMD kernels: bit-identical to the scalar
 * `encodeInt8`/`decodeInt8` of int8.ts (the reference and the fallback). A chunk of `STAGE_FLOATS`
 * values (block-aligned) is staged as [its block scales][its int8 values at
 * `Q_AT`]; the last `n % 16` values go through the scalar code.
 */

/** Stage byte where a chunk's int8 values start: after its STAGE_FLOATS / 256 scales (1 KiB). */
const Q_AT = (STAGE_FLOATS / INT8_BLOCK) * 4;
const whole = (n: number) => n - (n % SIMD_BLOCK_FLOATS);

/** Stages the scales and values `[i, i + m16)` of a payload of `n` values. */
function stageChunk(bytes: Uint8Array, payload: Uint8Array, n: number, i: number, to: number, m16: number): void {
  const b0 = i / INT8_BLOCK;
  bytes.set(payload.subarray(b0 * 4, Math.ceil(to / INT8_BLOCK) * 4));
  const q0 = int8Blocks(n) * 4 + i;
  bytes.set(payload.subarray(q0, q0 + m16), Q_AT);
}

/** Adds `decode(payload) * w` into `acc[offset, offset + n)` (see `BucketCodec.accumulate`). */
export function accumulateInt8(
  payload: Uint8Array,
  n: number,
  acc: Accumulator,
  offset: number,
  w: number,
  first: boolean,
  scale: number | undefined,
): boolean {
  const tail = acc.staging().subarray(STAGE_TAIL_AT);
  if (acc.holds(payload)) {
    // Received into the accumulator's memory: decoded and added where it lies.
    const n16 = whole(n);
    const q = payload.byteOffset + int8Blocks(n) * 4;
    let ok = acc.addEncoded('i8', offset, n16, w, first, scale, q, payload.byteOffset);
    if (n16 < n) {
      decodeInt8(payload, n, tail, n16, n);
      ok = acc.addStaged(offset + n16, n - n16, w, first, scale, STAGE_TAIL_AT) && ok;
    }
    return ok;
  }
  const bytes = acc.stagingBytes();
  let ok = true;
  for (let i = 0; i < n; i += STAGE_FLOATS) {
    const to = Math.min(n, i + STAGE_FLOATS);
    const m16 = whole(to - i);
    stageChunk(bytes, payload, n, i, to, m16);
    // A non-finite scale decodes to non-finite values, which the kernel's check reports.
    const at = acc.stagingAddress();
    ok = acc.addEncoded('i8', offset + i, m16, w, first, scale, at + Q_AT, at) && ok;
    if (i + m16 < to) {
      decodeInt8(payload, n, tail, i + m16, to);
      ok = acc.addStaged(offset + i + m16, to - i - m16, w, first, scale, STAGE_TAIL_AT) && ok;
    }
  }
  return ok;
}

/** `decodeInt8` of a whole payload of `out.length` values on the SIMD kernels. */
export function decodeInt8Simd(payload: Uint8Array, out: Float32Array): void {
  const n = out.length;
  const s = simdScratch();
  if (!s) return decodeInt8(payload, n, out);
  const scales = new Float32Array(payload.buffer, payload.byteOffset, int8Blocks(n));
  const bytes = s.stagingBytes();
  for (let i = 0; i < n; i += STAGE_FLOATS) {
    const to = Math.min(n, i + STAGE_FLOATS);
    const m16 = whole(to - i);
    // The scalar decoder writes NaN for a block with a non-finite scale: keep its exact bits.
    if (!scales.subarray(i / INT8_BLOCK, Math.ceil(to / INT8_BLOCK)).every(Number.isFinite)) {
      decodeInt8(payload, n, out.subarray(i), i, to);
      continue;
    }
    stageChunk(bytes, payload, n, i, to, m16);
    s.kernels!.copy_i8(0, s.stagingAddress() + Q_AT, s.stagingAddress(), m16, 1, 1);
    out.set(s.values.subarray(0, m16), i);
    if (i + m16 < to) decodeInt8(payload, n, out.subarray(i + m16), i + m16, to);
  }
}

/** Encoder stage layout: block maxima (float32) at 0, their inverse scales (float64) at ENC_INV_AT, int8 out at ENC_Q_AT. */
const ENC_BLOCKS = STAGE_FLOATS / INT8_BLOCK;
const ENC_INV_AT = ENC_BLOCKS * 4;
const ENC_Q_AT = ENC_INV_AT + ENC_BLOCKS * 8;

/** `encodeInt8` on the SIMD kernels: whole blocks in wasm, a ragged last block and NaN blocks in the scalar code. */
export function encodeInt8Simd(values: Float32Array, out: Uint8Array): number {
  const n = values.length;
  const full = n - (n % INT8_BLOCK);
  const s = simdScratch();
  if (!s || full === 0) return encodeInt8(values, out);
  const blocks = int8Blocks(n);
  const scales = new Float32Array(out.buffer, out.byteOffset, blocks);
  const q = new Int8Array(out.buffer, out.byteOffset + blocks * 4, n);
  const at = s.stagingAddress();
  const maxes = new Float32Array(s.values.buffer, at, ENC_BLOCKS);
  const invs = new Float64Array(s.values.buffer, at + ENC_INV_AT, ENC_BLOCKS);
  const qOut = new Int8Array(s.values.buffer, at + ENC_Q_AT, STAGE_FLOATS);
  for (let i = 0; i < full; i += STAGE_FLOATS) {
    const to = Math.min(full, i + STAGE_FLOATS);
    const nb = (to - i) / INT8_BLOCK;
    s.values.set(values.subarray(i, to));
    s.kernels!.blockMaxI8(at, 0, nb);
    for (let b = 0; b < nb; b++) {
      const lo = i + b * INT8_BLOCK;
      // A NaN maximum: the scalar code's, whose NaN bits the scale then carries.
      const max = maxes[b] === maxes[b] ? maxes[b]! : blockMax(values, lo, lo + INT8_BLOCK);
      const scale = max / 127;
      scales[lo / INT8_BLOCK] = scale;
      invs[b] = scale > 0 && Number.isFinite(scale) ? 1 / scale : 0;
    }
    s.kernels!.quantI8(at + ENC_Q_AT, 0, at + ENC_INV_AT, to - i);
    q.set(qOut.subarray(0, to - i), i);
  }
  if (full < n) {
    const scale = blockMax(values, full, n) / 127;
    scales[blocks - 1] = scale;
    quantizeBlock(values, full, n, scale, q);
  }
  return int8Bytes(n);
}
