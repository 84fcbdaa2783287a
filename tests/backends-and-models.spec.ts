import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '@gradfleet/core';
import { ROOT, TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';

describe('backends and built-in models', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;

  beforeAll(async () => {
    data = await writeSmallMnist(1200, 300);
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  it('trains mnist-cnn on wasm across 2 workers (needs the registered Conv2DBackpropFilter)', async () => {
    const job = await cluster.client.submit({
      model: 'mnist-cnn',
      dataset: data.dataset,
      epochs: 1,
      batchSize: 32,
      validationSplit: 0,
      minWorkers: 2,
    });
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    expect(done.history[0]!.audit.ok).toBe(true);
    expect(done.replicas.divergences).toBe(0);
    expect(done.result!.testAccuracy).toBeGreaterThan(0.6);
  });

  it('reports each worker’s backend, and refuses a job whose data is missing with the file and field', async () => {
    const workers = await cluster.client.workers();
    expect(workers.map((w) => w.backend)).toEqual(['wasm', 'wasm']);
    const err = await cluster.client
      .submit({
        dataset: { idx: { trainImages: '/nonexistent/train.idx', trainLabels: '/nonexistent/labels.idx' } },
        epochs: 1,
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    expect((err as ApiError).issues[0]!.path).toMatch(/^dataset\.idx/);
    // Both files are missing; whichever is read first is named.
    expect((err as ApiError).message).toMatch(/\/nonexistent\/(train|labels)\.idx: cannot read \(ENOENT\)/);
    expect(await cluster.client.jobs()).toHaveLength(1); // nothing was queued
  });

  it('a worker asked for --backend tensorflow without TensorFlow installed exits 3 (BACKEND_UNAVAILABLE: not restarted) and says what to install', async () => {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'apps/worker/dist/main.js'), '--backend', 'tensorflow', '--coordinator', cluster.wsUrl],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(3); // EXIT_CODES.BACKEND_UNAVAILABLE (apps/worker/src/exit-codes.ts)
    expect(err).toMatch(/BACKEND_UNAVAILABLE/);
    expect(err).toMatch(/@tensorflow\/tfjs-node-gpu/);
  });
});
