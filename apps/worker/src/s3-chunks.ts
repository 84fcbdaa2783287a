import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  DatasetChunkError,
  chunkEntry,
  chunkName,
  s3Reason,
  verifyChunk,
  type DatasetManifest,
  type DecodedChunk,
  type S3Location,
  type SplitName,
} from '@gradfleet/core';

/** Time one chunk's GET may take, in ms: as a chunk download from the coordinator (`remote-data.ts`). */
const GET_TIMEOUT_MS = 300_000;

/** A response body as the SDK hands it in Node (an `IncomingMessage`), read or dropped. */
type Body = AsyncIterable<Uint8Array> & { destroy?: () => void };

/**
 * Chunks of a named dataset read straight from its S3 store (`dataStore: 's3'`) by a client
 * configured from this worker's own AWS environment (`s3ConfigFromEnv`, the SDK's credential chain). Keys are
 * derived from split and index (`chunkName`), never received. The object's length is checked
 * against the manifest before its body is read, and the body is read into a buffer of the
 * manifest's size, refusing any byte past it; then `verifyChunk` checks the SHA-256. Errors
 * name the chunk and its `s3://` URL, never credentials or what the server sent.
 */
export class S3ChunkReader {
  constructor(
    private readonly client: S3Client,
    private readonly at: S3Location,
  ) {}

  async read(m: DatasetManifest, split: SplitName, index: number): Promise<DecodedChunk> {
    const key = this.at.prefix + chunkName(split, index);
    const name = `chunk ${split}/${index} (s3://${this.at.bucket}/${key})`;
    const expected = chunkEntry(m, split, index).bytes;
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.at.bucket, Key: key }), {
        abortSignal: AbortSignal.timeout(GET_TIMEOUT_MS),
      });
    } catch (err) {
      throw new Error(`${name}: cannot read (${s3Reason(err)})`);
    }
    const body = res.Body as Body | undefined;
    const refuse = (what: string) => {
      body?.destroy?.();
      return new DatasetChunkError('CHUNK_SIZE_MISMATCH', `${name}: ${what}, the manifest records ${expected}`);
    };
    if (!body || res.ContentLength !== expected) throw refuse(`${res.ContentLength ?? 'unknown'} bytes (not read)`);
    const bytes = new Uint8Array(expected);
    let off = 0;
    try {
      for await (const part of body) {
        if (off + part.byteLength > expected) throw refuse(`more bytes than announced`);
        bytes.set(part, off);
        off += part.byteLength;
      }
    } catch (err) {
      if (err instanceof DatasetChunkError) throw err;
      throw new Error(`${name}: read failed after ${off} bytes (${s3Reason(err)})`);
    }
    if (off !== expected) throw refuse(`${off} bytes (truncated)`);
    return verifyChunk(bytes, m, split, index, name);
  }
}
