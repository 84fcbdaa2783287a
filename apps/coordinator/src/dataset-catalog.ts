import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import {
  DATASET_NAME_PATTERN,
  IngestRequestSchema,
  InvalidIngestRequestError,
  InvalidJobSpecError,
  chunkName,
  parseManifest,
  sha256Hex,
  targetWidth,
  type DatasetInfo,
  type DataStore,
  type DatasetManifest,
  type IngestProgress,
  type LabelKind,
  type Logger,
} from '@gradfleet/core';
import { FsChunkStore, S3ChunkStore, type ChunkStore } from './chunk-store.js';
import { parseS3Url } from './s3-access.js';
import type { PreparedDataset } from './dataset-ingest.js';
import type { IngestLimits } from './dataset-ingest-pipeline.js';
import type { IngestThreadData, IngestThreadMessage } from './dataset-ingest-thread.js';
import { JobRequestError } from './job-manager.js';
import type { CoordinatorMetrics } from './metrics.js';
import { startThread } from './thread-module.js';
import type { DatasetSources, DatasetSourcesOptions } from './dataset-sources.js';

/** Heap cap of one ingestion thread, in MiB: a chunk (≤ 256 MiB) and a decoded image fit, a leak does not grow past it. */
export const INGEST_THREAD_HEAP_MB = 768;

interface Entry {
  info: DatasetInfo;
  manifest?: DatasetManifest;
  manifestBytes?: Buffer;
  thread?: Worker;
  /** Where the chunks are: a directory here, or an s3:// prefix. */
  store: string;
  /** Resolves when the ingestion ends (either way). */
  done?: Promise<void>;
  /** While INGESTING from another named dataset (`source.chunked.dataset`): its name. */
  copying?: string;
}

/** Progress and ends of ingestions, for the API's event streams and the metrics. */
export type CatalogListener = (info: DatasetInfo) => void;

const noProgress = (): IngestProgress => ({ bytesRead: 0, bytesTotal: 0, examples: 0, chunks: 0, bytesWritten: 0 });

/**
 * The coordinator's named datasets (`<dataDir>/datasets/<name>/`: `manifest.json` and the
 * chunks, or `manifest.json` and `store.json` when the chunks live in S3). Ingestion runs on
 * a worker thread per dataset; a failed or removed ingestion leaves nothing behind. Jobs that
 * use a dataset get hard links to its chunks in their own directory, so `rm` never pulls
 * data from under a running job (S3-stored datasets in use are refused instead).
 */
export class DatasetCatalog {
  private readonly entries = new Map<string, Entry>();
  readonly root: string;
  /** Names of datasets used by jobs that have not ended (set by the job manager). */
  inUse: (name: string) => boolean = () => false;
  /** Where ingestions count what they read and write (set by the coordinator). */
  metrics: Pick<CoordinatorMetrics, 'ingestReadBytes' | 'ingestWrittenBytes' | 'ingestExamples'> | undefined;

  constructor(
    private readonly dataDir: string,
    private readonly sourceOptions: Omit<DatasetSourcesOptions, 's3'>,
    private readonly sources: DatasetSources,
    private readonly limits: IngestLimits,
    private readonly log: Logger,
    private readonly makeS3Store?: (url: string) => ChunkStore,
  ) {
    this.root = join(dataDir, 'datasets');
  }

  /** Reads the datasets left by an earlier run; half-written ones (a crash mid-ingestion) are removed. */
  async load(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    for (const d of await readdir(this.root, { withFileTypes: true })) {
      if (!d.isDirectory()) continue;
      const dir = join(this.root, d.name);
      if (!DATASET_NAME_PATTERN.test(d.name)) {
        if (d.name.startsWith('.ingest-')) await rm(dir, { recursive: true, force: true });
        continue;
      }
      try {
        const bytes = await readFile(join(dir, 'manifest.json'));
        const manifest = parseManifest(bytes, `${d.name}/manifest.json`);
        const meta = JSON.parse(await readFile(join(dir, 'dataset.json'), 'utf8')) as {
          createdAt: string;
          store?: string;
        };
        this.entries.set(d.name, {
          info: this.readyInfo(d.name, meta.createdAt, manifest, meta.store),
          manifest,
          manifestBytes: bytes,
          store: meta.store ?? dir,
        });
      } catch (err) {
        this.log.warn({ dataset: d.name, err: (err as Error).message }, 'dataset skipped: unreadable manifest');
      }
    }
  }

  private readyInfo(name: string, createdAt: string, m: DatasetManifest, store?: string): DatasetInfo {
    const bytes = (['train', 'test'] as const).reduce(
      (sum, s) => sum + (m.splits[s]?.chunks.reduce((a, c) => a + c.bytes, 0) ?? 0),
      0,
    );
    return {
      name,
      state: 'READY',
      createdAt,
      progress: {
        bytesRead: 0,
        bytesTotal: 0,
        examples: m.splits.train.examples + (m.splits.test?.examples ?? 0),
        chunks: m.splits.train.chunks.length + (m.splits.test?.chunks.length ?? 0),
        bytesWritten: bytes,
      },
      featureShape: m.featureShape,
      dtype: m.dtype,
      labels: {
        kind: m.labels.kind,
        numClasses: m.labels.numClasses,
        ...(m.labels.classes ? { classes: m.labels.classes } : {}),
      },
      train: { examples: m.splits.train.examples, chunks: m.splits.train.chunks.length },
      ...(m.splits.test ? { test: { examples: m.splits.test.examples, chunks: m.splits.test.chunks.length } } : {}),
      bytes,
      ...(store ? { store } : {}),
    };
  }

  /** Ingestions running now. */
  running(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.info.state === 'INGESTING') n++;
    return n;
  }

  /** Adds what an ingestion did since its previous progress report to the metrics. */
  private count(prev: IngestProgress, next: IngestProgress): void {
    const m = this.metrics;
    if (!m) return;
    if (next.bytesRead > prev.bytesRead) m.ingestReadBytes.inc(next.bytesRead - prev.bytesRead);
    if (next.bytesWritten > prev.bytesWritten) m.ingestWrittenBytes.inc(next.bytesWritten - prev.bytesWritten);
    if (next.examples > prev.examples) m.ingestExamples.inc(next.examples - prev.examples);
  }

  list(): DatasetInfo[] {
    return [...this.entries.values()].map((e) => e.info).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get(name: string): DatasetInfo {
    return this.entry(name).info;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e)
      throw new JobRequestError(404, 'DATASET_NOT_FOUND', `no dataset named ${JSON.stringify(name.slice(0, 64))}`);
    return e;
  }

  /** Resolves once the named dataset's ingestion has ended (tests, the CLI's wait). */
  async settled(name: string): Promise<DatasetInfo> {
    const e = this.entry(name);
    await e.done;
    return e.info;
  }

  /**
   * Starts ingesting `input` (`IngestRequestSchema`) as `name` on a worker thread; answers at
   * once with the INGESTING dataset. A name already taken is refused (remove it first).
   */
  start(name: string, input: unknown): DatasetInfo {
    if (!DATASET_NAME_PATTERN.test(name))
      throw new InvalidIngestRequestError([
        { path: 'name', message: 'a dataset name is 1-64 of a-z 0-9 . _ - and starts with a letter or digit' },
      ]);
    if (this.entries.has(name))
      throw new JobRequestError(
        409,
        'DATASET_EXISTS',
        `dataset ${name} exists; remove it first (gradfleet dataset rm ${name})`,
      );
    const parsed = IngestRequestSchema.safeParse(input);
    if (!parsed.success)
      throw new InvalidIngestRequestError(
        parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      );
    const req = parsed.data;
    let sourceOptions = this.sourceOptions;
    let copying: string | undefined;
    if ('chunked' in req.source && 'dataset' in req.source.chunked) {
      copying = req.source.chunked.dataset;
      const from = this.entries.get(copying);
      const refuse = (path: string, message: string) => new InvalidIngestRequestError([{ path, message }]);
      if (!from) throw refuse('source.chunked.dataset', `no dataset named ${copying}; gradfleet dataset ls lists them`);
      if (from.info.state !== 'READY' || !from.manifest)
        throw refuse('source.chunked.dataset', `dataset ${copying} is ${from.info.state}, not READY`);
      if (from.manifest.labels.kind !== req.labels)
        throw refuse(
          'labels',
          `dataset ${copying} has labels '${from.manifest.labels.kind}'; give labels '${from.manifest.labels.kind}'`,
        );
      sourceOptions = {
        ...sourceOptions,
        datasets: { [copying]: { dir: join(this.root, copying), store: from.store } },
      };
    }
    const tmp = join(this.root, `.ingest-${name}-${randomUUID()}`);
    let store: string;
    if (req.store) {
      this.sources.s3Store(req.store); // refuses a bucket not on --dataset-s3-allow, before anything starts
      store = `${req.store.replace(/\/+$/, '')}/${name}/`;
    } else store = tmp;
    if ('chunked' in req.source) {
      // Reading and writing (and, on failure, removing) one S3 prefix would destroy the source.
      const src = 'dir' in req.source.chunked ? req.source.chunked.dir : sourceOptions.datasets![copying!]!.store;
      const norm = (u: string) => u.replace(/\/*$/, '/');
      if (store.startsWith('s3://') && (norm(store).startsWith(norm(src)) || norm(src).startsWith(norm(store))))
        throw new InvalidIngestRequestError([
          {
            path: 'dir' in req.source.chunked ? 'source.chunked.dir' : 'source.chunked.dataset',
            message: `the source ${norm(src)} and the new dataset's chunks ${store} overlap; choose another --store prefix`,
          },
        ]);
    }
    const info: DatasetInfo = { name, state: 'INGESTING', createdAt: new Date().toISOString(), progress: noProgress() };
    const entry: Entry = { info, store, ...(copying ? { copying } : {}) };
    this.entries.set(name, entry);
    const data: IngestThreadData = { request: input, sources: sourceOptions, limits: this.limits, store };
    const thread = startThread('dataset-ingest-thread', {
      workerData: data,
      name: `ingest-${name}`,
      resourceLimits: { maxOldGenerationSizeMb: INGEST_THREAD_HEAP_MB },
    });
    entry.thread = thread;
    this.log.info({ dataset: name, store: req.store ?? 'local' }, 'dataset ingestion started');
    entry.done = new Promise<void>((resolve) => {
      let ended = false;
      const fail = async (code: string, message: string, path?: string) => {
        if (ended) return;
        ended = true;
        entry.thread = undefined;
        entry.copying = undefined;
        // What was written goes first: once FAILED shows, nothing of the ingestion is left.
        await this.discard(store, tmp).catch(() => undefined);
        info.state = 'FAILED';
        info.error = { code, message: path ? `${path}: ${message}` : message };
        this.log.warn({ dataset: name, code, err: message.slice(0, 300) }, 'dataset ingestion failed');
        resolve();
      };
      thread.on('message', (m: IngestThreadMessage) => {
        if (m.t === 'progress') {
          this.count(info.progress, m.progress);
          info.progress = m.progress;
        } else if (m.t === 'failed') void fail(m.code, m.message, m.path);
        else if (m.t === 'done') {
          ended = true;
          entry.thread = undefined;
          entry.copying = undefined;
          void this.commit(name, entry, m.manifest, tmp, req.store ? store : undefined).then(resolve, (err: Error) => {
            ended = false;
            void fail('INGEST_FAILED', `cannot store the dataset (${(err as NodeJS.ErrnoException).code ?? err.name})`);
          });
        }
      });
      thread.on('error', (err) => void fail('INGEST_FAILED', `ingestion thread failed (${err.name})`));
      thread.on('exit', (code) => void fail('INGEST_FAILED', `ingestion thread exited (${code})`));
    });
    return info;
  }

  private async commit(name: string, entry: Entry, manifest: DatasetManifest, tmp: string, s3?: string): Promise<void> {
    const dir = join(this.root, name);
    const bytes = Buffer.from(JSON.stringify(manifest));
    const createdAt = entry.info.createdAt;
    await mkdir(tmp, { recursive: true });
    await writeFile(join(tmp, 'manifest.json'), bytes);
    await writeFile(join(tmp, 'dataset.json'), JSON.stringify({ createdAt, ...(s3 ? { store: s3 } : {}) }));
    if (this.entries.get(name) !== entry) return void (await rm(tmp, { recursive: true, force: true })); // removed meanwhile
    await rename(tmp, dir);
    entry.store = s3 ?? dir;
    entry.manifest = manifest;
    entry.manifestBytes = bytes;
    entry.info = this.readyInfo(name, createdAt, manifest, s3);
    this.log.info(
      { dataset: name, examples: manifest.splits.train.examples, bytes: entry.info.bytes },
      'dataset ready',
    );
  }

  private async discard(store: string, tmp: string): Promise<void> {
    await rm(tmp, { recursive: true, force: true });
    if (store.startsWith('s3://')) await this.s3Store(store).remove();
  }

  private s3Store(url: string): ChunkStore {
    if (this.makeS3Store) return this.makeS3Store(url);
    return new S3ChunkStore(this.sources.s3Store(url), url);
  }

  /** Removes a dataset (stops its ingestion first). Jobs holding links to its chunks keep them. */
  async remove(name: string): Promise<void> {
    const e = this.entry(name);
    const copier = [...this.entries.values()].find((o) => o.copying === name);
    if (copier)
      throw new JobRequestError(
        409,
        'DATASET_IN_USE',
        `dataset ${name} is being copied into ${copier.info.name}; wait for that ingestion or remove ${copier.info.name} first`,
      );
    if (e.store.startsWith('s3://') && this.inUse(name))
      throw new JobRequestError(
        409,
        'DATASET_IN_USE',
        `dataset ${name} is used by a job that has not ended; cancel it first`,
      );
    this.entries.delete(name);
    if (e.thread) await e.thread.terminate();
    await e.done;
    await rm(join(this.root, name), { recursive: true, force: true });
    if (e.store.startsWith('s3://'))
      await this.s3Store(e.store)
        .remove()
        .catch(() => undefined);
    this.log.info({ dataset: name }, 'dataset removed');
  }

  /**
   * Gives a job the named dataset: checked READY and against the job's labels, its manifest
   * and chunks linked into `<jobDir>/data/chunked/` (S3-stored chunks stay in S3; the job
   * records where). The workers fetch them through `/v1/jobs/:id/data/...`, or, with
   * `dataStore` 's3' (refused for a dataset stored here), the chunks straight from S3.
   */
  async prepareForJob(
    name: string,
    jobId: string,
    jobDir: string,
    labels: LabelKind,
    dataStore: DataStore = 'coordinator',
  ): Promise<PreparedDataset> {
    const e = this.entries.get(name);
    const issue = (message: string) => new InvalidJobSpecError([{ path: 'dataset.name', message }]);
    if (!e) throw issue(`no dataset named ${name}; gradfleet dataset ls lists them`);
    if (e.info.state !== 'READY' || !e.manifest || !e.manifestBytes)
      throw issue(`dataset ${name} is ${e.info.state}, not READY`);
    const m = e.manifest;
    if (m.labels.kind !== labels)
      throw issue(`dataset ${name} has labels '${m.labels.kind}'; the job says labels '${labels}'`);
    const s3 = e.store.startsWith('s3://') ? parseS3Url(e.store, 'dataStore') : undefined;
    if (dataStore === 's3' && !s3)
      throw new InvalidJobSpecError([
        {
          path: 'dataStore',
          message: `dataset ${name} is stored on the coordinator, not in S3: remove dataStore, or ingest it with --store s3://bucket/prefix`,
        },
      ]);
    const dir = join(jobDir, 'data', 'chunked');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'manifest.json'), e.manifestBytes);
    if (e.store.startsWith('s3://')) await writeFile(join(dir, 'store.json'), JSON.stringify({ store: e.store }));
    else
      for (const split of ['train', 'test'] as const)
        for (let i = 0; i < (m.splits[split]?.chunks.length ?? 0); i++)
          await link(join(e.store, chunkName(split, i)), join(dir, chunkName(split, i)));
    const remote = {
      path: `/v1/jobs/${jobId}/data/manifest`,
      bytes: e.manifestBytes.byteLength,
      sha256: sha256Hex(e.manifestBytes),
    };
    return {
      format: 'chunked',
      datasetName: name,
      chunkExamples: m.chunkExamples,
      train: { ...remote, examples: m.splits.train.examples },
      ...(m.splits.test
        ? { test: { ...remote, path: `/v1/jobs/${jobId}/data/manifest`, examples: m.splits.test.examples } }
        : {}),
      ...(dataStore === 's3' && s3 ? { s3: { bucket: s3.bucket, prefix: s3.key } } : {}),
      featureShape: m.featureShape,
      numClasses: targetWidth(labels, m.labels.numClasses),
    };
  }

  /** The store of a job's chunked data (`<jobDir>/data/chunked`, or the S3 prefix it records). */
  async jobStore(jobDir: string): Promise<ChunkStore> {
    const dir = join(jobDir, 'data', 'chunked');
    const meta = await readFile(join(dir, 'store.json'), 'utf8').catch(() => undefined);
    if (meta) return this.s3Store((JSON.parse(meta) as { store: string }).store);
    return new FsChunkStore(dir);
  }
}
