import { parentPort, workerData } from 'node:worker_threads';
import { InvalidDataError, type LabelKind } from '@gradfleet/core';
import type { PreparedDataset } from './dataset-ingest.js';
import { InlineDataset, type InlineDatasetOptions, type InlineDatasetSpec } from './dataset-prepare.js';

/** What the coordinator hands one preparation thread. */
export interface PrepareThreadData {
  jobId: string;
  jobDir: string;
  spec: InlineDatasetSpec;
  labels: LabelKind;
  options: InlineDatasetOptions;
}

export type PrepareThreadMessage =
  | { t: 'note'; fields: Record<string, unknown>; message: string }
  | { t: 'done'; prepared: PreparedDataset }
  | { t: 'invalid'; message: string; path?: string | undefined }
  | { t: 'failed'; name: string; code?: string | undefined };

/**
 * One job's inline dataset (CSV, JSON Lines, IDX files named in its spec), read, parsed and
 * encoded on its own thread (`dataset-ingest.ts` starts it with a heap cap and a deadline):
 * a file of millions of tiny lines or a gzip bomb costs this thread, never the coordinator's
 * event loop or heap.
 */
const data = workerData as PrepareThreadData;
const post = (m: PrepareThreadMessage) => parentPort!.postMessage(m);

try {
  const inline = new InlineDataset(data.options, (fields, message) => post({ t: 'note', fields, message }));
  post({ t: 'done', prepared: await inline.prepare(data.jobId, data.jobDir, data.spec, data.labels) });
} catch (err) {
  if (err instanceof InvalidDataError) post({ t: 'invalid', message: err.message, path: err.path });
  // Anything else may quote what it read: only its kind crosses back.
  else post({ t: 'failed', name: (err as Error).name, code: (err as NodeJS.ErrnoException).code });
}
