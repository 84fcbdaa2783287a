import { createHash } from 'node:crypto';
import {
  CHUNK_HEADER_BYTES,
  MAX_CHUNK_BYTES,
  chunkBytes,
  featureBytes,
  writeChunkHeader,
  type FeatureDtype,
  type LabelDtype,
} from './chunk-format.js';
import { chunkName, type ChunkEntry, type SplitManifest, type SplitName } from './dataset-manifest.js';

/** Where chunks go: a directory, an object store. `put` resolves once the bytes are stored (they may be reused after). */
export interface ChunkSink {
  put(name: string, bytes: Uint8Array): Promise<void>;
}

/**
 * Default bytes of one chunk: large enough that per-request overhead is small (S3 GETs, HTTP),
 * small enough that a worker's cache holds many and a fetch takes well under a step at 1 Gbit/s.
 */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** Examples per chunk for examples of `featureSize` values of `dtype`: `targetBytes` worth, at least 1. */
export function chunkExamplesFor(featureSize: number, dtype: FeatureDtype, targetBytes = DEFAULT_CHUNK_BYTES): number {
  const per = 4 + featureSize * featureBytes(dtype);
  const max = Math.floor((MAX_CHUNK_BYTES - CHUNK_HEADER_BYTES) / per);
  return Math.max(1, Math.min(max, Math.floor(targetBytes / per)));
}

/** One chunk's buffer and its label and feature sections. */
interface ChunkBuffer {
  buf: Uint8Array;
  x: Uint8Array | Float32Array;
  y: Int32Array | Float32Array;
}

/**
 * Writes one split as chunks of `chunkExamples` examples: callers fill `slot()` (the next
 * example's feature values, in place, no copy) and `commit(label)`, or whole runs with
 * `slots(k)` and `commitMany`. A full chunk is hashed and handed to the sink, and the next
 * chunk fills the other of two buffers while it is stored: memory holds two chunks whatever
 * the split's size, and filling waits only when the sink is a whole chunk behind.
 * `finish()` writes the last, partial chunk, waits for every store, and returns the split's
 * manifest entry.
 */
export class SplitChunkWriter {
  private readonly buffers: [ChunkBuffer, ChunkBuffer];
  private current: ChunkBuffer;
  /** The store of the other buffer's chunk, still running. */
  private storing: Promise<void> | undefined;
  private n = 0;
  private readonly chunks: ChunkEntry[] = [];
  private total = 0;
  /** Bytes handed to the sink so far. */
  bytesWritten = 0;

  constructor(
    private readonly split: SplitName,
    readonly featureSize: number,
    readonly dtype: FeatureDtype,
    readonly labelDtype: LabelDtype,
    readonly chunkExamples: number,
    private readonly sink: ChunkSink,
  ) {
    const bytes = chunkBytes(chunkExamples, featureSize, dtype);
    if (bytes > MAX_CHUNK_BYTES)
      throw new RangeError(`a chunk of ${chunkExamples} examples exceeds ${MAX_CHUNK_BYTES} bytes`);
    const buffer = (): ChunkBuffer => {
      const buf = new Uint8Array(bytes);
      const yOff = CHUNK_HEADER_BYTES;
      const xOff = yOff + chunkExamples * 4;
      const values = chunkExamples * featureSize;
      return {
        buf,
        y:
          labelDtype === 'int32'
            ? new Int32Array(buf.buffer, yOff, chunkExamples)
            : new Float32Array(buf.buffer, yOff, chunkExamples),
        x: dtype === 'uint8' ? new Uint8Array(buf.buffer, xOff, values) : new Float32Array(buf.buffer, xOff, values),
      };
    };
    this.buffers = [buffer(), buffer()];
    this.current = this.buffers[0];
  }

  private get x(): Uint8Array | Float32Array {
    return this.current.x;
  }

  private get y(): Int32Array | Float32Array {
    return this.current.y;
  }

  /** Examples committed so far. */
  get examples(): number {
    return this.total + this.n;
  }

  /** The feature values of the next example, to fill in place before `commit`. */
  slot(): Uint8Array | Float32Array {
    const f = this.featureSize;
    return this.x.subarray(this.n * f, (this.n + 1) * f);
  }

  /** Examples the current chunk still takes (at least 1). */
  get room(): number {
    return this.chunkExamples - this.n;
  }

  /** The feature values of the next `k` examples (`k` ≤ `room`), to fill in place before `commitMany`. */
  slots(k: number): Uint8Array | Float32Array {
    if (!(k >= 1 && k <= this.room)) throw new RangeError(`${k} slots asked, the chunk has room for ${this.room}`);
    const f = this.featureSize;
    return this.x.subarray(this.n * f, (this.n + k) * f);
  }

  /** Takes the examples in `slots(labels.length)` with `labels`; writes the chunk when it is full. */
  async commitMany(labels: Float64Array): Promise<void> {
    if (labels.length > this.room) throw new RangeError(`${labels.length} labels, the chunk has room for ${this.room}`);
    this.y.set(labels, this.n);
    this.n += labels.length;
    if (this.n === this.chunkExamples) await this.flush();
  }

  /** Takes the example in `slot()` with `label`; writes the chunk when it is full. */
  async commit(label: number): Promise<void> {
    this.y[this.n++] = label;
    if (this.n === this.chunkExamples) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.n === 0) return;
    const count = this.n;
    let bytes: Uint8Array;
    if (count === this.chunkExamples) bytes = this.current.buf;
    else {
      // The last chunk: labels then features, packed without the unused tail of each section.
      bytes = new Uint8Array(chunkBytes(count, this.featureSize, this.dtype));
      bytes.set(new Uint8Array(this.y.buffer, this.y.byteOffset, count * 4), CHUNK_HEADER_BYTES);
      const xBytes = count * this.featureSize * featureBytes(this.dtype);
      bytes.set(new Uint8Array(this.x.buffer, this.x.byteOffset, xBytes), CHUNK_HEADER_BYTES + count * 4);
    }
    writeChunkHeader(bytes, count, this.featureSize, this.dtype, this.labelDtype);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const stored = this.sink.put(chunkName(this.split, this.chunks.length), bytes);
    stored.catch(() => undefined); // awaited below or by the next flush; never left unhandled
    this.chunks.push({ examples: count, bytes: bytes.byteLength, sha256 });
    this.bytesWritten += bytes.byteLength;
    this.total += count;
    this.n = 0;
    // The other buffer is free once its chunk is stored; this one stays with the sink meanwhile.
    const previous = this.storing;
    this.storing = stored;
    this.current = this.current === this.buffers[0] ? this.buffers[1] : this.buffers[0];
    await previous;
  }

  async finish(): Promise<SplitManifest> {
    await this.flush();
    const last = this.storing;
    this.storing = undefined;
    await last;
    return { examples: this.total, chunks: this.chunks };
  }
}
