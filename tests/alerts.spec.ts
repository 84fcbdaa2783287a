import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpecInput } from '@gradfleet/core';
import { ROOT, TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { LyingWorker } from './helpers/lying-worker.js';
import { dropoutFreeMlp } from './helpers/models.js';
import { TestPrometheus, ensurePrometheus } from './helpers/prometheus.js';

const shipped = readFileSync(join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8');

/** Replaces every `from` in the rules (which must be there): the shipped rules, with shorter windows. */
function shorten(rules: string, from: string, to: string): string {
  if (!rules.includes(from)) throw new Error(`alerts.yml no longer contains ${from}: update this test`);
  return rules.replaceAll(from, to);
}

/**
 * The shipped rules with their windows shortened for a test: the throughput rule compares
 * the last 5 s with the 15 s before them, the straggler rule looks at 10 s, and no rule
 * waits (`for`) before firing. GradfleetJobStuck is made to fire in observability.spec.ts.
 */
const rules = [
  ['rate(gradfleet_samples_total[5m])', 'rate(gradfleet_samples_total[5s])'],
  ['rate(gradfleet_samples_total[1h] offset 5m)', 'rate(gradfleet_samples_total[15s] offset 5s)'],
  ['rate(gradfleet_straggler_events_total[10m])', 'rate(gradfleet_straggler_events_total[10s])'],
  ['rate(gradfleet_steps_total[10m])', 'rate(gradfleet_steps_total[10s])'],
  ['for: 10m', 'for: 0s'],
].reduce((r, [from, to]) => shorten(r, from!, to!), shipped);

/** How long an alert may take to fire once its condition holds, in ms (scrapes and evaluations every second). */
const FIRE_WITHIN_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('every alert rule fires against a real Prometheus scraping a real cluster', () => {
  const cluster = new TestCluster();
  const prom = new TestPrometheus();
  let spec: JobSpecInput;

  /** The alert's state for this job (and worker), or undefined when inactive. */
  async function alertState(name: string, labels: Record<string, string>): Promise<string | undefined> {
    const alerts = await prom.alerts();
    return alerts.find(
      (a) => a.labels['alertname'] === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v),
    )?.state;
  }
  async function firing(name: string, labels: Record<string, string> = {}): Promise<boolean> {
    const deadline = Date.now() + FIRE_WITHIN_MS;
    while (Date.now() < deadline) {
      if ((await alertState(name, labels)) === 'firing') return true;
      await sleep(500);
    }
    return false;
  }
  async function runningJob(overrides: Partial<JobSpecInput>, minStep = 10): Promise<string> {
    const job = await cluster.client.submit({ ...spec, ...overrides });
    for (let i = 0; i < 3000 && (await cluster.client.job(job.id)).progress.step < minStep; i++) await sleep(20);
    return job.id;
  }
  const workerId = async (name: string) => (await cluster.client.workers()).find((w) => w.name === name)!.id;

  beforeAll(async () => {
    ensurePrometheus();
    const data = await writeSmallMnist(3000, 300);
    spec = {
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 1000, // each test cancels its job once the alert fires
      batchSize: 32,
      seed: 31,
      minWorkers: 3,
      maxWorkers: 3,
      checkpointEverySteps: 0,
    };
    // Long heartbeat timeout: workers stopped on purpose stay in their job. The lying worker sends
    // its gradients on the control connection: the main-thread reducer (--reducer-threads 0).
    await cluster.startCoordinator(['--heartbeat-timeout-ms', '120000', '--reducer-threads', '0']);
    await cluster.startWorkers(3);
    const config = `global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [alerts.yml]
scrape_configs:
  - job_name: gradfleet-coordinator
    static_configs: [{ targets: ['${new URL(cluster.url).host}'] }]
`;
    await prom.start(config, rules);
    for (let i = 0; i < 100 && (await prom.query('up == 1')).length < 1; i++) await sleep(200);
  });
  afterAll(async () => {
    await prom.stop();
    await cluster.stop();
  });

  it('GradfleetReplicaDivergence: a member reports a checksum no other replica has', async () => {
    const id = await runningJob({ minWorkers: 3, maxWorkers: 4, checksumEverySteps: 5 });
    expect(await alertState('GradfleetReplicaDivergence', { job_id: id })).toBeUndefined();
    const liar = new LyingWorker(cluster.wsUrl, 'wrong-checksum', { trainCount: 3000, testCount: 300 });
    await liar.join();
    try {
      expect(await firing('GradfleetReplicaDivergence', { job_id: id })).toBe(true);
      expect(liar.lied).toBe(true);
    } finally {
      liar.close();
      await cluster.client.cancel(id);
      await cluster.client.waitForJob(id);
    }
  });

  it('GradfleetPersistentStraggler: one worker, stopped two thirds of the time, is last in most steps', async () => {
    const id = await runningJob({ stragglerDeadlineFactor: 0 }); // the step always waits for it
    const slowId = await workerId('test-1');
    expect(await alertState('GradfleetPersistentStraggler', { job_id: id, worker: slowId })).toBeUndefined();
    const slow = cluster.processes[1]!;
    let pulsing = true;
    const pulses = (async () => {
      while (pulsing) {
        slow.kill('SIGSTOP');
        await sleep(30);
        slow.kill('SIGCONT');
        await sleep(15);
      }
    })();
    try {
      expect(await firing('GradfleetPersistentStraggler', { job_id: id, worker: slowId })).toBe(true);
      // Only the slowed worker is flagged.
      for (const name of ['test-2', 'test-3'])
        expect(await alertState('GradfleetPersistentStraggler', { job_id: id, worker: await workerId(name) })).not.toBe(
          'firing',
        );
    } finally {
      pulsing = false;
      await pulses;
      await cluster.client.cancel(id);
      await cluster.client.waitForJob(id);
    }
  });

  it('GradfleetThroughputDropped: a running job whose workers all stop', async () => {
    const id = await runningJob({});
    await sleep(22_000); // the rule compares the last 5 s with the 15 s before them
    expect(await alertState('GradfleetThroughputDropped', { job_id: id })).toBeUndefined();
    const workers = cluster.processes.slice(1);
    for (const w of workers) w.kill('SIGSTOP');
    try {
      expect(await firing('GradfleetThroughputDropped', { job_id: id })).toBe(true);
    } finally {
      for (const w of workers) w.kill('SIGCONT');
      await cluster.client.cancel(id);
      await cluster.client.waitForJob(id);
    }
  });

  it('GradfleetWorkerLost: a worker SIGKILLed mid-job', async () => {
    const id = await runningJob({ minWorkers: 2 });
    expect(await alertState('GradfleetWorkerLost', {})).toBeUndefined();
    cluster.processes[3]!.kill('SIGKILL');
    try {
      expect(await firing('GradfleetWorkerLost')).toBe(true);
    } finally {
      await cluster.client.cancel(id);
      await cluster.client.waitForJob(id);
    }
  });
});
