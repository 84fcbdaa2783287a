import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpecInput, JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

const topology = dropoutFreeMlp;
const HEARTBEAT_TIMEOUT_MS = 2_000;
/** The backup-worker test's slow worker: stopped this long (ms)... */
const STOP_MS = 50;
/** ...then left running this long (ms), over and over. */
const RUN_MS = 200;

async function until(c: TestCluster, id: string, ok: (j: JobStatus) => boolean): Promise<JobStatus> {
  for (let i = 0; i < 3000; i++) {
    const j = await c.client.job(id);
    if (ok(j)) return j;
    await new Promise((r) => setTimeout(r, 30));
  }
  throw new Error('timed out');
}

const exact = (j: JobStatus, n: number) => j.history.every((h) => h.audit.ok && h.audit.seen === n);

describe('elastic membership and faults (real worker processes)', () => {
  let data: SmallMnist;
  let spec: JobSpecInput;
  let reference: JobStatus;
  const clusters: TestCluster[] = [];
  const start = async (workers: number, env: NodeJS.ProcessEnv = {}) => {
    const c = new TestCluster();
    clusters.push(c);
    await c.startCoordinator(
      ['--heartbeat-interval-ms', '500', '--heartbeat-timeout-ms', String(HEARTBEAT_TIMEOUT_MS)],
      0,
      env,
    );
    await c.startWorkers(workers);
    return c;
  };

  beforeAll(async () => {
    data = await writeSmallMnist(6000, 1000);
    spec = {
      model: { topology },
      dataset: data.dataset,
      epochs: 2,
      batchSize: 32,
      seed: 5,
      minWorkers: 2,
      checkpointEverySteps: 0,
    };
    const c = await start(2);
    reference = await c.client.waitForJob((await c.client.submit(spec)).id);
    expect(reference.state).toBe('SUCCEEDED');
    await c.stop();
  });
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.stop()));
  });

  it('a worker SIGKILLed mid-epoch: the step completes from the survivors, the epoch is exact, accuracy holds', async () => {
    const c = await start(3);
    const job = await c.client.submit({ ...spec, maxWorkers: 3 });
    await until(c, job.id, (j) => j.workers.length === 3 && j.progress.step >= 40);
    c.processes[2]!.kill('SIGKILL');
    const done = await c.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(exact(done, 5400)).toBe(true);
    expect((await c.client.logs(job.id)).some((l) => /worker w\d+ left/.test(l.line))).toBe(true);
    expect(Math.abs(done.result!.testAccuracy! - reference.result!.testAccuracy!)).toBeLessThanOrEqual(0.005);
  });

  it('a worker started mid-epoch joins at a step boundary with the live state and contributes; no one restarts', async () => {
    const c = await start(2);
    const job = await c.client.submit({ ...spec, maxWorkers: 3 });
    await until(c, job.id, (j) => j.progress.step >= 30);
    c.startWorker(['--name', 'late']);
    const joined = await until(c, job.id, (j) => j.workers.length === 3 || j.state !== 'RUNNING');
    expect(joined.state).toBe('RUNNING');
    const done = await c.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(exact(done, 5400)).toBe(true);
    expect((await c.client.logs(job.id)).some((l) => /joined at step \d+/.test(l.line))).toBe(true);
    const late = (await c.client.workers()).find((w) => w.name === 'late')!;
    expect(late.stats!.samples).toBeGreaterThan(0);
    expect(done.replicas.divergences).toBe(0);
    expect(Math.abs(done.result!.testAccuracy! - reference.result!.testAccuracy!)).toBeLessThanOrEqual(0.005);
  });

  it('a worker whose link goes silent (socket open, process stopped) is dropped within the heartbeat timeout', async () => {
    const c = await start(3);
    const job = await c.client.submit({ ...spec, maxWorkers: 3 });
    await until(c, job.id, (j) => j.workers.length === 3 && j.progress.step >= 30);
    const victim = c.processes[3]!;
    victim.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const dropped = await until(c, job.id, (j) => j.workers.length === 2 || j.state !== 'RUNNING');
    const detectedMs = Date.now() - stoppedAt;
    victim.kill('SIGCONT');
    expect(detectedMs).toBeLessThan(HEARTBEAT_TIMEOUT_MS + 1_500);
    expect(dropped.state).toBe('RUNNING');
    const done = await c.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(exact(done, 5400)).toBe(true);
    expect(Math.abs(done.result!.testAccuracy! - reference.result!.testAccuracy!)).toBeLessThanOrEqual(0.005);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/gradfleet_worker_deaths_total [1-9]/);
  });

  it('below minWorkers the job pauses in place (API and metrics) and resumes when a worker comes back', async () => {
    const c = await start(2);
    const job = await c.client.submit({ ...spec, epochs: 3, minWorkers: 2, maxWorkers: 2 });
    await until(c, job.id, (j) => j.progress.step >= 30);
    c.processes[1]!.kill('SIGKILL');
    const paused = await until(c, job.id, (j) => j.state === 'PAUSED');
    expect(paused.reason).toMatch(/1 of minWorkers 2/);
    expect(await (await fetch(`${c.url}/metrics`)).text()).toMatch(/gradfleet_jobs\{state="PAUSED"\} 1/);
    c.startWorker(['--name', 'replacement']);
    const done = await c.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.events.map((e) => e.state)).toEqual(expect.arrayContaining(['PAUSED', 'RUNNING']));
    expect(exact(done, 5400)).toBe(true);
    expect(done.replicas.divergences).toBe(0);
  });

  it('backup workers: steps finish without the slowest gradient; its slices go back to the pool and are trained once', async () => {
    // Info level: the coordinator logs each excused slice ("straggler: backup workers ...").
    const c = await start(3, { GRADFLEET_LOG_LEVEL: 'info' });
    const job = await c.client.submit({ ...spec, epochs: 1, minWorkers: 3, maxWorkers: 3, backupWorkers: 1 });
    await until(c, job.id, (j) => j.progress.step >= 5);
    // test-1 is stopped in short pulses: late for a few steps each time, then catching up.
    const slow = c.processes[1]!;
    let running = true;
    const pulse = async () => {
      while (running) {
        slow.kill('SIGSTOP');
        await new Promise((r) => setTimeout(r, STOP_MS));
        slow.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, RUN_MS));
      }
    };
    const pulses = pulse();
    const done = await c.client.waitForJob(job.id).finally(async () => {
      running = false;
      await pulses;
    });
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(exact(done, 5400)).toBe(true);
    expect(done.replicas.divergences).toBe(0);
    // Excused slices went back to the pool and were trained once (the exact audit above): each
    // step that excused one completed fewer examples than its batch, so the epoch took more than
    // ceil(5400 / 32) steps, and the coordinator logged each excused slice.
    expect(done.result!.steps).toBeGreaterThan(Math.ceil(5400 / 32));
    const excused = c.log.match(/straggler: backup workers: enough gradients are in/g) ?? [];
    expect(excused.length).toBeGreaterThanOrEqual(done.result!.steps - Math.ceil(5400 / 32));
    // The excused worker stays: its late gradients (for every step it was excused from) are dropped,
    // not taken for a protocol violation. (A worker that falls more than two steps of updates
    // behind is still closed as a slow reader, the documented bound on what is queued for it.)
    const left = (await c.client.logs(job.id)).map((l) => l.line).filter((l) => /worker w\d+ left/.test(l));
    expect(left.filter((l) => !/SLOW_READER/.test(l))).toEqual([]);
  });

  it('chaos: workers SIGKILLed and restarted every second for a whole MNIST epoch; the audit stays exact', async () => {
    const c = await start(4);
    const job = await c.client.submit({
      model: 'mnist-mlp',
      dataset: 'mnist',
      epochs: 1,
      batchSize: 64,
      minWorkers: 2,
      maxWorkers: 4,
      checkpointEverySteps: 0,
    });
    await until(c, job.id, (j) => j.progress.step >= 10);
    let kills = 0;
    // RUNNING, or PAUSED in place while too few workers are up: both are chaos targets.
    for (let round = 0; ['RUNNING', 'PAUSED'].includes((await c.client.job(job.id)).state) && round < 60; round++) {
      const alive = c.processes.slice(1).filter((p) => p.exitCode === null && p.signalCode === null);
      if (alive.length > 2) {
        alive[Math.floor(Math.random() * alive.length)]!.kill('SIGKILL');
        kills++;
      }
      c.startWorker(['--name', `chaos-${round}`]);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const done = await c.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(kills).toBeGreaterThan(3);
    expect(done.history[0]!.audit).toMatchObject({ ok: true, seen: 54000, missing: 0, duplicated: 0 });
    expect(done.replicas.divergences).toBe(0);
    expect(done.result!.testAccuracy).toBeGreaterThan(0.93);
  });
});
