import { z } from 'zod';
import { DatasetNameSchema, LABEL_KINDS } from '../job/job-spec.js';
import { MAX_CHUNK_BYTES } from './chunk-format.js';
import { DEFAULT_CHUNK_BYTES } from './chunk-writer.js';

/** A file: a path on the coordinator (under `--dataset-root`), `upload:<id>`, an http(s) URL, or `s3://bucket/key`. */
const file = z.string().min(1).max(4096);

/** Largest image side accepted by the image-folder source, in pixels. */
export const MAX_IMAGE_SIDE = 4096;

/**
 * What `PUT /v1/datasets/:name` ingests (`gradfleet dataset ingest`): the same sources as
 * a job's inline dataset, plus a folder of images per class and an existing chunked dataset;
 * `docs/datasets.md`.
 */
export const IngestSourceSchema = z.union([
  z
    .object({
      csv: z
        .object({
          train: file,
          test: file.optional(),
          labelColumn: z.union([z.string().min(1).max(256), z.number().int().min(0)]).optional(),
          header: z.boolean().optional(),
          featureScale: z.number().positive().finite().default(1),
        })
        .strict(),
    })
    .strict(),
  z
    .object({
      jsonl: z
        .object({ train: file, test: file.optional(), featureScale: z.number().positive().finite().default(1) })
        .strict(),
    })
    .strict(),
  z
    .object({
      idx: z
        .object({ trainImages: file, trainLabels: file, testImages: file.optional(), testLabels: file.optional() })
        .strict()
        .refine((d) => (d.testImages === undefined) === (d.testLabels === undefined), {
          message: 'testImages and testLabels must be given together',
        }),
    })
    .strict(),
  z
    .object({
      images: z
        .object({
          /** A directory with one sub-directory per class (a path under `--dataset-root`, or `s3://bucket/prefix`). */
          dir: file,
          testDir: file.optional(),
          /** Every image is resized to [height, width]. */
          size: z.tuple([z.number().int().min(1).max(MAX_IMAGE_SIDE), z.number().int().min(1).max(MAX_IMAGE_SIDE)]),
          channels: z.union([z.literal(1), z.literal(3)]).default(3),
        })
        .strict(),
    })
    .strict(),
  z
    .object({
      /**
       * An existing chunked dataset, copied example by example (re-chunked with the request's
       * `chunkBytes`, into its `store`): a named dataset of this coordinator (`dataset`, READY),
       * or a directory under `--dataset-root` / an `s3://bucket/prefix` holding `manifest.json`
       * and its chunks (`dir`). Every chunk is verified against the source manifest first.
       */
      chunked: z.union([z.object({ dataset: DatasetNameSchema }).strict(), z.object({ dir: file }).strict()]),
    })
    .strict(),
]);

export const IngestRequestSchema = z
  .object({
    source: IngestSourceSchema,
    /** What the labels are; checked on every example (multilabel targets are not chunked yet). */
    labels: z
      .enum(LABEL_KINDS)
      .refine((k) => k !== 'multilabel', {
        message:
          "named datasets hold labels 'class', 'binary' or 'regression'; give a multilabel job its CSV or JSON Lines file",
      })
      .default('class'),
    /** Target bytes of one chunk. @defaultValue DEFAULT_CHUNK_BYTES */
    chunkBytes: z.number().int().min(1024).max(MAX_CHUNK_BYTES).default(DEFAULT_CHUNK_BYTES),
    /** Where the chunks go: the coordinator's data directory (default) or `s3://bucket/prefix`. */
    store: z
      .string()
      .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,62}(\/[^\s]*)?$/, 'an S3 store is s3://bucket[/prefix]')
      .max(1024)
      .optional(),
  })
  .strict();

/** An ingestion request that breaks `IngestRequestSchema`; `issues` name each field (`source.csv.train`, ...). */
export class InvalidIngestRequestError extends Error {
  readonly code = 'INVALID_INGEST_REQUEST';
  constructor(readonly issues: { path: string; message: string }[]) {
    super(`invalid ingestion request: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
    this.name = 'InvalidIngestRequestError';
  }
}

export type IngestSource = z.output<typeof IngestSourceSchema>;
export type IngestRequest = z.output<typeof IngestRequestSchema>;
export type IngestRequestInput = z.input<typeof IngestRequestSchema>;
export { DatasetNameSchema };

/** What a named dataset's ingestion has done so far. */
export interface IngestProgress {
  /** Source bytes read (all files), when known. */
  bytesRead: number;
  /** Total source bytes, when the sources said (files, objects); 0 when unknown. */
  bytesTotal: number;
  examples: number;
  chunks: number;
  /** Chunk bytes written. */
  bytesWritten: number;
}

export type DatasetState = 'INGESTING' | 'READY' | 'FAILED';

/** A named dataset as `GET /v1/datasets` lists it. */
export interface DatasetInfo {
  name: string;
  state: DatasetState;
  createdAt: string;
  progress: IngestProgress;
  /** Why ingestion failed (names the file and line, never content). */
  error?: { code: string; message: string };
  /** Once READY. */
  featureShape?: number[];
  dtype?: 'uint8' | 'float32';
  labels?: { kind: string; numClasses: number; classes?: string[] | undefined };
  train?: { examples: number; chunks: number };
  test?: { examples: number; chunks: number };
  bytes?: number;
  store?: string;
}
