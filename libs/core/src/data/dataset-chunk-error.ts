/**
 * Stable codes of a chunked dataset that cannot be used:
 * - `CHUNK_MALFORMED`: a chunk's bytes do not follow `chunk-format.ts`.
 * - `CHUNK_SIZE_MISMATCH`: a chunk's size is not the one its manifest records (truncated, or longer).
 * - `CHUNK_HASH_MISMATCH`: a chunk's SHA-256 is not the one its manifest records (corrupted).
 * - `CHUNK_MISMATCH`: a valid chunk that disagrees with its manifest (count, shape, dtypes).
 * - `MANIFEST_INVALID`: a manifest that is not valid JSON, breaks the schema, or lies about its sums.
 */
export type DatasetChunkErrorCode =
  'CHUNK_MALFORMED' | 'CHUNK_SIZE_MISMATCH' | 'CHUNK_HASH_MISMATCH' | 'CHUNK_MISMATCH' | 'MANIFEST_INVALID';

/** A chunk or manifest that cannot be used; the message names the chunk or file, never its content. */
export class DatasetChunkError extends Error {
  constructor(
    readonly code: DatasetChunkErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DatasetChunkError';
  }
}
