import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpecInput } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';

/** Test-only slowdown of one worker (apps/worker/src/test-faults.ts): busy-waits this long per example. */
const SLOW_MS_PER_EXAMPLE = 4;

describe('sliceBalance: throughput gives a slow worker a smaller slice', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;
  let spec: JobSpecInput;

  beforeAll(async () => {
    data = await writeSmallMnist(1920, 100);
    spec = {
      dataset: data.dataset,
      epochs: 1,
      batchSize: 64,
      validationSplit: 0,
      minWorkers: 2,
      maxWorkers: 2,
      stragglerDeadlineFactor: 0, // every step waits for the slow worker: nothing is excused
    };
    await cluster.startCoordinator();
    cluster.startWorker(['--name', 'fast']);
    cluster.startWorker(['--name', 'slow'], { GRADFLEET_TEST_SLOW_MS_PER_EXAMPLE: String(SLOW_MS_PER_EXAMPLE) });
    await cluster.client.waitForWorkers(2, 60_000);
  });
  afterAll(() => cluster.stop());

  /** The slow worker's share of the job's examples, the job's step time, and its straggler metrics. */
  async function run(sliceBalance: 'equal' | 'throughput') {
    const job = await cluster.client.submit({ ...spec, sliceBalance });
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.history.every((h) => h.audit.ok && h.samples === data.trainCount)).toBe(true);
    const slow = (await cluster.client.workers()).find((w) => w.name === 'slow')!.id;
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    const value = (name: string, worker: string) =>
      Number(new RegExp(`^${name}\\{job_id="${job.id}",worker="${worker}"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    const ids = (await cluster.client.workers()).map((w) => w.id);
    const total = ids.reduce((n, id) => n + (value('gradfleet_worker_samples_total', id) || 0), 0);
    return {
      share: value('gradfleet_worker_samples_total', slow) / total,
      stepMs: done.result!.wallTimeMs / done.result!.steps,
      stragglerEvents: value('gradfleet_straggler_events_total', slow),
      excused: value('gradfleet_excused_slices_total', slow),
    };
  }

  it('shrinks the slow worker slice and the step time; "arrived last" and "excused" are counted apart', async () => {
    const equal = await run('equal');
    const balanced = await run('throughput');
    console.log('slow worker share and step time', { equal, balanced });
    expect(equal.share).toBeCloseTo(0.5, 2);
    expect(balanced.share).toBeLessThan(0.25);
    expect(balanced.stepMs).toBeLessThan(0.7 * equal.stepMs);
    // Equal slices: the slow worker is last nearly every step, but never excused (no deadline).
    expect(equal.stragglerEvents).toBeGreaterThan(10);
    expect(equal.excused).toBe(0);
  });
});
