import { Accumulator, STAGE_FLOATS, STAGE_TAIL_AT } from '../math/accumulator.js';
import { SIMD_BLOCK_FLOATS } from '../math/simd-module.js';
import { INT8_BLOCK, decodeInt8, int8Blocks } from './int8.js';
import { simdScratch } from './simd-scratch.js';

/**
 * The int8 codec's decoders on the WebAssembly SIMD kernels: bit-identical to the scalar
 * `decodeInt8` of int8.ts (the reference and the fallback). A chunk of `STAGE_FLOATS`
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
