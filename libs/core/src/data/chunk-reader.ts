import { createHash } from 'node:crypto';
import { decodeChunk, type DecodedChunk } from './chunk-format.js';
import { DatasetChunkError } from './dataset-chunk-error.js';
import { chunkName, featureSizeOf, type DatasetManifest, type SplitName } from './dataset-manifest.js';

/**
 * The manifest's entry for chunk `index` of `split`, refused when there is none (an index
 * from a peer is checked before it names anything).
 */
export function chunkEntry(m: DatasetManifest, split: SplitName, index: number) {
  const s = m.splits[split];
  if (!s || !Number.isInteger(index) || index < 0 || index >= s.chunks.length)
    throw new DatasetChunkError(
      'CHUNK_MISMATCH',
      `${split} chunk ${index}: the manifest lists ${s?.chunks.length ?? 0} chunks for ${split}`,
    );
  return s.chunks[index]!;
}

/**
 * Verifies chunk `index` of `split` against its manifest before anything decodes it: the
 * size first (a truncated or padded chunk is refused without hashing), then the SHA-256,
 * then the chunk's own header (`decodeChunk` checks every length), then that the header agrees
 * with the manifest (count, values per example, dtypes). `name` names the chunk in errors
 * (a URL, an object key, a path), never its content. Throws `DatasetChunkError`.
 */
export function verifyChunk(
  bytes: Uint8Array,
  m: DatasetManifest,
  split: SplitName,
  index: number,
  name = chunkName(split, index),
): DecodedChunk {
  const entry = chunkEntry(m, split, index);
  if (bytes.byteLength !== entry.bytes)
    throw new DatasetChunkError(
      'CHUNK_SIZE_MISMATCH',
      `${name}: ${bytes.byteLength} bytes, the manifest records ${entry.bytes} (truncated or damaged)`,
    );
  const hash = createHash('sha256').update(bytes).digest('hex');
  if (hash !== entry.sha256)
    throw new DatasetChunkError('CHUNK_HASH_MISMATCH', `${name}: SHA-256 does not match the manifest (corrupted)`);
  const chunk = decodeChunk(bytes, name);
  const featureSize = featureSizeOf(m);
  if (chunk.count !== entry.examples || chunk.featureSize !== featureSize)
    throw new DatasetChunkError(
      'CHUNK_MISMATCH',
      `${name}: ${chunk.count} examples of ${chunk.featureSize} values, the manifest says ${entry.examples} of ${featureSize}`,
    );
  if (chunk.dtype !== m.dtype || chunk.labelDtype !== m.labels.dtype)
    throw new DatasetChunkError(
      'CHUNK_MISMATCH',
      `${name}: ${chunk.dtype} features with ${chunk.labelDtype} labels, the manifest says ${m.dtype} with ${m.labels.dtype}`,
    );
  return chunk;
}
