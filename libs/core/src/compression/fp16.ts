/**
 * IEEE 754 binary16 conversion. Round to nearest even; finite values beyond the half
 * range saturate to +-65504 (a large gradient stays large instead of turning infinite),
 * while NaN and +-Infinity stay non-finite so the coordinator still refuses them.
 * Error bound: relative 2^-11 for |x| >= 2^-14 (normal halves); absolute 2^-25 below.
 */
export const FP16_MAX = 65504;

let table: Float32Array | undefined;

/** All 65,536 halves as float32: decoding is one table lookup per value. */
function halfTable(): Float32Array {
  if (table) return table;
  table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    table[h] =
      e === 0 ? sign * m * 2 ** -24 : e === 31 ? (m ? NaN : sign * Infinity) : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return table;
}

/** The binary16 bits of the float32 whose bits are `x`. */
export function halfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7bff;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return (half & 0x7fff) === 0x7c00 ? sign | 0x7bff : half;
}

/** Encodes `values` as halves into `out` (same length). */
export function encodeHalves(values: Float32Array, out: Uint16Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfBits(bits[i]!);
}

/** Decodes halves `h[from, to)` into `out[0, to - from)`. */
export function decodeHalves(h: Uint16Array, out: Float32Array, from = 0, to = h.length): void {
  const t = halfTable();
  for (let i = from; i < to; i++) out[i - from] = t[h[i]!]!;
}
