import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxRelativeDifference, selectBackend, type JobStatus } from '@gradfleet/core';
import { runCli } from './helpers/cli.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { smallMlpTopology } from './helpers/models.js';
import { freePort } from './helpers/prometheus.js';

/** Bytes of dataset chunks a worker has downloaded so far (its own /metrics). */
async function fetchedBytes(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /^gradfleet_replica_chunk_fetched_bytes_total (\S+)$/m.exec(text);
  if (!m) throw new Error('no gradfleet_replica_chunk_fetched_bytes_total on the worker');
  return Number(m[1]);
}

/**
 * The windowed shuffle of chunked datasets (docs/datasets.md): 37 chunks in windows of 8,
 * two workers each owning half of every window, with caches of about ten chunks.
 */
describe('chunked datasets larger than a shuffle window', () => {
  const cluster = new TestCluster();
  let mnist: SmallMnist;
  let ports: number[];
  let datasetBytes = 0;
  const EPOCHS = 2;
  const job = (windowChunks: number, workers: number) => ({
    model: { topology: smallMlpTopology() },
    dataset: { name: 'mnist-windows' },
    epochs: EPOCHS,
    batchSize: 64,
    validationSplit: 0,
    learningRate: 0.01,
    minWorkers: workers,
    maxWorkers: workers,
    seed: 11,
    shuffleWindowChunks: windowChunks,
  });
  const run = async (spec: unknown): Promise<{ job: JobStatus; fetched: number[] }> => {
    const before = await Promise.all(ports.map(fetchedBytes));
    const submitted = await cluster.client.submit(spec as never);
    const done = await cluster.client.waitForJob(submitted.id);
    expect(done.state, `${done.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    const after = await Promise.all(ports.map(fetchedBytes));
    return { job: done, fetched: after.map((a, i) => a - before[i]!) };
  };

  beforeAll(async () => {
    await selectBackend('wasm');
    mnist = await writeSmallMnist(3000, 500);
    await cluster.startCoordinator();
    ports = [await freePort(), await freePort()];
    ports.forEach((p, i) =>
      cluster.startWorker(['--name', `win-${i}`, '--cache-bytes', '700000', '--metrics-port', String(p)]),
    );
    await cluster.client.waitForWorkers(2, 60_000);
    const { trainImages, trainLabels, testImages, testLabels } = mnist.dataset.idx;
    const c = ['--coordinator', cluster.url];
    const ingested = await runCli([
      'dataset',
      'ingest',
      trainImages,
      '--idx-labels',
      trainLabels,
      '--test',
      testImages,
      '--test-labels',
      testLabels,
      '--name',
      'mnist-windows',
      '--chunk-bytes',
      '65536',
      ...c,
    ]);
    expect(ingested.code, ingested.out).toBe(0);
    const [info] = JSON.parse((await runCli(['dataset', 'ls', '--json', ...c])).out) as {
      bytes: number;
      train: { chunks: number };
    }[];
    expect(info!.train.chunks).toBe(37);
    datasetBytes = info!.bytes;
  });
  afterAll(async () => {
    await cluster.stop();
    rmSync(mnist.dir, { recursive: true, force: true });
  });

  it('each worker downloads about its share of the chunks, where a global shuffle makes both fetch nearly all; audits stay exact', async () => {
    const windowed = await run(job(8, 2));
    const global = await run(job(1000, 2));
    for (const r of [windowed, global]) {
      expect(r.job.history.every((h) => h.audit.ok)).toBe(true);
      expect(r.job.result!.testAccuracy).toBeGreaterThan(0.8);
    }
    const trainBytes = (datasetBytes * 3000) / 3500;
    const testBytes = (datasetBytes * 500) / 3500;
    const share = (trainBytes * EPOCHS) / 2;
    console.log(
      `chunk bytes fetched per worker: windowed ${windowed.fetched.join(', ')}; global ${global.fetched.join(', ')}; share ${Math.round(share)}`,
    );
    // Its share of each epoch's training chunks (+20 %), and the test split it evaluates.
    for (const f of windowed.fetched) expect(f).toBeLessThanOrEqual(1.2 * share + testBytes);
    for (const f of global.fetched) expect(f).toBeGreaterThan(1.5 * share);
  });

  it('trains the same model on one worker as on two (same global batch), windowed', async () => {
    const two = await run(job(8, 2));
    const one = await run(job(8, 1));
    const weights = async (id: string) => new Float32Array((await cluster.client.model(id)).weights);
    const diff = maxRelativeDifference(await weights(one.job.id), await weights(two.job.id));
    console.log(`windowed: one worker vs two, worst relative weight difference ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
  });
});
