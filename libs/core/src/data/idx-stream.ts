import type { ByteReader } from './byte-reader.js';
import { InvalidDataError } from './idx.js';

/** Element types of the IDX format (byte 3 of the header): size and big-endian reader. */
const TYPES: Record<number, { bytes: number; read: (v: DataView, off: number) => number }> = {
  0x08: { bytes: 1, read: (v, o) => v.getUint8(o) },
  0x09: { bytes: 1, read: (v, o) => v.getInt8(o) },
  0x0b: { bytes: 2, read: (v, o) => v.getInt16(o) },
  0x0c: { bytes: 4, read: (v, o) => v.getInt32(o) },
  0x0d: { bytes: 4, read: (v, o) => v.getFloat32(o) },
  0x0e: { bytes: 8, read: (v, o) => v.getFloat64(o) },
};

/**
 * An IDX file read record by record (the streaming form of `parseIdx`): the header gives
 * the element type and dimensions; `next(out)` reads one record (dims[1..] values) into `out`.
 */
export class IdxStream {
  private constructor(
    private readonly reader: ByteReader,
    private readonly file: string,
    readonly dims: number[],
    private readonly type: { bytes: number; read: (v: DataView, off: number) => number },
    /** True for unsigned bytes (images), kept one byte per value. */
    readonly bytes: boolean,
  ) {}

  static async open(reader: ByteReader, file: string): Promise<IdxStream> {
    const head = await reader.read(4).catch(() => {
      throw new InvalidDataError(`${file}: too short for an IDX header`);
    });
    if (head[0] !== 0 || head[1] !== 0)
      throw new InvalidDataError(`${file}: bad IDX magic (first two bytes must be 0)`);
    const type = TYPES[head[2]!];
    if (!type) throw new InvalidDataError(`${file}: unknown IDX data type (byte 3 of the header)`);
    const rank = head[3]!;
    if (rank < 1) throw new InvalidDataError(`${file}: IDX header declares no dimensions`);
    const raw = await reader.read(rank * 4);
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const dims = Array.from({ length: rank }, (_, i) => v.getUint32(i * 4));
    return new IdxStream(reader, file, dims, type, head[2] === 0x08);
  }

  /** Records in the file (dims[0]). */
  get count(): number {
    return this.dims[0]!;
  }

  /** Values in one record. */
  get recordSize(): number {
    return this.dims.slice(1).reduce((a, b) => a * b, 1);
  }

  /**
   * Reads the next `k` records into `out` (k × recordSize values): unsigned bytes into a
   * Uint8Array in one copy from the stream's blocks, other types value by value.
   */
  async nextMany(k: number, out: Uint8Array | Float32Array | Float64Array): Promise<void> {
    const n = k * this.recordSize;
    if (out.length < n) throw new RangeError(`room for ${out.length} values, ${k} records need ${n}`);
    if (this.bytes && out instanceof Uint8Array) return this.reader.readInto(out.subarray(0, n));
    const raw = await this.reader.read(n * this.type.bytes);
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) out[i] = this.type.read(v, i * this.type.bytes);
  }

  /** Throws unless the file ends here (the header's dimensions must cover it exactly). */
  async end(): Promise<void> {
    if (!(await this.reader.atEnd()))
      throw new InvalidDataError(`${this.file}: more bytes than the IDX header's dimensions cover`);
  }
}
