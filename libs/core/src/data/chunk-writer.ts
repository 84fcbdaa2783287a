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

/**
 * Writes one split as chunks of `chunkExamples` examples: callers fill `slot()` (the next
 * example's feature values, in place, no copy) and `commit(label)`; a full chunk is hashed and
 * handed to the sink before the next example is taken, so memory holds one chunk whatever the
 * split's size. `finish()` writes the last, partial chunk and returns the split's manifest entry.
 */
export class SplitChunkWriter {
  private readonly buf: Uint8Array;
  private readonly x: Uint8Array | Float32Array;
  private readonly y: Int32Array | Float32Array;
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
    this.buf = new Uint8Array(bytes);
    const yOff = CHUNK_HEADER_BYTES;
    const xOff = yOff + chunkExamples * 4;
    this.y =
      labelDtype === 'int32'
        ? new Int32Array(this.buf.buffer, yOff, chunkExamples)
        : new Float32Array(this.buf.buffer, yOff, chunkExamples);
    const values = chunkExamples * featureSize;
    this.x =
      dtype === 'uint8'
        ? new Uint8Array(this.buf.buffer, xOff, values)
        : new Float32Array(this.buf.buffer, xOff, values);
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

  /** Takes the example in `slot()` with `label`; writes the chunk when it is full. */
  async commit(label: number): Promise<void> {
    this.y[this.n++] = label;
    if (this.n === this.chunkExamples) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.n === 0) return;
    const count = this.n;
    let bytes: Uint8Array;
    if (count === this.chunkExamples) bytes = this.buf;
    else {
      // The last chunk: labels then features, packed without the unused tail of each section.
      bytes = new Uint8Array(chunkBytes(count, this.featureSize, this.dtype));
      bytes.set(new Uint8Array(this.y.buffer, this.y.byteOffset, count * 4), CHUNK_HEADER_BYTES);
      const xBytes = count * this.featureSize * featureBytes(this.dtype);
      bytes.set(new Uint8Array(this.x.buffer, this.x.byteOffset, xBytes), CHUNK_HEADER_BYTES + count * 4);
    }
    writeChunkHeader(bytes, count, this.featureSize, this.dtype, this.labelDtype);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await this.sink.put(chunkName(this.split, this.chunks.length), bytes);
    this.chunks.push({ examples: count, bytes: bytes.byteLength, sha256 });
    this.bytesWritten += bytes.byteLength;
    this.total += count;
    this.n = 0;
  }

  async finish(): Promise<SplitManifest> {
    await this.flush();
    return { examples: this.total, chunks: this.chunks };
  }
}
