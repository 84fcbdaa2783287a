import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradfleetClient, loadDataset, parseCsv, selectBackend } from '@gradfleet/core';
import { runCli } from './helpers/cli.js';
import { TestCluster } from './helpers/cluster.js';

/** MNIST examples as CSV: a header, the label first, 784 pixel columns (0-255). */
function csvOf(split: Awaited<ReturnType<typeof loadDataset>>['train'], n: number): string {
  const rows = ['label,' + Array.from({ length: 784 }, (_, i) => `p${i}`).join(',')];
  for (let i = 0; i < n; i++)
    rows.push(`${split.y[i]},${Array.from(split.x.subarray(i * 784, (i + 1) * 784)).join(',')}`);
  return rows.join('\n') + '\n';
}

describe('a CSV dataset uploaded through the CLI', () => {
  const cluster = new TestCluster();
  let dir: string;

  beforeAll(async () => {
    await selectBackend('wasm');
    dir = mkdtempSync(join(tmpdir(), 'gradfleet-csv-'));
    const mnist = await loadDataset('mnist');
    writeFileSync(join(dir, 'train.csv'), csvOf(mnist.train, 3000));
    writeFileSync(join(dir, 'test.csv'), csvOf(mnist.test!, 500));
    writeFileSync(
      join(dir, 'job.json'),
      JSON.stringify({
        model: 'mnist-mlp',
        dataset: { csv: { train: 'filled in by --data', featureScale: 1 / 255 } },
        epochs: 2,
        batchSize: 32,
        minWorkers: 2,
      }),
    );
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  it('trains, and its downloaded model loads with tf.loadLayersModel and reproduces the reported test accuracy', async () => {
    const c = ['--coordinator', cluster.url];
    const submitted = await runCli([
      'submit',
      join(dir, 'job.json'),
      '--data',
      join(dir, 'train.csv'),
      '--test-data',
      join(dir, 'test.csv'),
      '--follow',
      ...c,
    ]);
    expect(submitted.code, submitted.out).toBe(0);
    const id = /job ([0-9a-f-]{36}) /.exec(submitted.out)![1]!;
    const job = await cluster.client.job(id);
    expect(job.state).toBe('SUCCEEDED');
    expect(job.dataset?.train.examples).toBe(3000);
    const reported = job.result!.testAccuracy!;
    expect(reported).toBeGreaterThan(0.8);

    const out = join(dir, 'model');
    const dl = await runCli(['download', id, '--out', out, ...c]);
    expect(dl.code, dl.out).toBe(0);
    const modelJson = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as {
      modelTopology: object;
      weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
    };
    const weights = readFileSync(join(out, 'weights.bin'));
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory(
        modelJson.modelTopology,
        modelJson.weightsManifest[0]!.weights,
        weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      ),
    );
    const test = parseCsv(readFileSync(join(dir, 'test.csv'), 'utf8'), 'test.csv', { featureScale: 1 / 255 }).split;
    const x = tf.tensor2d(
      Float32Array.from(test.x, (v) => v * test.scale),
      [test.count, 784],
    );
    const predicted = tf.argMax(model.predict(x) as tf.Tensor, -1).dataSync();
    let correct = 0;
    for (let i = 0; i < test.count; i++) if (predicted[i] === test.y[i]) correct++;
    expect(Math.abs(correct / test.count - reported)).toBeLessThanOrEqual(1 / test.count);
  });
});

describe('a JSON Lines dataset at a URL', () => {
  const cluster = new TestCluster();
  let server: Server;
  let hits = 0;

  beforeAll(async () => {
    const mnist = await loadDataset('mnist');
    const lines = (split: typeof mnist.train, n: number) =>
      Array.from({ length: n }, (_, i) =>
        JSON.stringify({ x: Array.from(split.x.subarray(i * 784, (i + 1) * 784), (v) => v / 255), y: split.y[i] }),
      ).join('\n');
    const files: Record<string, string> = {
      '/train.jsonl': lines(mnist.train, 1500),
      '/test.jsonl': lines(mnist.test!, 300),
    };
    server = createServer((req, res) => {
      hits++;
      const body = files[req.url ?? ''];
      res.writeHead(body ? 200 : 404).end(body ?? '');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    // An address named on the allow list is allowed as named, loopback included.
    await cluster.startCoordinator(['--dataset-url-allow', '127.0.0.1']);
    await cluster.startWorkers(2);
  });
  afterAll(async () => {
    server.close();
    await cluster.stop();
  });

  it('is fetched once by the coordinator and trains on workers that never see the URL', async () => {
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const client = new GradfleetClient(cluster.url);
    const spec = {
      model: 'mnist-mlp' as const,
      dataset: { jsonl: { train: `${base}/train.jsonl`, test: `${base}/test.jsonl` } },
      epochs: 1,
      minWorkers: 2,
    };
    const a = await client.waitForJob((await client.submit(spec)).id);
    const b = await client.waitForJob((await client.submit(spec)).id);
    expect([a.state, b.state]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(a.dataset?.train.examples).toBe(1500);
    expect(a.result!.testAccuracy).toBeGreaterThan(0.7);
    expect(hits).toBe(2); // train + test, once for both jobs
    const events: string[] = [];
    for await (const ev of client.watch(b.id)) events.push(ev.type);
    expect(events[0]).toBe('status');
  });
});
