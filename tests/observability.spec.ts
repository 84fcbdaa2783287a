import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeNvidiaSmi } from './helpers/fake-nvidia-smi.js';
import { ROOT, TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { TestPrometheus, ensurePrometheus, freePort } from './helpers/prometheus.js';

const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/dashboards/gradfleet.json'), 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[];
};
const rules = readFileSync(join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8');
const ruleExprs = [...rules.matchAll(/expr: (\|\n((?: {10}.*\n)+)|.*)/g)].map((m) => (m[2] ?? m[1]!).trim());

/** Dashboard variables as Grafana would fill them. */
const fill = (expr: string) => expr.replaceAll('$job_id', '.*').replaceAll('$__rate_interval', '30s');

describe('observability against a real Prometheus scraping a real cluster', () => {
  const cluster = new TestCluster();
  const prom = new TestPrometheus();
  let data: SmallMnist;
  let workerPorts: number[];

  beforeAll(async () => {
    ensurePrometheus();
    data = await writeSmallMnist(3000, 500);
    // Long heartbeat timeout: the stuck-job check pauses the workers without losing them.
    await cluster.startCoordinator(['--heartbeat-timeout-ms', '120000']);
    workerPorts = [await freePort(), await freePort()];
    // The first worker is pinned to a (fake) GPU, so the dashboard's DCGM panels have data.
    const gpu = { PATH: `${fakeNvidiaSmi(1)}:${process.env['PATH']}`, GRADFLEET_GPU_INDEX: '0' };
    workerPorts.forEach((p, i) =>
      cluster.startWorker(['--name', `obs-${i + 1}`, '--metrics-port', String(p)], i === 0 ? gpu : {}),
    );
    await cluster.client.waitForWorkers(2);
    const coord = new URL(cluster.url).host;
    const config = `global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [alerts.yml]
scrape_configs:
  - job_name: gradfleet-coordinator
    static_configs: [{ targets: ['${coord}'] }]
  - job_name: gradfleet-workers
    static_configs: [{ targets: [${workerPorts.map((p) => `'127.0.0.1:${p}'`).join(', ')}] }]
`;
    // The stuck-job rule as shipped, with its 5-minute threshold shortened for the test.
    const fastRules = rules
      .replace('gradfleet_last_step_timestamp_seconds) > 300', 'gradfleet_last_step_timestamp_seconds) > 3')
      .replace('for: 1m', 'for: 0s');
    expect(fastRules).not.toBe(rules);
    await prom.start(config, fastRules);
    // Prometheus applies its first targets a few seconds after start: wait for all three.
    for (let i = 0; i < 100 && (await prom.query('up == 1')).length < 3; i++)
      await new Promise((r) => setTimeout(r, 200));
  });
  afterAll(async () => {
    await prom.stop();
    await cluster.stop();
  });

  it('ships a config and rules that promtool accepts', () => {
    execFileSync('promtool', ['check', 'config', join(ROOT, 'deploy/prometheus/prometheus.yml')], { stdio: 'pipe' });
    execFileSync('promtool', ['check', 'rules', join(ROOT, 'deploy/prometheus/alerts.yml')], { stdio: 'pipe' });
    expect(ruleExprs).toHaveLength(5);
  });

  it('every dashboard expression returns data; every alert expression parses', async () => {
    const job = await cluster.client.submit({ dataset: data.dataset, epochs: 2, batchSize: 32, minWorkers: 2 });
    expect((await cluster.client.waitForJob(job.id)).state).toBe('SUCCEEDED');
    expect(await prom.query('up == 1')).toHaveLength(3);
    // scraped at least once after the job's end
    for (let i = 0; i < 50 && (await prom.query(`gradfleet_test_accuracy_ratio{job_id="${job.id}"}`)).length === 0; i++)
      await new Promise((r) => setTimeout(r, 200));
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: fill(t.expr) })));
    expect(exprs.length).toBeGreaterThan(20);
    for (const { panel, expr } of exprs) {
      const result = await prom.query(expr);
      expect(result.length, `panel "${panel}": ${expr}`).toBeGreaterThan(0);
    }
    for (const expr of ruleExprs) await prom.query(expr); // throws on a parse error
    const workers = await prom.query('gradfleet_replica_samples_total{job="gradfleet-workers"} > 0');
    expect(workers).toHaveLength(2);
  });

  it('fires the stuck-job alert when the workers are paused', async () => {
    const job = await cluster.client.submit({ dataset: data.dataset, epochs: 200, batchSize: 32, minWorkers: 2 });
    for (let i = 0; i < 100 && (await cluster.client.job(job.id)).progress.step < 20; i++)
      await new Promise((r) => setTimeout(r, 100));
    const workers = cluster.processes.slice(1);
    for (const w of workers) w.kill('SIGSTOP');
    try {
      let firing = false;
      for (let i = 0; i < 60 && !firing; i++) {
        await new Promise((r) => setTimeout(r, 500));
        firing = (await prom.alerts()).some(
          (a) => a.labels['alertname'] === 'GradfleetJobStuck' && a.labels['job_id'] === job.id && a.state === 'firing',
        );
      }
      expect(firing).toBe(true);
    } finally {
      for (const w of workers) w.kill('SIGCONT');
      await cluster.client.cancel(job.id);
    }
  });

  it('keeps the number of series flat over 1,000+ steps', async () => {
    await cluster.client.waitForWorkers(2);
    for (let i = 0; i < 100 && (await cluster.client.workers()).some((w) => w.state === 'BUSY'); i++)
      await new Promise((r) => setTimeout(r, 100));
    const count = async () =>
      (await (await fetch(`${cluster.url}/metrics`)).text())
        .split('\n')
        // This job's series and the unlabelled ones: earlier jobs' series go after their grace period.
        .filter((l) => l.startsWith('gradfleet_') && (!l.includes('job_id="') || l.includes(`job_id="${job.id}"`)))
        .length;
    const job = await cluster.client.submit({ dataset: data.dataset, epochs: 5, batchSize: 8, minWorkers: 2 });
    const waitFor = async (ok: (j: Awaited<ReturnType<typeof cluster.client.job>>) => boolean) => {
      for (;;) {
        const j = await cluster.client.job(job.id);
        if (ok(j) || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(j.state)) return j;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    // After the first epoch every series of the job exists (validation gauges appear then).
    const first = await waitFor((j) => j.history.length >= 1);
    const early = await count();
    const later = await waitFor((j) => j.progress.step >= first.progress.step + 1000);
    expect(later.state).toBe('RUNNING');
    expect(await count()).toBe(early);
    await cluster.client.cancel(job.id);
  });
});
