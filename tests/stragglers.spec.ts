import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpecInput, JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

/** Long enough that a stopped worker is never dropped for silence here, in ms: only the step rules act. */
const HEARTBEAT_TIMEOUT_MS = 60_000;
/** The straggler deadline under test (the spec's floor), in ms. */
const DEADLINE_MS = 300;
/** How long the straggler is stopped: ten deadlines, in ms. */
const STOP_MS = 3_000;
/** The step timeout under test, in ms. */
const STEP_TIMEOUT_MS = 1_500;
const TRAIN_SEEN = 2700; // 3000 examples less the 10 % validation tail

const exact = (j: JobStatus) => j.history.every((h) => h.audit.ok && h.audit.seen === TRAIN_SEEN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the straggler deadline and stepTimeoutMs (a worker stopped with SIGSTOP)', () => {
  const cluster = new TestCluster();
  let spec: JobSpecInput;

  async function until(id: string, ok: (j: JobStatus) => boolean): Promise<JobStatus> {
    for (let i = 0; i < 6000; i++) {
      const j = await cluster.client.job(id);
      if (ok(j)) return j;
      await sleep(20);
    }
    throw new Error(`job ${id} never got there`);
  }
  const samplesOf = async (name: string) =>
    (await cluster.client.workers()).find((w) => w.name === name)?.stats?.samples ?? 0;

  beforeAll(async () => {
    const data = await writeSmallMnist(3000, 300);
    spec = {
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 1,
      batchSize: 16,
      seed: 21,
      minWorkers: 2,
      maxWorkers: 3,
      checkpointEverySteps: 0,
    };
    // Info level: the coordinator logs each excused slice ("straggler: past the straggler deadline ...").
    await cluster.startCoordinator(['--heartbeat-timeout-ms', String(HEARTBEAT_TIMEOUT_MS)], 0, {
      GRADFLEET_LOG_LEVEL: 'info',
    });
    await cluster.startWorkers(3);
  });
  afterAll(() => cluster.stop());

  it('past the straggler deadline the step completes without the stopped worker; it stays and trains again once resumed', async () => {
    const job = await cluster.client.submit({
      ...spec,
      stragglerDeadlineFactor: 4,
      stragglerMinDeadlineMs: DEADLINE_MS,
      stepTimeoutMs: 120_000,
    });
    await until(job.id, (j) => j.progress.step >= 20); // the deadline applies from step 10
    const slow = cluster.processes[1]!; // test-1
    slow.kill('SIGSTOP');
    const stepAtStop = (await cluster.client.job(job.id)).progress.step;
    await sleep(STOP_MS);
    const stepAtResume = (await cluster.client.job(job.id)).progress.step;
    const samplesAtResume = await samplesOf('test-1');
    slow.kill('SIGCONT');
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    // Steps went on while test-1 was stopped (a step timeout of 120 s would have held them all).
    expect(stepAtResume - stepAtStop).toBeGreaterThanOrEqual(2);
    // The deadline it logs is at least the floor (4 x the recent step time may be longer).
    const deadlines = [...cluster.log.matchAll(/straggler: past the straggler deadline \((\d+) ms\)/g)].map((m) =>
      Number(m[1]),
    );
    expect(deadlines.length).toBeGreaterThan(0);
    expect(Math.min(...deadlines)).toBeGreaterThanOrEqual(DEADLINE_MS);
    expect(exact(done)).toBe(true);
    expect(done.replicas.divergences).toBe(0);
    const log = (await cluster.client.logs(job.id)).map((l) => l.line);
    expect(log.filter((l) => /worker w\d+ left/.test(l))).toEqual([]); // excused, not dropped
    expect(await samplesOf('test-1')).toBeGreaterThan(samplesAtResume); // and it trained again
  });

  it('a worker silent past stepTimeoutMs (no straggler deadline) is closed with UNKNOWN_STEP; the others finish the epoch exactly', async () => {
    const job = await cluster.client.submit({ ...spec, stragglerDeadlineFactor: 0, stepTimeoutMs: STEP_TIMEOUT_MS });
    await until(job.id, (j) => j.progress.step >= 10 && j.workers.length === 3);
    const slow = cluster.processes[2]!; // test-2
    slow.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const dropped = await until(job.id, (j) => j.workers.length === 2 || j.state !== 'RUNNING');
    const detectedMs = Date.now() - stoppedAt;
    slow.kill('SIGCONT');
    expect(dropped.state).toBe('RUNNING');
    // Never before the timeout (less the part of the step already run before the stop).
    expect(detectedMs).toBeGreaterThanOrEqual(STEP_TIMEOUT_MS - 500);
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    const log = (await cluster.client.logs(job.id)).map((l) => l.line).join('\n');
    expect(log).toMatch(
      new RegExp(`worker w\\d+ left: .*UNKNOWN_STEP: no gradient for step \\d+ within ${STEP_TIMEOUT_MS} ms`),
    );
    expect(exact(done)).toBe(true);
    expect(done.replicas.divergences).toBe(0);
  });
});
