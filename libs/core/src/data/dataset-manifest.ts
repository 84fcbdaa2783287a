import { z } from 'zod';
import { LABEL_KINDS } from '../job/job-spec.js';
import { MAX_CHUNK_BYTES, chunkBytes } from './chunk-format.js';
import { DatasetChunkError } from './dataset-chunk-error.js';

/**
 * The manifest of a chunked dataset (`manifest.json` next to its chunks, `docs/datasets.md`):
 *
 * ```json
 * { "format": "gradfleet-chunks", "version": 1,
 *   "featureShape": [28, 28], "dtype": "uint8", "scale": 0.00392156862745098,
 *   "labels": { "kind": "class", "dtype": "int32", "numClasses": 10, "classes": ["cat", "dog"] },
 *   "chunkExamples": 4096,
 *   "splits": { "train": { "examples": 60000, "chunks": [{ "examples": 4096, "bytes": 3227664, "sha256": "…" }, …] },
 *               "test": { … } } }
 * ```
 *
 * Chunk `i` of split `s` is stored as `s-<i, 6 digits>.chunk` (`chunkName`): names are derived,
 * never read from the manifest, so a manifest cannot point a reader at another file. Every
 * chunk but the last of a split holds exactly `chunkExamples` examples; the manifest's sums
 * (examples, bytes from shape and dtype) are checked on parse, so a manifest that lies about
 * sizes is refused before any chunk is fetched.
 */
export const MANIFEST_FORMAT = 'gradfleet-chunks';
export const MANIFEST_VERSION = 1;
/** Largest manifest, in bytes (a million chunks' entries fit). */
export const MAX_MANIFEST_BYTES = 128 * 1024 * 1024;
/** Most chunks in one split. */
export const MAX_CHUNKS = 1_000_000;
/** Most values in one example (an 8K RGB image is 100M; beyond that a chunk would hold under 3 examples). */
export const MAX_FEATURE_SIZE = 64 * 1024 * 1024;
/** Most class names a manifest records. */
export const MAX_CLASS_NAMES = 100_000;

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const ChunkEntrySchema = z
  .object({
    examples: z
      .number()
      .int()
      .min(1)
      .max(2 ** 32 - 1),
    bytes: z.number().int().min(16).max(MAX_CHUNK_BYTES),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();

export const SplitManifestSchema = z
  .object({ examples: count, chunks: z.array(ChunkEntrySchema).max(MAX_CHUNKS) })
  .strict();

export const DatasetManifestSchema = z
  .object({
    format: z.literal(MANIFEST_FORMAT),
    version: z.literal(MANIFEST_VERSION),
    featureShape: z.array(z.number().int().min(1)).min(1).max(8),
    dtype: z.enum(['uint8', 'float32']),
    /** Multiplier applied to raw feature values on the worker (1/255 for images). */
    scale: z.number().positive().finite(),
    labels: z
      .object({
        kind: z.enum(LABEL_KINDS),
        dtype: z.enum(['int32', 'float32']),
        /** Target width's source: the class count (max label + 1), 1 for regression. */
        numClasses: z
          .number()
          .int()
          .min(1)
          .max(2 ** 31),
        /** Class names by index (image folders: the sub-folder names). */
        classes: z.array(z.string().max(256)).max(MAX_CLASS_NAMES).optional(),
      })
      .strict(),
    chunkExamples: z
      .number()
      .int()
      .min(1)
      .max(2 ** 32 - 1),
    splits: z.object({ train: SplitManifestSchema, test: SplitManifestSchema.optional() }).strict(),
  })
  .strict();

export type ChunkEntry = z.output<typeof ChunkEntrySchema>;
export type SplitManifest = z.output<typeof SplitManifestSchema>;
export type DatasetManifest = z.output<typeof DatasetManifestSchema>;
export type SplitName = 'train' | 'test';

/** The file (or object key suffix) of chunk `index` of `split`. */
export function chunkName(split: SplitName, index: number): string {
  return `${split}-${String(index).padStart(6, '0')}.chunk`;
}

export function featureSizeOf(m: Pick<DatasetManifest, 'featureShape'>): number {
  return m.featureShape.reduce((a, b) => a * b, 1);
}

/** Checks a manifest's arithmetic: sizes, counts and shapes agree; throws `MANIFEST_INVALID`. */
export function checkManifest(m: DatasetManifest, name: string): DatasetManifest {
  const fail = (why: string) => new DatasetChunkError('MANIFEST_INVALID', `${name}: ${why}`);
  const featureSize = featureSizeOf(m);
  if (featureSize > MAX_FEATURE_SIZE) throw fail(`${featureSize} values per example exceeds ${MAX_FEATURE_SIZE}`);
  if ((m.labels.dtype === 'float32') !== (m.labels.kind === 'regression'))
    throw fail(`labels of kind ${m.labels.kind} cannot have dtype ${m.labels.dtype}`);
  for (const split of ['train', 'test'] as const) {
    const s = m.splits[split];
    if (!s) continue;
    let total = 0;
    s.chunks.forEach((c, i) => {
      const last = i === s.chunks.length - 1;
      if (last ? c.examples > m.chunkExamples : c.examples !== m.chunkExamples)
        throw fail(`${chunkName(split, i)}: ${c.examples} examples; chunks hold ${m.chunkExamples} (the last at most)`);
      const want = chunkBytes(c.examples, featureSize, m.dtype);
      if (c.bytes !== want)
        throw fail(`${chunkName(split, i)}: ${c.bytes} bytes recorded, ${c.examples} examples take ${want}`);
      total += c.examples;
    });
    if (total !== s.examples) throw fail(`${split}: ${s.examples} examples recorded, its chunks hold ${total}`);
  }
  if (m.splits.train.examples === 0) throw fail('train: no examples');
  return m;
}

/** Parses and checks a manifest's bytes; `name` names it in errors. */
export function parseManifest(bytes: Uint8Array, name: string): DatasetManifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES)
    throw new DatasetChunkError('MANIFEST_INVALID', `${name}: ${bytes.byteLength} bytes exceeds ${MAX_MANIFEST_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new DatasetChunkError('MANIFEST_INVALID', `${name}: not valid JSON`);
  }
  const r = DatasetManifestSchema.safeParse(raw);
  if (!r.success) {
    const first = r.error.issues[0]!;
    throw new DatasetChunkError('MANIFEST_INVALID', `${name}: ${first.path.join('.') || '(root)'}: ${first.message}`);
  }
  return checkManifest(r.data, name);
}

/** Where example `index` of a split lives: its chunk and its position there. */
export function locateExample(m: DatasetManifest, index: number): { chunk: number; offset: number } {
  return { chunk: Math.floor(index / m.chunkExamples), offset: index % m.chunkExamples };
}
