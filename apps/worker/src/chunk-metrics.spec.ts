import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedSplit, chunkName, selectBackend, sha256Hex, type DatasetManifest } from '@gradfleet/core';
import { DataCache } from './remote-data.js';
import { tinyChunkedDataset } from './tiny-dataset.fixture.js';
import { WorkerMetrics } from './worker-metrics.js';

/** 10 examples of 3 uint8 values in chunks of 4 (4, 4, 2), as a coordinator stores them. */
async function dataset(): Promise<{ manifest: DatasetManifest; files: Map<string, Uint8Array> }> {
  const { manifest, stored } = await tinyChunkedDataset(10);
  return { manifest, files: stored };
}

/** The value of an unlabelled series in a /metrics text. */
function value(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

describe('worker chunk-cache metrics', () => {
  let server: Server;
  let base = '';
  let manifest: DatasetManifest;
  let manifestBytes: Buffer;
  const requests: string[] = [];

  beforeAll(async () => {
    await selectBackend('cpu'); // the engine gauges read tf.memory()
    const d = await dataset();
    manifest = d.manifest;
    manifestBytes = Buffer.from(JSON.stringify(manifest));
    // A coordinator's job data routes: the manifest and each chunk as stored.
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url === '/v1/jobs/j/data/manifest') return void res.writeHead(200).end(manifestBytes);
      const m = /^\/v1\/jobs\/j\/data\/chunks\/train\/(\d+)$/.exec(req.url ?? '');
      const file = m ? d.files.get(chunkName('train', Number(m[1]))) : undefined;
      if (!file) return void res.writeHead(404).end();
      res.writeHead(200).end(file);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => server.close());

  it('counts hits, misses and fetched chunk bytes; shows the cache size and its limit', async () => {
    // Room for one decoded chunk of 4 examples (4 × 3 + 4 × 4 = 28 bytes): every other chunk evicts it.
    const cache = new DataCache(base, undefined, undefined, 30);
    const metrics = new WorkerMetrics('w', { backend: 'cpu', provider: 'p', device: 'd', reason: 'r' });
    metrics.watchChunks(cache);
    const port = await metrics.serve(0);
    const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    try {
      const before = await scrape();
      expect(value(before, 'gradfleet_replica_chunk_cache_misses_total')).toBe(0);
      expect(value(before, 'gradfleet_replica_chunk_cache_limit_bytes')).toBe(30);

      const data = await cache.get(
        {
          train: {
            path: '/v1/jobs/j/data/manifest',
            bytes: manifestBytes.byteLength,
            sha256: sha256Hex(manifestBytes),
          },
          format: 'chunked',
        },
        false,
      );
      const train = data.train as ChunkedSplit;
      const step = async (indices: number[]) => train.release(await train.ensure(indices));
      await step([0, 1]); // chunk 0: miss
      await step([2, 3]); // chunk 0: hit
      await step([4, 9]); // chunks 1 and 2: misses (chunk 0 evicted once they are released)
      await step([0]); // chunk 0 again: a miss
      const fetched = requests.filter((u) => u.includes('/chunks/'));
      expect(fetched).toEqual([
        '/v1/jobs/j/data/chunks/train/0',
        '/v1/jobs/j/data/chunks/train/1',
        '/v1/jobs/j/data/chunks/train/2',
        '/v1/jobs/j/data/chunks/train/0',
      ]);
      const text = await scrape();
      expect(value(text, 'gradfleet_replica_chunk_cache_hits_total')).toBe(1);
      expect(value(text, 'gradfleet_replica_chunk_cache_misses_total')).toBe(4);
      // What was downloaded, as stored: the manifest's sizes of the chunks fetched.
      const size = (i: number) => manifest.splits.train.chunks[i]!.bytes;
      expect(value(text, 'gradfleet_replica_chunk_fetched_bytes_total')).toBe(2 * size(0) + size(1) + size(2));
      expect(value(text, 'gradfleet_replica_chunk_cache_bytes')).toBe(28); // chunk 0, decoded
      expect(value(text, 'gradfleet_replica_chunk_cache_limit_bytes')).toBe(30);

      // Counters only go up, and a second scrape adds nothing that did not happen.
      await step([5]); // chunk 1: evicted, a miss
      const again = await scrape();
      expect(value(again, 'gradfleet_replica_chunk_cache_misses_total')).toBe(5);
      expect(value(again, 'gradfleet_replica_chunk_cache_hits_total')).toBe(1);
      expect(value(await scrape(), 'gradfleet_replica_chunk_cache_misses_total')).toBe(5);

      // A hinted chunk that lands before any step asks: a prefetch, not a miss; one more download.
      expect(value(again, 'gradfleet_replica_chunk_prefetched_total')).toBe(0);
      train.prefetch([2]);
      while (requests.filter((u) => u.includes('/chunks/')).length < 6) await new Promise((r) => setTimeout(r, 2));
      let late = await scrape();
      for (let i = 0; i < 100 && value(late, 'gradfleet_replica_chunk_prefetched_total') < 1; i++) {
        await new Promise((r) => setTimeout(r, 5));
        late = await scrape();
      }
      expect(value(late, 'gradfleet_replica_chunk_prefetched_total')).toBe(1);
      expect(value(late, 'gradfleet_replica_chunk_cache_misses_total')).toBe(5);
      expect(value(late, 'gradfleet_replica_chunk_fetched_bytes_total')).toBe(2 * size(0) + 2 * size(1) + 2 * size(2));
    } finally {
      metrics.close();
    }
  });
});
