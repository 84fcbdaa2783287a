import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { maxRelativeDifference, type JobSpecInput, type JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

/** The step whose update the faulty worker corrupts: a checked step (checksumEverySteps 2) after the checkpoint at step 4. */
const CORRUPT_AT_STEP = 5;

/**
 * Replica checks end to end: one worker process corrupts its replica on purpose
 * (`GRADFLEET_TEST_CORRUPT_AT_STEP`, test-only) and the job must still end with the weights
 * of an undisturbed run: the majority wins, or with two replicas the update-stream
 * reference decides, or, when nothing can decide, the job rolls back to its checkpoint.
 */
describe('replica resync by majority (real worker processes, one corrupting its replica)', () => {
  let data: SmallMnist;
  let spec: JobSpecInput;
  let reference: Float32Array;
  const clusters: TestCluster[] = [];

  /** The coordinator's id of the worker named `name`. */
  async function idOf(c: TestCluster, name: string): Promise<string> {
    const w = (await c.client.workers()).find((x) => x.name === name);
    if (!w) throw new Error(`no worker named ${name}`);
    return w.id;
  }

  async function cluster(healthy: number, corrupt: 'weights' | 'update'): Promise<TestCluster> {
    const c = new TestCluster();
    clusters.push(c);
    await c.startCoordinator();
    for (let i = 0; i < healthy; i++) c.startWorker(['--name', `healthy-${i + 1}`]);
    c.startWorker(['--name', 'faulty'], {
      GRADFLEET_TEST_CORRUPT_AT_STEP: String(CORRUPT_AT_STEP),
      GRADFLEET_TEST_CORRUPT: corrupt,
    });
    await c.client.waitForWorkers(healthy + 1, 60_000);
    return c;
  }

  async function train(c: TestCluster, workers: number): Promise<{ job: JobStatus; weights: Float32Array }> {
    const { id } = await c.client.submit({ ...spec, minWorkers: workers, maxWorkers: workers });
    const job = await c.client.waitForJob(id);
    expect(job.state, `${job.reason}\n${c.log}`).toBe('SUCCEEDED');
    expect(job.history.every((h) => h.audit.ok)).toBe(true);
    return { job, weights: new Float32Array((await c.client.model(id)).weights) };
  }

  const events = (job: JobStatus) => job.events.map((e) => e.reason).join('\n');

  beforeAll(async () => {
    data = await writeSmallMnist(600, 100);
    spec = {
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 2,
      batchSize: 64, // 10 steps per epoch
      validationSplit: 0,
      seed: 7,
      optimizer: 'adam',
      learningRate: 0.01,
      checksumEverySteps: 2,
      checkpointEverySteps: 4,
    };
    const c = new TestCluster();
    await c.startCoordinator();
    await c.startWorkers(2);
    const { job, weights } = await train(c, 2);
    expect(job.replicas.divergences).toBe(0);
    reference = weights;
    await c.stop();
  }, 180_000);
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.stop()));
  });

  it('three replicas, one with corrupted weights: the majority wins and the final weights are an undisturbed run’s', async () => {
    const c = await cluster(2, 'weights');
    const [faulty, h1, h2] = [await idOf(c, 'faulty'), await idOf(c, 'healthy-1'), await idOf(c, 'healthy-2')];
    const { job, weights } = await train(c, 3);
    const majority = [h1, h2].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    expect(events(job)).toMatch(
      new RegExp(
        `REPLICA DIVERGENCE after step ${CORRUPT_AT_STEP}: .*the majority (${majority.join(', ')}|${[...majority].reverse().join(', ')}) wins, resynchronising ${faulty} from it`,
      ),
    );
    expect(job.replicas.divergences).toBe(1);
    expect(job.replicas.rollbacks ?? 0).toBe(0);
    expect(maxRelativeDifference(weights, reference)).toBeLessThan(1e-4);
  }, 180_000);

  it('two replicas, one applied damaged update bytes: the update-stream reference names it', async () => {
    const c = await cluster(1, 'update');
    const [faulty, healthy] = [await idOf(c, 'faulty'), await idOf(c, 'healthy-1')];
    const { job, weights } = await train(c, 2);
    expect(events(job)).toContain(
      `; ${faulty} applied other update bytes than were sent; the majority ${healthy} wins, resynchronising ${faulty} from it`,
    );
    expect(job.replicas.divergences).toBe(1);
    expect(job.replicas.rollbacks ?? 0).toBe(0);
    expect(maxRelativeDifference(weights, reference)).toBeLessThan(1e-4);
  }, 180_000);

  it('two replicas, same update bytes, different weights: no one is trusted, the job rolls back to its checkpoint', async () => {
    const c = await cluster(1, 'weights');
    const { job, weights } = await train(c, 2);
    expect(events(job)).toMatch(/no majority among replicas that applied the same update bytes.*rolling back/);
    expect(job.events.some((e) => e.state === 'PAUSED')).toBe(true);
    expect(job.replicas.rollbacks).toBe(1);
    expect(maxRelativeDifference(weights, reference)).toBeLessThan(1e-4);
  }, 240_000);
});
