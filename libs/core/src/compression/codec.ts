import type { Accumulator } from '../math/accumulator.js';
import { STAGE_FLOATS } from '../math/accumulator.js';
import { ProtocolError } from '../protocol/protocol-error.js';
import { decodeHalves } from './fp16.js';
import { accumulateHalves, decodeHalvesSimd, encodeHalvesSimd } from './fp16-simd.js';
import { decodeInt8, int8Bytes } from './int8.js';
import { accumulateInt8, decodeInt8Simd, encodeInt8Simd } from './int8-simd.js';
import {
  countNonZeros,
  selectTopK,
  sparseBytes,
  sparseViews,
  topkCount,
  topkUpdateBytes,
  writeNonZeros,
} from './topk.js';

/** How gradients travel (job spec `compression`); see docs/protocol.md for the layouts. */
export const COMPRESSIONS = ['none', 'fp16', 'int8', 'topk'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/**
 * Encoding of one bucket of gradient values, both ways. `encode` is the worker's side
 * (for top-k it zeroes the entries it sends, leaving the error-feedback residual);
 * `accumulate` is the coordinator's (decode straight into the accumulator, weighted);
 * `encodeUpdate`/`decode` carry the averaged result back.
 */
export interface BucketCodec {
  readonly name: Compression;
  /** True when the payload lists (index, value) pairs: the accumulator must start at zero. */
  readonly sparse: boolean;
  /** Bytes a worker's encoded bucket of `n` values takes (fixed per bucket). */
  gradientBytes(n: number): number;
  encode(values: Float32Array, out: Uint8Array): void;
  /**
   * Adds `decode(payload) * w` into `acc[offset, offset + n)`, then multiplies by `scale`
   * when given (dense codecs only); false when a value is not finite.
   */
  accumulate(
    payload: Uint8Array,
    n: number,
    acc: Accumulator,
    offset: number,
    w: number,
    first: boolean,
    scale?: number,
  ): boolean;
  /** Bytes the averaged bucket `values` takes once encoded. */
  updateBytes(values: Float32Array): number;
  encodeUpdate(values: Float32Array, out: Uint8Array): void;
  /** Decodes a bucket of `out.length` values (zeros where a sparse payload has none). */
  decode(payload: Uint8Array, out: Float32Array): void;
}

function expectBytes(payload: Uint8Array, bytes: number, what: string): void {
  if (payload.byteLength !== bytes)
    throw new ProtocolError(
      'GRADIENT_SIZE_MISMATCH',
      `${what} bucket of ${payload.byteLength} bytes, expected ${bytes}`,
    );
}

/** Feeds a decoder's output through the accumulator's staging buffer in L2-sized pieces. */
function staged(
  acc: Accumulator,
  offset: number,
  n: number,
  w: number,
  first: boolean,
  scale: number | undefined,
  decode: (out: Float32Array, from: number, to: number) => void,
): boolean {
  let ok = true;
  const stage = acc.staging();
  for (let i = 0; i < n; i += STAGE_FLOATS) {
    const to = Math.min(n, i + STAGE_FLOATS);
    decode(stage, i, to);
    ok = acc.addStaged(offset + i, to - i, w, first, scale) && ok;
  }
  return ok;
}

const float32Of = (p: Uint8Array) => new Float32Array(p.buffer, p.byteOffset, p.byteLength / 4);
const uint16Of = (p: Uint8Array) => new Uint16Array(p.buffer, p.byteOffset, p.byteLength / 2);

const none: BucketCodec = {
  name: 'none',
  sparse: false,
  gradientBytes: (n) => n * 4,
  encode: (values, out) => float32Of(out).set(values),
  accumulate(payload, n, acc, offset, w, first, scale) {
    expectBytes(payload, n * 4, 'float32');
    return acc.add(offset, float32Of(payload), w, first, scale);
  },
  updateBytes: (values) => values.length * 4,
  encodeUpdate: (values, out) => float32Of(out).set(values),
  decode: (payload, out) => out.set(float32Of(payload)),
};

const fp16: BucketCodec = {
  name: 'fp16',
  sparse: false,
  gradientBytes: (n) => n * 2,
  encode: (values, out) => encodeHalvesSimd(values, uint16Of(out)),
  accumulate(payload, n, acc, offset, w, first, scale) {
    expectBytes(payload, n * 2, 'fp16');
    if (acc.simd) return accumulateHalves(payload, n, acc, offset, w, first, scale);
    const h = uint16Of(payload);
    return staged(acc, offset, n, w, first, scale, (out, from, to) => decodeHalves(h, out, from, to));
  },
  updateBytes: (values) => values.length * 2,
  encodeUpdate: (values, out) => encodeHalvesSimd(values, uint16Of(out)),
  decode: (payload, out) => decodeHalvesSimd(uint16Of(payload), out),
};

const int8: BucketCodec = {
  name: 'int8',
  sparse: false,
  gradientBytes: int8Bytes,
  encode: (values, out) => void encodeInt8Simd(values, out),
  accumulate(payload, n, acc, offset, w, first, scale) {
    expectBytes(payload, int8Bytes(n), 'int8');
    if (acc.simd) return accumulateInt8(payload, n, acc, offset, w, first, scale);
    return staged(acc, offset, n, w, first, scale, (out, from, to) => decodeInt8(payload, n, out, from, to));
  },
  updateBytes: (values) => int8Bytes(values.length),
  encodeUpdate: (values, out) => void encodeInt8Simd(values, out),
  decode: (payload, out) => decodeInt8Simd(payload, out),
};

function topk(ratio: number): BucketCodec {
  return {
    name: 'topk',
    sparse: true,
    gradientBytes: (n) => sparseBytes(topkCount(n, ratio)),
    encode: (values, out) => void selectTopK(values, topkCount(values.length, ratio), out),
    accumulate(payload, n, acc, offset, w) {
      expectBytes(payload, sparseBytes(topkCount(n, ratio)), 'top-k');
      return addSparse(payload, n, acc, offset, w);
    },
    updateBytes: (values) => topkUpdateBytes(values.length, countNonZeros(values)),
    encodeUpdate(values, out) {
      if (out.byteLength === values.length * 4) float32Of(out).set(values);
      else writeNonZeros(values, out, out.byteLength / 8);
    },
    decode(payload, out) {
      if (payload.byteLength === out.length * 4) return out.set(float32Of(payload));
      if (payload.byteLength % 8 !== 0 || payload.byteLength > out.length * 4)
        throw new ProtocolError(
          'GRADIENT_SIZE_MISMATCH',
          `top-k update of ${payload.byteLength} bytes for a bucket of ${out.length}`,
        );
      const { idx, val } = sparseViews(payload);
      out.fill(0);
      for (let j = 0; j < idx.length; j++) {
        if (idx[j]! >= out.length)
          throw new ProtocolError('GRADIENT_SIZE_MISMATCH', `sparse index ${idx[j]} outside a bucket of ${out.length}`);
        out[idx[j]!] = val[j]!;
      }
    },
  };
}

function addSparse(payload: Uint8Array, n: number, acc: Accumulator, offset: number, w: number): boolean {
  const { idx } = sparseViews(payload);
  for (let j = 0; j < idx.length; j++) {
    if (idx[j]! >= n)
      throw new ProtocolError('GRADIENT_SIZE_MISMATCH', `sparse index ${idx[j]} outside a bucket of ${n}`);
  }
  const { val } = sparseViews(payload);
  return acc.addSparse(offset, idx, val, w);
}

/** A received payload may sit at any offset; typed views need 4-byte alignment (copy only then). */
function aligned(p: Uint8Array): Uint8Array {
  return p.byteOffset % 4 === 0 ? p : new Uint8Array(p);
}

function codecOf(name: Compression, topkRatio: number): BucketCodec {
  switch (name) {
    case 'none':
      return none;
    case 'fp16':
      return fp16;
    case 'int8':
      return int8;
    case 'topk':
      return topk(topkRatio);
  }
}

/** The codec of a job (`topkRatio` only matters for `topk`). */
export function bucketCodec(name: Compression, topkRatio = 0.01): BucketCodec {
  const c = codecOf(name, topkRatio);
  return {
    ...c,
    accumulate: (payload, n, acc, offset, w, first, scale) =>
      c.accumulate(aligned(payload), n, acc, offset, w, first, scale),
    decode: (payload, out) => c.decode(aligned(payload), out),
  };
}
