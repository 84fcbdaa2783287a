import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  InvalidDataError,
  type DatasetSpec,
  type LabelKind,
  type Logger,
  type RemoteSplit,
  type S3Location,
} from '@gradfleet/core';
import type { PrepareThreadData, PrepareThreadMessage } from './dataset-prepare-thread.js';
import { startThread } from './thread-module.js';

/** Largest dataset file accepted by upload or URL fetch, in bytes. */
export const DEFAULT_MAX_DATASET_BYTES = 1024 * 1024 * 1024;

/**
 * Heap cap of a dataset preparation thread, in MiB. Parsed examples live in typed arrays
 * outside this heap; what it bounds is the text and the per-line work of parsing, which for
 * a file at the 1 GiB upload limit fits, and for millions of tiny lines fails here, not in
 * the coordinator.
 */
export const DEFAULT_DATASET_PARSE_HEAP_MB = 2048;
/** Deadline of one dataset preparation, in ms: a 1 GiB CSV parses in about a minute. */
export const DEFAULT_DATASET_PARSE_TIMEOUT_MS = 600_000;

/** Where dataset files may come from (see docs/security.md). */
export interface DatasetSourceOptions {
  /** Largest dataset file (upload, download or path), in bytes. @defaultValue DEFAULT_MAX_DATASET_BYTES */
  maxBytes?: number;
  /** Directories dataset paths may name (`--dataset-root`). @defaultValue none: paths are refused */
  roots?: readonly string[];
  /** Hosts dataset URLs may name (`--dataset-url-allow`). @defaultValue none: URLs are refused */
  urlAllow?: readonly string[];
  /** Heap of the thread that parses one job's dataset, in MiB (`--dataset-parse-heap-mb`). @defaultValue DEFAULT_DATASET_PARSE_HEAP_MB */
  parseHeapMb?: number;
  /** Time one job's dataset may take to read and parse, in ms (`--dataset-parse-timeout-s`). @defaultValue DEFAULT_DATASET_PARSE_TIMEOUT_MS */
  parseTimeoutMs?: number;
  log?: Logger;
}

export interface PreparedSplit extends RemoteSplit {
  examples: number;
}

/** A dataset ready to serve: encoded shards in the job's directory. */
export interface PreparedDataset {
  /** `chunked`: `train`/`test` name the manifest of a named dataset (`dataset-catalog.ts`); absent: `data-shard` files. */
  format?: 'chunked' | undefined;
  /** The named dataset (`dataset: { name }`). */
  datasetName?: string | undefined;
  /** Chunked: examples per chunk (the sampler's windows follow the chunks). */
  chunkExamples?: number | undefined;
  /** Chunked, `dataStore: 's3'`: where the workers read the chunks (the manifest stays on the coordinator). */
  s3?: S3Location | undefined;
  train: PreparedSplit;
  validation?: PreparedSplit;
  test?: PreparedSplit;
  featureShape: number[];
  numClasses: number;
}

/**
 * Stores uploads, and turns a job's inline dataset into shards the coordinator serves to
 * workers (`GET /v1/jobs/:id/data/train|test`, `data-shard` format) by running
 * `InlineDataset` (`dataset-prepare.ts`) on a thread of its own per job.
 */
export class DatasetIngest {
  readonly maxBytes: number;
  private readonly parseHeapMb: number;
  private readonly parseTimeoutMs: number;

  constructor(
    private readonly dataDir: string,
    private readonly options: DatasetSourceOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_DATASET_BYTES;
    this.parseHeapMb = options.parseHeapMb ?? DEFAULT_DATASET_PARSE_HEAP_MB;
    this.parseTimeoutMs = options.parseTimeoutMs ?? DEFAULT_DATASET_PARSE_TIMEOUT_MS;
  }

  /** Stores an uploaded file; returns the source to put in a job spec (`upload:<id>`). */
  async saveUpload(
    body: AsyncIterable<Buffer>,
    name: string,
  ): Promise<{ source: string; bytes: number; sha256: string }> {
    const dir = join(this.dataDir, 'uploads');
    await mkdir(dir, { recursive: true });
    const id = `${randomUUID()}-${name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)}`;
    const tmp = join(dir, `.${id}.tmp`);
    const hash = createHash('sha256');
    let bytes = 0;
    const limit = this.maxBytes;
    async function* counted() {
      for await (const chunk of body) {
        bytes += chunk.length;
        if (bytes > limit) throw new InvalidDataError(`upload exceeds ${limit} bytes`, 'body');
        hash.update(chunk);
        yield chunk;
      }
    }
    try {
      await pipeline(counted, createWriteStream(tmp));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await rename(tmp, join(dir, id));
    return { source: `upload:${id}`, bytes, sha256: hash.digest('hex') };
  }

  /**
   * Parses and encodes the dataset of a job into `<jobDir>/data` on a thread of its own
   * (`dataset-prepare-thread.ts`) with a heap cap (`parseHeapMb`) and a deadline
   * (`parseTimeoutMs`); undefined for the built-in MNIST. Labels are checked against the
   * job's `labels` kind; `numClasses` is the target width: the class count, or 1 for binary
   * and regression labels. Past either limit the thread is stopped and the job refused with
   * what to do instead (a named dataset streams any size).
   */
  async prepare(
    jobId: string,
    jobDir: string,
    spec: DatasetSpec,
    labels: LabelKind = 'class',
  ): Promise<PreparedDataset | undefined> {
    if (spec === 'mnist') return undefined;
    if ('name' in spec) throw new Error('named datasets are prepared by the dataset catalog');
    const field = `dataset.${Object.keys(spec)[0] ?? ''}`;
    const data: PrepareThreadData = {
      jobId,
      jobDir,
      spec,
      labels,
      options: {
        dataDir: this.dataDir,
        roots: this.options.roots ?? [],
        urlAllow: this.options.urlAllow ?? [],
        maxBytes: this.maxBytes,
      },
    };
    const thread = startThread('dataset-prepare-thread', {
      workerData: data,
      name: `prepare-${jobId}`,
      resourceLimits: { maxOldGenerationSizeMb: this.parseHeapMb },
    });
    const alternative = 'ingest it as a named dataset (gradfleet dataset ingest), which streams files of any size';
    return new Promise<PreparedDataset>((resolve, reject) => {
      let settled = false;
      const end = (f: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        void thread.terminate();
        f();
      };
      const timer = setTimeout(
        () =>
          end(() => {
            this.options.log?.warn({ job_id: jobId, limit_ms: this.parseTimeoutMs }, 'dataset preparation timed out');
            reject(
              new InvalidDataError(
                `reading and parsing the dataset took longer than ${this.parseTimeoutMs / 1000} s (--dataset-parse-timeout-s); ${alternative}`,
                field,
              ),
            );
          }),
        this.parseTimeoutMs,
      );
      thread.on('message', (m: PrepareThreadMessage) => {
        if (m.t === 'note') this.options.log?.warn({ job_id: jobId, ...m.fields }, m.message);
        else if (m.t === 'done') end(() => resolve(m.prepared));
        else if (m.t === 'invalid') end(() => reject(new InvalidDataError(m.message, m.path ?? field)));
        else end(() => reject(new Error(`dataset preparation failed (${m.code ?? m.name})`)));
      });
      thread.on('error', (err: NodeJS.ErrnoException) =>
        end(() => {
          if (err.code !== 'ERR_WORKER_OUT_OF_MEMORY')
            return reject(new Error(`dataset preparation thread failed (${err.code ?? err.name})`));
          this.options.log?.warn({ job_id: jobId, limit_mb: this.parseHeapMb }, 'dataset preparation out of memory');
          reject(
            new InvalidDataError(
              `parsing the dataset needed more than the ${this.parseHeapMb} MiB the coordinator allows (--dataset-parse-heap-mb); ${alternative}`,
              field,
            ),
          );
        }),
      );
      thread.on('exit', (code) => end(() => reject(new Error(`dataset preparation thread exited (${code})`))));
    });
  }
}
