import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { refusal } from './helpers/api.js';
import { TestCluster } from './helpers/cluster.js';

const SECRET = 'SECRET_TOKEN_4d1e9b';

/** `rows` examples of `features` small integers and a class label, as CSV with a header. */
function csv(rows: number, features: number): string {
  const head = ['label', ...Array.from({ length: features }, (_, i) => `f${i}`)].join(',');
  const lines = [head];
  for (let r = 0; r < rows; r++)
    lines.push([r % 3, ...Array.from({ length: features }, (_, i) => (r * 7 + i) % 256)].join(','));
  return lines.join('\n') + '\n';
}

const mlp = (features: number) => ({
  class_name: 'Sequential',
  config: {
    name: 'm',
    layers: [{ class_name: 'Dense', config: { units: 3, activation: 'softmax', batch_input_shape: [null, features] } }],
  },
});

describe('waiting jobs are capped in the bytes of their dataset shards', () => {
  const cluster = new TestCluster();
  afterAll(() => cluster.stop());

  it('refuses a job whose shards would pass --max-queued-data-bytes (429 QUEUE_FULL), keeps nothing of it, and accepts it once room is made', async () => {
    const LIMIT = 100_000;
    await cluster.startCoordinator(['--max-queued-data-bytes', String(LIMIT)]);
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-queued-bytes-'));
    writeFileSync(join(dir, 'd.csv'), csv(1000, 10));
    // No worker connects: every job waits.
    const spec = { dataset: { csv: { train: join(dir, 'd.csv') } }, model: { topology: mlp(10) }, epochs: 1 };
    const a = await cluster.client.submit(spec);
    const shard = a.dataset!.train.bytes;
    expect(2 * shard).toBeLessThanOrEqual(LIMIT); // two fit, a third does not
    expect(3 * shard).toBeGreaterThan(LIMIT);
    await cluster.client.submit(spec);
    const err = await refusal(cluster.client.submit(spec));
    expect([err.status, err.code]).toEqual([429, 'QUEUE_FULL']);
    expect(err.message).toContain(`--max-queued-data-bytes ${LIMIT}`);
    expect(err.message).toContain('gradfleet dataset ingest');
    await cluster.waitForLog('QUEUE_FULL');
    // The refused job's shards were removed: only the two waiting jobs have directories.
    expect(readdirSync(join(cluster.dataDir, 'jobs')).sort()).toEqual(
      (await cluster.client.jobs()).map((j) => j.id).sort(),
    );
    await cluster.client.cancel(a.id);
    expect((await cluster.client.submit(spec)).state).toBe('QUEUED');
  });
});

describe('dataset files are parsed off the event loop, with a heap cap', () => {
  const cluster = new TestCluster();
  afterAll(() => cluster.stop());

  it('answers /healthz promptly while a large CSV parses', async () => {
    await cluster.startCoordinator();
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-parse-'));
    writeFileSync(join(dir, 'big.csv'), csv(120_000, 100));
    // Polls /healthz every 20 ms while the job is submitted; the slowest answer is the longest
    // the event loop was blocked (a parse on the main thread blocks it for the whole parse).
    let slowest = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t0 = performance.now();
        expect((await fetch(`${cluster.url}/healthz`)).status).toBe(200);
        slowest = Math.max(slowest, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t0 = performance.now();
    const job = await cluster.client.submit({
      dataset: { csv: { train: join(dir, 'big.csv') } },
      model: { topology: mlp(100) },
      epochs: 1,
    });
    const took = performance.now() - t0;
    polling = false;
    await poller;
    expect(job.dataset!.train.examples).toBe(120_000);
    expect(took).toBeGreaterThan(1000); // long enough that a blocked loop would show
    expect(slowest).toBeLessThan(took / 3);
  });

  it('refuses a CSV that outgrows --dataset-parse-heap-mb without echoing it, and keeps serving', async () => {
    await cluster.stop();
    await cluster.startCoordinator(['--dataset-parse-heap-mb', '64']);
    const before = (await cluster.client.jobs()).map((j) => j.id);
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-parse-'));

    // Three million tiny lines: 12 MB on disk, far more than 64 MiB of per-line work in a parser.
    writeFileSync(join(dir, 'tiny.csv'), `${SECRET},x\n` + '1,2\n'.repeat(3_000_000));
    const err = await refusal(
      cluster.client.submit({ dataset: { csv: { train: join(dir, 'tiny.csv') } }, model: { topology: mlp(1) } }),
    );
    expect([err.status, err.code]).toEqual([400, 'INVALID_DATA']);
    expect(err.message).toContain('--dataset-parse-heap-mb');
    expect(JSON.stringify(err)).not.toContain(SECRET);
    expect((await fetch(`${cluster.url}/healthz`)).status).toBe(200);
    expect((await cluster.client.jobs()).map((j) => j.id)).toEqual(before);
  });
});
