import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

/** A short heartbeat timeout, in ms, so that a step several times longer stays cheap to run. */
const HEARTBEAT_TIMEOUT_MS = 2_000;
/** Test-only slowdown of every worker computation, in ms per example (`GRADFLEET_TEST_SLOW_MS_PER_EXAMPLE`). */
const SLOW_MS_PER_EXAMPLE = 100;
const BATCH = 64; // 32 examples per worker: a step of about 3.2 s, over the timeout

/**
 * Steps and evaluations longer than the heartbeat timeout: tfjs kernels are synchronous, so
 * a worker that computed a whole slice in one go would go silent and be dropped. The worker
 * cuts long computations into chunks and yields to the event loop between them.
 */
describe('computations longer than the heartbeat timeout (real worker processes)', () => {
  const c = new TestCluster();
  let data: SmallMnist;

  beforeAll(async () => {
    data = await writeSmallMnist(256, 100); // 4 steps, each over the timeout
    await c.startCoordinator([
      '--heartbeat-interval-ms',
      '500',
      '--heartbeat-timeout-ms',
      String(HEARTBEAT_TIMEOUT_MS),
    ]);
    for (const name of ['slow-1', 'slow-2'])
      c.startWorker(['--name', name], { GRADFLEET_TEST_SLOW_MS_PER_EXAMPLE: String(SLOW_MS_PER_EXAMPLE) });
    await c.client.waitForWorkers(2, 60_000);
  }, 120_000);
  afterAll(() => c.stop());

  it('a step and an evaluation each longer than the timeout: no worker is dropped, the job succeeds', async () => {
    const { id } = await c.client.submit({
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 1,
      batchSize: BATCH,
      validationSplit: 0,
      seed: 3,
      minWorkers: 1, // a dropped worker would not stall the job: the log below shows it instead
      maxWorkers: 2,
    });
    let job: JobStatus;
    const lost = () => c.client.logs(id).then((rows) => rows.filter((r) => /left|dropped/.test(r.line)));
    for (;;) {
      job = await c.client.job(id);
      const gone = await lost();
      expect(gone.map((r) => r.line)).toEqual([]); // fails as soon as a worker is lost
      if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.state)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(job.state, `${job.reason}\n${c.log}`).toBe('SUCCEEDED');
    expect(job.workers).toHaveLength(2);
    const steps = job.result!.steps;
    expect(steps).toBe(256 / BATCH);
    // Every step really ran longer than the heartbeat timeout (training time only).
    expect(job.result!.wallTimeMs / steps).toBeGreaterThan(HEARTBEAT_TIMEOUT_MS);
    const metrics = await fetch(`${c.url}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/^gradfleet_worker_deaths_total 0$/m);
    expect(await c.client.waitForWorkers(2, 10_000)).toHaveLength(2);
  }, 300_000);
});
