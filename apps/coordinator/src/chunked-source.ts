import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  s3Reason,
  InvalidDataError,
  MAX_CHUNK_BYTES,
  MAX_MANIFEST_BYTES,
  chunkName,
  parseManifest,
  type DatasetManifest,
  type SplitName,
} from '@gradfleet/core';
import { FsChunkStore, S3ChunkStore } from './chunk-store.js';
import { readDatasetPath, resolveDatasetDir } from './dataset-path.js';

/** Where a named dataset of the catalog lives, as the catalog hands it to one ingestion. */
export interface NamedDatasetLocation {
  /** The catalog's directory of the dataset (its `manifest.json`, checked when it was loaded). */
  dir: string;
  /** Where its chunks are: that directory, or an `s3://bucket/prefix/`. */
  store: string;
}

/** A chunked dataset to copy from: its manifest, and its chunks one at a time (unverified bytes). */
export interface ChunkedSource {
  /** How errors name it: the dataset name, the directory or the `s3://` prefix. */
  display: string;
  manifest: DatasetManifest;
  /** The bytes of chunk `index` of `split`, at most `MAX_CHUNK_BYTES`; the caller verifies them. */
  chunk(split: SplitName, index: number): Promise<Uint8Array>;
}

/** What opening a chunked source needs from `DatasetSources` (its access rules). */
export interface ChunkedSourceAccess {
  roots: readonly string[];
  datasets: Readonly<Record<string, NamedDatasetLocation>>;
  /** Checks the bucket against `--dataset-s3-allow`; the client. */
  s3(url: string, field: string): S3Client;
}

/** Reads one object of a source: the error names the source and the object, never content. */
type Reader = (name: string, maxBytes: number) => Promise<Uint8Array>;

function named(read: Reader, display: string, field: string): Reader {
  return async (name, maxBytes) => {
    try {
      return await read(name, maxBytes);
    } catch (err) {
      if (err instanceof InvalidDataError) throw err;
      // RangeError: our own size refusal (names the object and the limit); else the code only.
      const why =
        err instanceof RangeError
          ? err.message
          : `${name}: cannot read (${(err as NodeJS.ErrnoException).code ?? s3Reason(err)})`;
      throw new InvalidDataError(`${display}: ${why}`, field);
    }
  };
}

/**
 * Opens an existing chunked dataset as an ingestion source (`source.chunked`): a named dataset
 * of this coordinator (the one the catalog checked READY and handed over), a directory under
 * `--dataset-root` (every file opened by `readDatasetPath`'s rules), or an `s3://bucket/prefix`
 * on `--dataset-s3-allow`. The manifest is parsed and checked here; chunk names are derived
 * from it (`chunkName`), never read from it.
 */
export async function openChunkedSource(
  spec: { dataset: string } | { dir: string },
  access: ChunkedSourceAccess,
  field: string,
): Promise<ChunkedSource> {
  let display: string;
  let manifestRead: Reader;
  let chunkRead: Reader;
  if ('dataset' in spec) {
    display = spec.dataset;
    const where = Object.hasOwn(access.datasets, spec.dataset) ? access.datasets[spec.dataset] : undefined;
    if (!where) throw new InvalidDataError(`${spec.dataset}: no such READY dataset`, field);
    manifestRead = named((n, max) => new FsChunkStore(where.dir).get(n, max), display, field);
    const store = where.store.startsWith('s3://')
      ? new S3ChunkStore(access.s3(where.store, field), where.store)
      : new FsChunkStore(where.store);
    chunkRead = named((n, max) => store.get(n, max), display, field);
  } else if (spec.dir.startsWith('s3://')) {
    const store = new S3ChunkStore(access.s3(spec.dir, field), spec.dir);
    display = store.where;
    manifestRead = chunkRead = named((n, max) => store.get(n, max), display, field);
  } else {
    const real = await resolveDatasetDir(spec.dir, access.roots, field);
    display = spec.dir;
    manifestRead = chunkRead = named(
      (n, max) => readDatasetPath(join(real, n), access.roots, max, field),
      display,
      field,
    );
  }
  let manifest: DatasetManifest;
  try {
    manifest = parseManifest(await manifestRead('manifest.json', MAX_MANIFEST_BYTES), `${display}/manifest.json`);
  } catch (err) {
    if (err instanceof InvalidDataError) throw err;
    throw Object.assign(err as Error, { path: field }); // MANIFEST_INVALID, named
  }
  return { display, manifest, chunk: (split, index) => chunkRead(chunkName(split, index), MAX_CHUNK_BYTES) };
}
