import { MAX_PREFETCH_CHUNKS } from '../protocol/constants.js';
import type { DecodedChunk } from './chunk-format.js';
import { featureSizeOf, type DatasetManifest, type SplitName } from './dataset-manifest.js';

/** Default bytes of decoded chunks a worker keeps (`--cache-bytes`). */
export const DEFAULT_CACHE_BYTES = 1024 * 1024 * 1024;
/** Chunks fetched at once by one split for a step. */
const FETCH_CONCURRENCY = 4;
/** Chunks prefetched at once, besides a step's own fetches (which never wait for these). */
const PREFETCH_CONCURRENCY = 2;

/** Fetches and verifies one chunk (`verifyChunk`); the worker's goes over HTTP. */
export type ChunkFetcher = (split: SplitName, index: number) => Promise<DecodedChunk>;

/** An LRU of decoded chunks shared by the splits of one worker, bounded in bytes. */
export class ChunkCache {
  private readonly map = new Map<string, { chunk: DecodedChunk; bytes: number; pins: number }>();
  bytes = 0;
  hits = 0;
  misses = 0;
  fetchedBytes = 0;
  /**
   * Chunks a hint fetched ahead (`ChunkedSplit.prefetch`) that landed before a step took
   * their fetch over. A step that joins a prefetch still in flight counts a miss instead, so every
   * download counts once as a miss or a prefetch; steps that wait on the same download (the
   * probe and the first step, say) each count a miss: fetched chunks ≤ misses + prefetched.
   */
  prefetched = 0;

  constructor(readonly maxBytes = DEFAULT_CACHE_BYTES) {}

  get(key: string): DecodedChunk | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key); // most recently used last
    this.map.set(key, e);
    return e.chunk;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  /** Adds a fetched chunk pinned once (or pins the copy already there). */
  putPinned(key: string, chunk: DecodedChunk): void {
    const e = this.map.get(key);
    if (e) {
      e.pins++;
      return;
    }
    const bytes = chunk.x.byteLength + chunk.y.byteLength;
    this.map.set(key, { chunk, bytes, pins: 1 });
    this.bytes += bytes;
    this.fetchedBytes += bytes;
    this.evict();
  }

  pin(key: string, by: number): void {
    const e = this.map.get(key);
    if (e) e.pins += by;
  }

  /** Drops least recently used chunks until under the limit; pinned chunks (a batch in use) stay. */
  evict(): void {
    for (const [key, e] of this.map) {
      if (this.bytes <= this.maxBytes) return;
      if (e.pins > 0) continue;
      this.map.delete(key);
      this.bytes -= e.bytes;
    }
  }
}

/**
 * A split of a chunked dataset on a worker: only the chunks that hold the examples it is
 * asked for are fetched (`ensure`), kept in a byte-bounded LRU (`ChunkCache`), and gathered
 * into batches synchronously (`gather`) while pinned. A batch whose chunks exceed the cache
 * is still served: its chunks stay pinned until `release`, then the cache shrinks back.
 */
export class ChunkedSplit {
  readonly count: number;
  readonly featureSize: number;
  readonly scale: number;
  private readonly inflight = new Map<number, Promise<DecodedChunk>>();
  /** Hinted chunks waiting for a prefetch slot, in hint order. */
  private readonly hinted: number[] = [];
  private prefetching = 0;
  /** Chunks whose in-flight fetch a hint started and no step has joined yet. */
  private readonly prefetchOwned = new Set<number>();

  constructor(
    readonly manifest: DatasetManifest,
    readonly split: SplitName,
    private readonly cache: ChunkCache,
    private readonly fetch: ChunkFetcher,
    /** Distinguishes datasets in a shared cache (the manifest's SHA-256). */
    private readonly key: string,
  ) {
    const s = manifest.splits[split];
    if (!s) throw new RangeError(`the dataset has no ${split} split`);
    this.count = s.examples;
    this.featureSize = featureSizeOf(manifest);
    this.scale = manifest.scale;
  }

  private chunkKey(i: number): string {
    return `${this.key}/${this.split}/${i}`;
  }

  /** The chunks holding `indices`, each once, in index order. */
  chunksOf(indices: ArrayLike<number>): number[] {
    const per = this.manifest.chunkExamples;
    const set = new Set<number>();
    for (let j = 0; j < indices.length; j++) {
      const idx = indices[j]!;
      if (!(idx >= 0 && idx < this.count))
        throw new RangeError(`example index ${idx} outside a split of ${this.count}`);
      set.add(Math.floor(idx / per));
    }
    return [...set].sort((a, b) => a - b);
  }

  /** Fetches (or finds in the cache) every chunk holding `indices` and pins them until `release`. */
  async ensure(indices: ArrayLike<number>): Promise<number[]> {
    const chunks = this.chunksOf(indices);
    const pinned: number[] = [];
    const missing: number[] = [];
    for (const c of chunks) {
      if (this.cache.has(this.chunkKey(c))) {
        this.cache.pin(this.chunkKey(c), 1);
        pinned.push(c);
      } else missing.push(c);
    }
    if (missing.length === 0) this.cache.hits += chunks.length;
    else {
      this.cache.hits += chunks.length - missing.length;
      this.cache.misses += missing.length;
      for (const c of missing) this.prefetchOwned.delete(c); // the step takes over a prefetch in flight
    }
    // Fetches already running (prefetches) are joined now, before they land: a prefetch a step
    // joined leaves its chunk to the step, so the step must be waiting for it when it lands
    // (joining later, after the fetch ended, would download the chunk again). One that fails
    // is fetched again by the step. The rest are fetched FETCH_CONCURRENCY at a time.
    const joined: Promise<void>[] = [];
    const queue: number[] = [];
    for (const c of missing) {
      const running = this.inflight.get(c);
      if (!running) queue.push(c);
      else
        joined.push(
          running
            .catch(() => this.fetchOnce(c))
            .then((chunk) => {
              this.cache.putPinned(this.chunkKey(c), chunk);
              pinned.push(c);
            }),
        );
    }
    let next = 0;
    const run = async () => {
      while (next < queue.length) {
        const c = queue[next++]!;
        const key = this.chunkKey(c);
        if (this.cache.has(key)) {
          // A prefetch started after this step asked, and landed first: a hit after all.
          this.cache.misses--;
          this.cache.hits++;
          this.cache.pin(key, 1);
          pinned.push(c);
          continue;
        }
        // A prefetch started after this step asked and still running: the step takes it over (its miss).
        if (this.inflight.has(c)) this.prefetchOwned.delete(c);
        this.cache.putPinned(key, await this.fetchOnce(c));
        pinned.push(c);
      }
    };
    try {
      await Promise.all([...joined, ...Array.from({ length: Math.min(FETCH_CONCURRENCY, queue.length) }, run)]);
    } catch (err) {
      this.release(pinned);
      throw err;
    }
    return chunks;
  }

  /** One fetch of chunk `c`, shared by whoever asks while it runs (a step and a prefetch alike). */
  private fetchOnce(c: number): Promise<DecodedChunk> {
    let p = this.inflight.get(c);
    if (!p) {
      p = this.fetch(this.split, c);
      p.finally(() => this.inflight.delete(c)).catch(() => undefined);
      this.inflight.set(c, p);
    }
    return p;
  }

  /**
   * Fetches the hinted chunks this worker lacks into the cache, unpinned, at most
   * `PREFETCH_CONCURRENCY` at a time; returns at once. A step that needs a chunk being
   * prefetched waits for that same fetch. Failures are dropped: the step's own `ensure`
   * fetches again and reports. Indices outside the split are ignored.
   */
  prefetch(chunks: readonly number[]): void {
    const n = Math.ceil(this.count / this.manifest.chunkExamples);
    for (const c of chunks)
      if (Number.isInteger(c) && c >= 0 && c < n && !this.cache.has(this.chunkKey(c)) && !this.inflight.has(c))
        this.hinted.push(c);
    // Hints faster than the fetches: the oldest are stale by now (their steps have passed).
    if (this.hinted.length > MAX_PREFETCH_CHUNKS) this.hinted.splice(0, this.hinted.length - MAX_PREFETCH_CHUNKS);
    while (this.prefetching < PREFETCH_CONCURRENCY && this.hinted.length > 0) {
      const c = this.hinted.shift()!;
      if (this.cache.has(this.chunkKey(c)) || this.inflight.has(c)) continue;
      this.prefetching++;
      this.prefetchOwned.add(c);
      this.fetchOnce(c)
        .then((chunk) => {
          const key = this.chunkKey(c);
          // A step joined this fetch (it counted the miss and caches the chunk), or it is cached.
          if (!this.prefetchOwned.has(c) || this.cache.has(key)) return;
          this.cache.putPinned(key, chunk);
          this.cache.prefetched++;
          this.release([c]);
        })
        .catch(() => undefined)
        .finally(() => {
          this.prefetchOwned.delete(c);
          this.prefetching--;
          this.prefetch([]);
        });
    }
  }

  /** Unpins the chunks `ensure` returned. */
  release(chunks: readonly number[]): void {
    for (const c of chunks) this.cache.pin(this.chunkKey(c), -1);
    this.cache.evict();
  }

  /**
   * Copies the examples at `indices` (their chunks pinned by `ensure`) into `xOut` (scaled
   * to float) and their targets into `yOut`, as `gatherBatch` does for an in-memory split.
   */
  gather(
    indices: ArrayLike<number>,
    numClasses: number,
    xOut: Float32Array,
    yOut: Float32Array,
    targets: 'one-hot' | 'value',
  ): void {
    const per = this.manifest.chunkExamples;
    const f = this.featureSize;
    const scale = this.scale;
    yOut.fill(0, 0, indices.length * numClasses);
    for (let j = 0; j < indices.length; j++) {
      const idx = indices[j]!;
      const chunk = this.cache.get(this.chunkKey(Math.floor(idx / per)));
      if (!chunk) throw new Error(`example ${idx}: its chunk was not fetched (call ensure first)`);
      const at = idx % per;
      const src = at * f;
      const dst = j * f;
      const x = chunk.x;
      for (let k = 0; k < f; k++) xOut[dst + k] = x[src + k]! * scale;
      const label = chunk.y[at]!;
      if (targets === 'value') yOut[j] = label;
      else if (label < numClasses) yOut[j * numClasses + label] = 1;
    }
  }
}
