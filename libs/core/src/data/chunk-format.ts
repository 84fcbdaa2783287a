import { DatasetChunkError } from './dataset-chunk-error.js';

/**
 * One chunk of a chunked dataset (`docs/datasets.md`): a fixed number of encoded examples
 * (the last chunk of a split may hold fewer).
 *
 *   offset  size              field
 *   0       u32 LE            magic 0x4B434647 ('GFCK')
 *   4       u32 LE            count: examples in this chunk
 *   8       u32 LE            featureSize: values per example
 *   12      u8                feature dtype: 0 uint8, 1 float32
 *   13      u8                label dtype: 0 int32 (class / binary), 1 float32 (regression)
 *   14      u16 LE            reserved, 0
 *   16      count × 4         labels (Int32 or Float32, LE)
 *   16+4·count count × featureSize × (1|4)   features, example after example (LE)
 *
 * Every section starts at a multiple of 4 from the chunk's start, so an aligned chunk is
 * viewed as typed arrays in place (no copy). The chunk must end exactly after the features.
 * Nothing here trusts the header: every length is checked against the buffer, and the
 * reader (`chunk-reader.ts`) checks size and SHA-256 against the manifest before decoding.
 */
export const CHUNK_MAGIC = 0x4b434647;
/** Bytes in front of the labels. */
export const CHUNK_HEADER_BYTES = 16;
/**
 * Largest chunk, in bytes: a reader allocates up to this much for one chunk, so a lying
 * manifest or header cannot ask for more. 256 MiB holds 64 full-HD RGB images.
 */
export const MAX_CHUNK_BYTES = 256 * 1024 * 1024;

export type FeatureDtype = 'uint8' | 'float32';
export type LabelDtype = 'int32' | 'float32';

const FEATURE_CODES: Record<FeatureDtype, number> = { uint8: 0, float32: 1 };
const LABEL_CODES: Record<LabelDtype, number> = { int32: 0, float32: 1 };

export function featureBytes(dtype: FeatureDtype): number {
  return dtype === 'uint8' ? 1 : 4;
}

/** Bytes of a chunk of `count` examples of `featureSize` values. */
export function chunkBytes(count: number, featureSize: number, dtype: FeatureDtype): number {
  return CHUNK_HEADER_BYTES + count * 4 + count * featureSize * featureBytes(dtype);
}

/** A decoded chunk: views into the chunk's bytes (or an aligned copy of them). */
export interface DecodedChunk {
  count: number;
  featureSize: number;
  dtype: FeatureDtype;
  labelDtype: LabelDtype;
  x: Uint8Array | Float32Array;
  y: Int32Array | Float32Array;
}

/** Writes the 16-byte header of a chunk into `out`. */
export function writeChunkHeader(
  out: Uint8Array,
  count: number,
  featureSize: number,
  dtype: FeatureDtype,
  labelDtype: LabelDtype,
): void {
  const v = new DataView(out.buffer, out.byteOffset, CHUNK_HEADER_BYTES);
  v.setUint32(0, CHUNK_MAGIC, true);
  v.setUint32(4, count, true);
  v.setUint32(8, featureSize, true);
  v.setUint8(12, FEATURE_CODES[dtype]);
  v.setUint8(13, LABEL_CODES[labelDtype]);
  v.setUint16(14, 0, true);
}

/**
 * Decodes a chunk, checking every length before use; `name` names it in errors (never its
 * content). Throws `DatasetChunkError` (`CHUNK_MALFORMED`).
 */
export function decodeChunk(buf: Uint8Array, name: string): DecodedChunk {
  const fail = (why: string) => new DatasetChunkError('CHUNK_MALFORMED', `${name}: ${why}`);
  if (buf.byteLength < CHUNK_HEADER_BYTES) throw fail(`${buf.byteLength} bytes is shorter than a chunk header`);
  if (buf.byteLength > MAX_CHUNK_BYTES) throw fail(`${buf.byteLength} bytes exceeds ${MAX_CHUNK_BYTES}`);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint32(0, true) !== CHUNK_MAGIC) throw fail('not a gradfleet chunk (bad magic)');
  const count = v.getUint32(4, true);
  const featureSize = v.getUint32(8, true);
  const dtypeCode = v.getUint8(12);
  const labelCode = v.getUint8(13);
  if (v.getUint16(14, true) !== 0) throw fail('reserved header bytes are not zero');
  const dtype = dtypeCode === 0 ? 'uint8' : dtypeCode === 1 ? 'float32' : undefined;
  const labelDtype = labelCode === 0 ? 'int32' : labelCode === 1 ? 'float32' : undefined;
  if (!dtype) throw fail(`unknown feature dtype code ${dtypeCode}`);
  if (!labelDtype) throw fail(`unknown label dtype code ${labelCode}`);
  if (featureSize < 1) throw fail('featureSize is 0');
  // Computed in floating point (exact below 2^53), so a huge count × featureSize cannot wrap.
  const expected = chunkBytes(count, featureSize, dtype);
  if (expected !== buf.byteLength)
    throw fail(`${buf.byteLength} bytes, but ${count} examples of ${featureSize} ${dtype} need ${expected}`);
  let bytes = buf;
  if (buf.byteOffset % 4 !== 0) {
    bytes = new Uint8Array(buf.byteLength); // typed views need 4-byte alignment
    bytes.set(buf);
  }
  const yOff = bytes.byteOffset + CHUNK_HEADER_BYTES;
  const xOff = yOff + count * 4;
  const y =
    labelDtype === 'int32' ? new Int32Array(bytes.buffer, yOff, count) : new Float32Array(bytes.buffer, yOff, count);
  const n = count * featureSize;
  const x = dtype === 'uint8' ? new Uint8Array(bytes.buffer, xOff, n) : new Float32Array(bytes.buffer, xOff, n);
  return { count, featureSize, dtype, labelDtype, x, y };
}
