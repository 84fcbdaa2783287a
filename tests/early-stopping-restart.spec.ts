import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';
import { freePort } from './helpers/prometheus.js';

/**
 * `earlyStopping.restoreBestWeights` across a coordinator SIGKILL (issue #14): the best
 * epoch's weights live on disk (`<job>/best/epoch-N/`), so a coordinator killed after the best
 * epoch and restarted on the same data dir resumes the job, stops it where it would have
 * stopped, and the downloaded model is still the best epoch's.
 */

const TRAIN = 600;
const VALIDATION = 0.2; // 480 training examples
const BATCH = 50;
const STEPS_PER_EPOCH = Math.ceil((TRAIN * (1 - VALIDATION)) / BATCH); // 10
const PATIENCE = 5;

async function until(cluster: TestCluster, id: string, ok: (j: JobStatus) => boolean): Promise<JobStatus> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const j = await cluster.client.job(id);
    if (ok(j)) return j;
    if (j.state !== 'RUNNING' && j.state !== 'QUEUED')
      throw new Error(`job ${id} ended (${j.state}: ${j.reason}) before the test could kill its coordinator`);
    if (Date.now() > deadline) throw new Error(`job ${id} never got there; step ${j.progress.step}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

describe('earlyStopping.restoreBestWeights across a coordinator restart', () => {
  const cluster = new TestCluster();
  afterAll(() => cluster.stop());

  it('resumes after a SIGKILL past the best epoch and still delivers the best epoch’s weights', async () => {
    const data = await writeSmallMnist(TRAIN, 40);
    const port = await freePort();
    const first = await cluster.startCoordinator([], port);
    await cluster.startWorkers(2);
    // val_loss must beat the best by more than 100: epoch 1 beats ∞, no later epoch beats it,
    // so epoch 1 is the best whatever the values, and the job stops after epoch 1 + PATIENCE.
    const job = await cluster.client.submit({
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 20,
      batchSize: BATCH,
      validationSplit: VALIDATION,
      seed: 11,
      minWorkers: 2,
      maxWorkers: 2,
      earlyStopping: { monitor: 'val_loss', minDelta: 100, patience: PATIENCE, restoreBestWeights: true },
    });

    // The checkpoint at the end of epoch 1 holds the best epoch's weights: take them while it is kept.
    await until(cluster, job.id, (j) => (j.checkpoint?.epoch ?? 0) >= 1);
    const best = Buffer.from((await cluster.client.checkpointModel(job.id, STEPS_PER_EPOCH)).weights);

    // Kill once a later checkpoint (naming epoch 1 as the best) exists, well before the stop.
    const before = await until(cluster, job.id, (j) => (j.checkpoint?.epoch ?? 0) >= 2);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(before.earlyStopping?.bestEpoch).toBe(0);
    expect(before.history.length).toBeLessThan(1 + PATIENCE); // it had not stopped
    const bestDir = join(cluster.dataDir, 'jobs', job.id, 'best', 'epoch-0');
    expect(Buffer.compare(readFileSync(join(bestDir, 'weights.bin')), best)).toBe(0);

    await cluster.startCoordinator([], port); // same data dir, same port: the workers reconnect
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(done.events.find((e) => e.state === 'PAUSED')?.reason).toMatch(/coordinator restarted/);
    const logs = (await cluster.client.logs(job.id)).map((l) => l.line).join('\n');
    expect(logs).toMatch(/resuming from the checkpoint at step \d+/);
    expect(logs).toContain('restored the weights of epoch 1');

    // Stopped where an uninterrupted run stops; every epoch counted once (a resume from an
    // epoch-end checkpoint starts the next epoch's totals from zero).
    expect(done.earlyStopping).toMatchObject({ bestEpoch: 0, stoppedEpoch: PATIENCE, wait: PATIENCE });
    expect(done.history).toHaveLength(1 + PATIENCE);
    expect(done.history.map((h) => [h.samples, h.steps, h.audit.ok])).toEqual(
      done.history.map(() => [TRAIN * (1 - VALIDATION), STEPS_PER_EPOCH, true]),
    );
    expect(done.result?.steps).toBe((1 + PATIENCE) * STEPS_PER_EPOCH);

    // The model is the best epoch's weights, not the last trained ones.
    const model = Buffer.from((await cluster.client.model(job.id)).weights);
    expect(Buffer.compare(model, best)).toBe(0);
    const last = (await cluster.client.checkpoints(job.id)).at(-1)!;
    expect(last.step).toBe(PATIENCE * STEPS_PER_EPOCH); // the end of the epoch before the stop
    expect(
      Buffer.compare(model, Buffer.from((await cluster.client.checkpointModel(job.id, last.step)).weights)),
    ).not.toBe(0);
    expect(existsSync(join(cluster.dataDir, 'jobs', job.id, 'best'))).toBe(false);
  });
});
