import { rmSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { freePort } from './helpers/prometheus.js';

/** The value of the series `series` (name and labels as printed) in a /metrics text. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

/** 100 MNIST examples of 784 + 4 bytes per chunk: every chunk of the dataset below is full, so all have one size. */
const CHUNK_BYTES = 100 * 788;

describe('data-loading metrics across processes', () => {
  const cluster = new TestCluster();
  let mnist: SmallMnist;
  let workerPort = 0;
  const job = (dataset: unknown) => ({
    dataset,
    epochs: 1,
    batchSize: 50,
    validationSplit: 0,
    minWorkers: 1,
    maxWorkers: 1,
    seed: 3,
  });
  const scrape = async (url: string) => (await fetch(`${url}/metrics`)).text();

  beforeAll(async () => {
    mnist = await writeSmallMnist(1000, 200);
    await cluster.startCoordinator();
    workerPort = await freePort();
    // A cache of about two and a half chunks (of 78,800 decoded bytes): most steps fetch.
    cluster.startWorker(['--name', 'loader', '--cache-bytes', '200000', '--metrics-port', String(workerPort)]);
    await cluster.client.waitForWorkers(1, 60_000);
  });
  afterAll(async () => {
    await cluster.stop();
    rmSync(mnist.dir, { recursive: true, force: true });
  });

  it('measures ingestion, the data wait of each step, and the worker chunk cache', async () => {
    // Ingestion: the coordinator counts what its thread read and wrote.
    await cluster.client.ingestDataset('small', { source: { idx: mnist.dataset.idx }, chunkBytes: CHUNK_BYTES });
    let info = await cluster.client.dataset('small');
    for (let i = 0; i < 300 && info.state === 'INGESTING'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      info = await cluster.client.dataset('small');
    }
    expect(info.state, JSON.stringify(info.error)).toBe('READY');
    expect([info.train!.chunks, info.test!.chunks]).toEqual([10, 2]);
    const sources = Object.values(mnist.dataset.idx).reduce((n, f) => n + statSync(f).size, 0);
    const coord = await scrape(cluster.url);
    expect(value(coord, 'gradfleet_ingest_read_bytes_total')).toBe(sources);
    expect(value(coord, 'gradfleet_ingest_written_bytes_total')).toBe(info.bytes);
    expect(value(coord, 'gradfleet_ingest_examples_total')).toBe(1200);
    expect(value(coord, 'gradfleet_ingestions_running')).toBe(0);
    const chunkSize = info.bytes! / 12; // every chunk is full, so all have this size
    expect(Number.isInteger(chunkSize)).toBe(true);

    // A chunked job: its steps wait for chunks, and the coordinator sees that wait per step.
    const chunked = await cluster.client.waitForJob((await cluster.client.submit(job({ name: 'small' }) as never)).id);
    expect(chunked.state, `${chunked.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    const after = await scrape(cluster.url);
    const phase = (id: string, what: 'count' | 'sum') =>
      value(after, `gradfleet_step_phase_seconds_${what}{job_id="${id}",phase="data_wait"}`);
    expect(phase(chunked.id, 'count')).toBe(chunked.progress.step); // one observation per gradient: 20 steps × 1 worker
    expect(phase(chunked.id, 'sum')).toBeGreaterThan(0);
    expect(chunked.timing!.dataWaitMs).toBeGreaterThan(0);
    const status = await runCli(['status', chunked.id, '--coordinator', cluster.url]);
    expect(status.code, status.out).toBe(0);
    expect(status.out).toMatch(/step [\d.]+ ms: data wait [\d.]+, compute [\d.]+, apply/);

    // The worker's own /metrics: every download is one chunk of the manifest's size and counts
    // once as a miss or a prefetch (steps waiting on one download each count a miss).
    const worker = await scrape(`http://127.0.0.1:${workerPort}`);
    const misses = value(worker, 'gradfleet_replica_chunk_cache_misses_total');
    const hits = value(worker, 'gradfleet_replica_chunk_cache_hits_total');
    const prefetched = value(worker, 'gradfleet_replica_chunk_prefetched_total');
    const downloads = value(worker, 'gradfleet_replica_chunk_fetched_bytes_total') / chunkSize;
    expect(Number.isInteger(downloads), `${downloads} chunks`).toBe(true);
    expect(downloads).toBeGreaterThanOrEqual(12); // each chunk at least once (the test split is evaluated)
    expect(downloads).toBeLessThanOrEqual(misses + prefetched);
    expect(value(worker, 'gradfleet_replica_chunk_cache_limit_bytes')).toBe(200_000);
    expect(value(worker, 'gradfleet_replica_chunk_cache_bytes')).toBeLessThanOrEqual(200_000); // nothing pinned now
    expect(value(worker, 'gradfleet_replica_data_wait_seconds_count')).toBe(chunked.progress.step);
    expect(value(worker, 'gradfleet_replica_data_wait_seconds_sum')).toBeGreaterThan(0);

    // The hit ratio reaches `gradfleet status` with the worker's next heartbeat (every 2 s).
    const expected = hits / (hits + misses);
    let ratio: number | undefined;
    for (let i = 0; i < 60 && ratio !== expected; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      ratio = (await cluster.client.workers())[0]?.stats?.chunkCacheHitRatio;
    }
    expect(ratio).toBe(expected);
    const overview = await runCli(['status', '--coordinator', cluster.url]);
    expect(overview.out).toContain(`chunk cache ${(expected * 100).toFixed(1)}% hits`);

    // An in-memory job waits for nothing.
    const inMemory = await cluster.client.waitForJob((await cluster.client.submit(job(mnist.dataset) as never)).id);
    expect(inMemory.state).toBe('SUCCEEDED');
    expect(inMemory.timing!.dataWaitMs).toBe(0);
    const last = await scrape(cluster.url);
    expect(value(last, `gradfleet_step_phase_seconds_count{job_id="${inMemory.id}",phase="data_wait"}`)).toBe(
      inMemory.progress.step,
    );
    expect(value(last, `gradfleet_step_phase_seconds_sum{job_id="${inMemory.id}",phase="data_wait"}`)).toBe(0);
    expect(value(await scrape(`http://127.0.0.1:${workerPort}`), 'gradfleet_replica_chunk_cache_misses_total')).toBe(
      misses,
    );
  });
});
