import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BackendSelection } from '@gradfleet/core';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the chunk metrics read at scrape time: the worker's `DataCache` (chunked datasets). */
export interface ChunkSource {
  readonly chunks: {
    readonly hits: number;
    readonly misses: number;
    readonly prefetched: number;
    readonly bytes: number;
    readonly maxBytes: number;
  };
  readonly fetchedChunkBytes: number;
}

/** A counter that follows a running total kept elsewhere (it only goes up: a smaller total adds nothing). */
function follow(counter: Counter, total: number, seen: { n: number }): void {
  if (total > seen.n) counter.inc(total - seen.n);
  seen.n = Math.max(seen.n, total);
}

/**
 * Metrics a worker serves itself (`--metrics-port`), for sites that scrape workers
 * directly; catalogued in docs/metrics.md. The coordinator exports the same facts per
 * worker, so scraping workers is optional.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly r = [this.registry];
  readonly compute = new Histogram({
    name: 'gradfleet_replica_compute_seconds',
    help: 'Forward+backward time of one slice (its wait for examples not included).',
    buckets: BUCKETS,
    registers: this.r,
  });
  readonly dataWait = new Histogram({
    name: 'gradfleet_replica_data_wait_seconds',
    help: 'Time the compute of one slice waited for its examples (chunks fetched); 0 for in-memory data.',
    buckets: BUCKETS,
    registers: this.r,
  });
  readonly apply = new Histogram({
    name: 'gradfleet_replica_apply_seconds',
    help: 'Time to apply one averaged gradient.',
    buckets: BUCKETS,
    registers: this.r,
  });
  readonly samples = new Counter({
    name: 'gradfleet_replica_samples_total',
    help: 'Training examples this worker computed gradients for.',
    registers: this.r,
  });
  readonly steps = new Counter({
    name: 'gradfleet_replica_steps_total',
    help: 'Gradients this worker sent.',
    registers: this.r,
  });
  readonly connected = new Gauge({
    name: 'gradfleet_replica_connected',
    help: '1 while connected to the coordinator.',
    registers: this.r,
  });
  readonly tensors: Gauge = new Gauge({
    name: 'gradfleet_replica_backend_tensors',
    help: 'Tensors alive in the TF.js engine.',
    registers: this.r,
    collect: (): void => this.tensors.set(tf.memory().numTensors),
  });
  readonly memory: Gauge = new Gauge({
    name: 'gradfleet_replica_backend_memory_bytes',
    help: 'Bytes held by the TF.js engine.',
    registers: this.r,
    collect: (): void => this.memory.set(tf.memory().numBytes),
  });
  readonly info = new Gauge({
    name: 'gradfleet_replica_info',
    help: 'Always 1; labels describe this worker.',
    labelNames: ['name', 'host', 'backend', 'provider', 'device'],
    registers: this.r,
  });
  private chunkSource: ChunkSource | undefined;
  /** What the counters took from the current source so far. */
  private seen = { hits: { n: 0 }, misses: { n: 0 }, prefetched: { n: 0 }, fetched: { n: 0 } };
  readonly chunkHits: Counter = new Counter({
    name: 'gradfleet_replica_chunk_cache_hits_total',
    help: 'Dataset chunks a step or evaluation found in the chunk cache.',
    registers: this.r,
    collect: (): void => follow(this.chunkHits, this.chunkSource?.chunks.hits ?? 0, this.seen.hits),
  });
  readonly chunkMisses: Counter = new Counter({
    name: 'gradfleet_replica_chunk_cache_misses_total',
    help: 'Dataset chunks a step or evaluation had to fetch.',
    registers: this.r,
    collect: (): void => follow(this.chunkMisses, this.chunkSource?.chunks.misses ?? 0, this.seen.misses),
  });
  readonly chunkPrefetched: Counter = new Counter({
    name: 'gradfleet_replica_chunk_prefetched_total',
    help: 'Dataset chunks fetched ahead on a coordinator hint that landed before a step asked for them.',
    registers: this.r,
    collect: (): void => follow(this.chunkPrefetched, this.chunkSource?.chunks.prefetched ?? 0, this.seen.prefetched),
  });
  readonly chunkFetchedBytes: Counter = new Counter({
    name: 'gradfleet_replica_chunk_fetched_bytes_total',
    help: 'Bytes of dataset chunks downloaded and verified (as stored).',
    registers: this.r,
    collect: (): void => follow(this.chunkFetchedBytes, this.chunkSource?.fetchedChunkBytes ?? 0, this.seen.fetched),
  });
  readonly chunkCacheBytes: Gauge = new Gauge({
    name: 'gradfleet_replica_chunk_cache_bytes',
    help: 'Bytes of decoded dataset chunks held (the chunks of a batch in use may exceed the limit).',
    registers: this.r,
    collect: (): void => this.chunkCacheBytes.set(this.chunkSource?.chunks.bytes ?? 0),
  });
  readonly chunkCacheLimit: Gauge = new Gauge({
    name: 'gradfleet_replica_chunk_cache_limit_bytes',
    help: 'Bytes of decoded dataset chunks the cache keeps (--cache-bytes).',
    registers: this.r,
    collect: (): void => this.chunkCacheLimit.set(this.chunkSource?.chunks.maxBytes ?? 0),
  });
  private server: Server | undefined;

  constructor(name: string, backend: BackendSelection) {
    collectDefaultMetrics({ register: this.registry });
    this.info.set(
      { name, host: hostname(), backend: backend.backend, provider: backend.provider, device: backend.device },
      1,
    );
  }

  /** Reads the chunk metrics from `source` at each scrape (the worker session's dataset cache); its totals count from 0. */
  watchChunks(source: ChunkSource): void {
    if (source === this.chunkSource) return;
    this.chunkSource = source;
    this.seen = { hits: { n: 0 }, misses: { n: 0 }, prefetched: { n: 0 }, fetched: { n: 0 } };
  }

  /** Whether the worker is connected to its coordinator (readiness). */
  isConnected = false;

  /**
   * Serves `/metrics`, `/healthz` (liveness) and `/readyz` (connected to the coordinator) on
   * `port`, on loopback unless `host` says otherwise (`--metrics-host`).
   */
  async serve(port: number, host = '127.0.0.1'): Promise<number> {
    this.server = createServer((req, res) => {
      if (req.url === '/healthz')
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      if (req.url === '/readyz')
        return void res
          .writeHead(this.isConnected ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ready: this.isConnected }));
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      void this.registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
    return (this.server.address() as { port: number }).port;
  }

  close(): void {
    this.server?.close();
  }
}
