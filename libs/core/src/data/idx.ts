import { gunzipSync } from 'node:zlib';

/** A parsed IDX file (the MNIST format): dimensions and values. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const TYPES: Record<
  number,
  { bytes: number; read: (v: DataView, off: number) => number; make: (n: number) => IdxArray['data'] }
> = {
  0x08: { bytes: 1, read: (v, o) => v.getUint8(o), make: (n) => new Uint8Array(n) },
  0x09: { bytes: 1, read: (v, o) => v.getInt8(o), make: (n) => new Int8Array(n) },
  0x0b: { bytes: 2, read: (v, o) => v.getInt16(o), make: (n) => new Int16Array(n) },
  0x0c: { bytes: 4, read: (v, o) => v.getInt32(o), make: (n) => new Int32Array(n) },
  0x0d: { bytes: 4, read: (v, o) => v.getFloat32(o), make: (n) => new Float32Array(n) },
  0x0e: { bytes: 8, read: (v, o) => v.getFloat64(o), make: (n) => new Float64Array(n) },
};

/** Largest class label a dataset may hold: labels are Int32 on the wire, so 2^31 and above are refused (never wrapped). */
export const MAX_LABEL = 2 ** 31 - 1;
/** Largest IDX file once gunzipped, in bytes: the inflate stops there instead of exhausting memory. */
export const MAX_IDX_BYTES = 2 * 1024 * 1024 * 1024 - 1;

/** Thrown for a file that is not valid IDX; says which file and why. */
export class InvalidDataError extends Error {
  readonly code = 'INVALID_DATA';
  /** The job-spec field that named the data (e.g. `dataset.csv.train`), when known. */
  path: string | undefined;
  constructor(message: string, path?: string) {
    super(message);
    this.name = 'InvalidDataError';
    this.path = path;
  }
}

/** Parses an IDX buffer (gzip accepted). `file` names it in errors. Values are big-endian per the format. */
export function parseIdx(raw: Uint8Array, file: string): IdxArray {
  let buf = raw;
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      buf = new Uint8Array(gunzipSync(raw, { maxOutputLength: MAX_IDX_BYTES }));
    } catch (err) {
      throw new InvalidDataError(
        `${file}: not valid gzip or over ${MAX_IDX_BYTES} bytes inflated (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  if (buf.byteLength < 4) throw new InvalidDataError(`${file}: too short for an IDX header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint16(0) !== 0) throw new InvalidDataError(`${file}: bad IDX magic (first two bytes must be 0)`);
  const type = TYPES[view.getUint8(2)];
  if (!type) throw new InvalidDataError(`${file}: unknown IDX data type (byte 3 of the header)`);
  const rank = view.getUint8(3);
  if (rank < 1 || buf.byteLength < 4 + rank * 4)
    throw new InvalidDataError(`${file}: IDX header declares no dimensions or more than the file holds`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + i * 4));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + rank * 4;
  const expected = start + count * type.bytes;
  if (buf.byteLength !== expected)
    throw new InvalidDataError(`${file}: the IDX header's dimensions do not match the file's ${buf.byteLength} bytes`);
  if (view.getUint8(2) === 0x08) return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + start, count) };
  const data = type.make(count);
  for (let i = 0; i < count; i++) data[i] = type.read(view, start + i * type.bytes);
  return { dims, data };
}
