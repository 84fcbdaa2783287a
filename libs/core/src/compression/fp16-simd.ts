import { Accumulator, STAGE_FLOATS, STAGE_TAIL_AT } from '../math/accumulator.js';
import { SIMD_BLOCK_FLOATS } from '../math/simd-module.js';
import { decodeHalves, encodeHalves, halfBits } from './fp16.js';
import { simdScratch } from './simd-scratch.js';

/**
 * The fp16 codec on the WebAssembly SIMD kernels: bit-identical to the scalar
 * `encodeHalves`/`decodeHalves` of fp16.ts (which stay the reference and the fallback).
 * Input is copied into wasm memory in L2-sized chunks; the last `n % 16` values go
 * through the scalar code.
 */

const whole = (n: number) => n - (n % SIMD_BLOCK_FLOATS);

/** Adds `decode(payload) * w` into `acc[offset, offset + n)` (see `BucketCodec.accumulate`). */
export function accumulateHalves(
  payload: Uint8Array,
  n: number,
  acc: Accumulator,
  offset: number,
  w: number,
  first: boolean,
  scale: number | undefined,
): boolean {
  const h = new Uint16Array(payload.buffer, payload.byteOffset, n);
  if (acc.holds(payload)) {
    // Received into the accumulator's memory: decoded and added where it lies.
    const n16 = whole(n);
    let ok = acc.addEncoded('f16', offset, n16, w, first, scale, payload.byteOffset);
    if (n16 < n) {
      decodeHalves(h, acc.staging().subarray(STAGE_TAIL_AT), n16, n);
      ok = acc.addStaged(offset + n16, n - n16, w, first, scale, STAGE_TAIL_AT) && ok;
    }
    return ok;
  }
  const bytes = acc.stagingBytes();
  const tail = acc.staging().subarray(STAGE_TAIL_AT);
  let ok = true;
  for (let i = 0; i < n; i += STAGE_FLOATS) {
    const to = Math.min(n, i + STAGE_FLOATS);
    const m16 = whole(to - i);
    bytes.set(payload.subarray(i * 2, (i + m16) * 2));
    ok = acc.addEncoded('f16', offset + i, m16, w, first, scale, acc.stagingAddress()) && ok;
    if (i + m16 < to) {
      decodeHalves(h, tail, i + m16, to);
      ok = acc.addStaged(offset + i + m16, to - i - m16, w, first, scale, STAGE_TAIL_AT) && ok;
    }
  }
  return ok;
}

/** `encodeHalves` on the SIMD kernels. */
export function encodeHalvesSimd(values: Float32Array, out: Uint16Array): void {
  const s = simdScratch();
  if (!s) return encodeHalves(values, out);
  const halves = new Uint16Array(s.values.buffer, s.stagingAddress(), STAGE_FLOATS);
  const n = values.length;
  for (let i = 0; i < n; i += STAGE_FLOATS) {
    const to = Math.min(n, i + STAGE_FLOATS);
    const m16 = whole(to - i);
    s.values.set(values.subarray(i, i + m16));
    s.kernels!.encodeF16(s.stagingAddress(), 0, m16);
    out.set(halves.subarray(0, m16), i);
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  for (let i = whole(n); i < n; i++) out[i] = halfBits(bits[i]!);
}

/** `decodeHalves` of a whole payload on the SIMD kernels. */
export function decodeHalvesSimd(h: Uint16Array, out: Float32Array): void {
  const s = simdScratch();
  if (!s) return decodeHalves(h, out);
  const bytes = s.stagingBytes();
  const hb = new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  const n = h.length;
  for (let i = 0; i < n; i += STAGE_FLOATS) {
    const to = Math.min(n, i + STAGE_FLOATS);
    const m16 = whole(to - i);
    bytes.set(hb.subarray(i * 2, (i + m16) * 2));
    s.kernels!.copy_f16(0, s.stagingAddress(), 0, m16, 1, 1);
    out.set(s.values.subarray(0, m16), i);
  }
  decodeHalves(h, out.subarray(whole(n)), whole(n), n);
}
