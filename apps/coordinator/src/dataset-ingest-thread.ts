import { parentPort, workerData } from 'node:worker_threads';
import { IngestRequestSchema, type DatasetManifest, type IngestProgress } from '@gradfleet/core';
import { FsChunkStore, S3ChunkStore, type ChunkStore } from './chunk-store.js';
import { ingestDataset, type IngestLimits } from './dataset-ingest-pipeline.js';
import { DatasetSources, type DatasetSourcesOptions } from './dataset-sources.js';
import { s3ClientFromEnv } from './s3-access.js';

/** What the coordinator hands one ingestion thread. */
export interface IngestThreadData {
  request: unknown;
  sources: Omit<DatasetSourcesOptions, 's3'>;
  limits: IngestLimits;
  /** A directory of the coordinator, or an `s3://bucket/prefix/` for the chunks. */
  store: string;
}

export type IngestThreadMessage =
  | { t: 'progress'; progress: IngestProgress }
  | { t: 'done'; manifest: DatasetManifest }
  | { t: 'failed'; code: string; message: string; path?: string | undefined };

/**
 * One dataset's ingestion, on its own worker thread (`dataset-catalog.ts` starts it): the
 * parsing, hashing and image decoding never run on the coordinator's event loop, and the
 * thread's heap is capped, so a dataset of any size costs the coordinator one chunk of memory.
 */
const data = workerData as IngestThreadData;
const post = (m: IngestThreadMessage) => parentPort!.postMessage(m);
const sources = new DatasetSources({ ...data.sources, s3: () => s3ClientFromEnv() });
const store: ChunkStore = data.store.startsWith('s3://')
  ? new S3ChunkStore(sources.s3Store(data.store), data.store)
  : new FsChunkStore(data.store);

try {
  const request = IngestRequestSchema.parse(data.request);
  const manifest = await ingestDataset(request, sources, store, {
    ...data.limits,
    onProgress: (progress) => post({ t: 'progress', progress }),
  });
  post({ t: 'done', manifest });
} catch (err) {
  const e = err as Error & { code?: unknown; path?: string };
  post({
    t: 'failed',
    code: typeof e.code === 'string' && /^[A-Z_]+$/.test(e.code) ? e.code : 'INGEST_FAILED',
    // Only our own errors carry a message fit to show (they never echo content).
    message: typeof e.code === 'string' && /^[A-Z_]+$/.test(e.code) ? e.message : `ingestion failed (${e.name})`,
    ...(e.path !== undefined ? { path: e.path } : {}),
  });
}
