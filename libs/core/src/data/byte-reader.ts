import { InvalidDataError } from './idx.js';

/**
 * Exact reads from a byte stream: `read(n)` resolves with the next `n` bytes (one block's
 * view when they lie in one block, else a copy), or throws naming the file when the stream
 * ends first. Holds at most one block beyond what the caller asked for.
 */
export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private block: Uint8Array = new Uint8Array(0);
  private pos = 0;
  /** Bytes handed to the caller so far. */
  offset = 0;

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly file: string,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    const next = await this.it.next();
    if (next.done) return false;
    this.block = next.value;
    this.pos = 0;
    return true;
  }

  async read(n: number): Promise<Uint8Array> {
    if (this.pos + n <= this.block.byteLength) {
      const view = this.block.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return view;
    }
    const out = new Uint8Array(n);
    await this.readInto(out);
    return out;
  }

  /** Fills `out` with the next `out.byteLength` bytes (one copy, straight from the stream's blocks). */
  async readInto(out: Uint8Array): Promise<void> {
    const n = out.byteLength;
    let off = 0;
    while (off < n) {
      if (this.pos >= this.block.byteLength && !(await this.fill()))
        throw new InvalidDataError(`${this.file}: ends after ${this.offset + off} bytes, in the middle of a record`);
      const take = Math.min(n - off, this.block.byteLength - this.pos);
      out.set(this.block.subarray(this.pos, this.pos + take), off);
      this.pos += take;
      off += take;
    }
    this.offset += n;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    while (this.pos >= this.block.byteLength) if (!(await this.fill())) return true;
    return false;
  }
}
