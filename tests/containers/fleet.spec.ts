import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradfleetClient, type JobStatus } from '@gradfleet/core';
import { ROOT, writeSmallMnist } from '../helpers/cluster.js';
import { IMAGES, buildImages, ensureContainerEngine, podman } from './podman.js';

const WORKER_TOKEN = 'containers-suite-worker-token-0123456789';
const API_TOKEN = 'containers-suite-api-token-0123456789';
const TRAIN = 4000;
const EPOCHS = 6;

/**
 * The project's images as real containers on a user network: a coordinator, two CPU
 * workers and Prometheus (with the project's deploy/prometheus config), a short MNIST job,
 * and faults: a worker container paused (frozen, socket open) and a worker container cut
 * off the network, each mid-job.
 */
describe('containers: coordinator, two workers and Prometheus', () => {
  let network: StartedNetwork;
  let coordinator: StartedTestContainer;
  let prometheus: StartedTestContainer;
  const workers: StartedTestContainer[] = [];
  let client: GradfleetClient;
  let base = '';

  beforeAll(async () => {
    ensureContainerEngine();
    await buildImages();
    const data = await writeSmallMnist(TRAIN, 1000);
    network = await new Network().start();
    const files = Object.entries(data.dataset.idx).map(([k, source]) => ({
      source,
      target: `/srv/mnist/${k}.idx`,
      mode: 0o644,
    }));
    coordinator = await new GenericContainer(IMAGES.coordinator)
      .withNetwork(network)
      .withNetworkAliases('coordinator')
      .withEnvironment({ GRADFLEET_WORKER_TOKEN: WORKER_TOKEN, GRADFLEET_API_TOKEN: API_TOKEN })
      .withCommand([
        '--host',
        '0.0.0.0',
        '--port',
        '7070',
        '--data-dir',
        '/data',
        '--dataset-root',
        '/srv',
        '--insecure',
        '--public-host', // workers reach it by its network alias (Host: coordinator:7070)
        'coordinator',
        '--heartbeat-interval-ms',
        '1000',
        '--heartbeat-timeout-ms',
        '4000',
      ])
      .withCopyFilesToContainer(files)
      .withExposedPorts(7070)
      .withWaitStrategy(Wait.forHttp('/readyz', 7070))
      .start();
    base = `http://${coordinator.getHost()}:${coordinator.getMappedPort(7070)}`;
    client = new GradfleetClient({ url: base, token: API_TOKEN });
    for (const i of [1, 2]) {
      workers.push(
        await new GenericContainer(IMAGES.worker)
          .withNetwork(network)
          .withNetworkAliases(`worker-${i}`)
          .withEnvironment({ GRADFLEET_COORDINATOR: 'ws://coordinator:7070', GRADFLEET_WORKER_TOKEN: WORKER_TOKEN })
          .withCommand([
            '--metrics-port',
            '9464',
            '--metrics-host',
            '0.0.0.0',
            '--backend',
            'wasm',
            '--name',
            `worker-${i}`,
          ])
          .withExposedPorts(9464)
          .withWaitStrategy(Wait.forLogMessage(/"registered"/))
          .start(),
      );
    }
    // The project's Prometheus config and alert rules, scraping every second for the test.
    const config = readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8').replace(
      /scrape_interval: \S+/,
      'scrape_interval: 1s',
    );
    prometheus = await new GenericContainer(IMAGES.prometheus)
      .withNetwork(network)
      .withCopyContentToContainer([
        { content: config, target: '/etc/gradfleet/prometheus.yml', mode: 0o644 },
        {
          content: readFileSync(join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'),
          target: '/etc/gradfleet/alerts.yml',
          mode: 0o644,
        },
      ])
      .withCommand([
        'prometheus',
        '--config.file=/etc/gradfleet/prometheus.yml',
        '--storage.tsdb.path=/tmp/prometheus',
        '--web.listen-address=:9090',
      ])
      .withExposedPorts(9090)
      .withWaitStrategy(Wait.forHttp('/-/ready', 9090))
      .start();
    await client.waitForWorkers(2, 60_000);
  }, 900_000);

  afterAll(async () => {
    for (const c of [...workers, prometheus, coordinator]) await c?.stop({ timeout: 5 }).catch(() => undefined);
    await network?.stop().catch(() => undefined);
  });

  const spec = () => ({
    dataset: {
      idx: {
        trainImages: '/srv/mnist/trainImages.idx',
        trainLabels: '/srv/mnist/trainLabels.idx',
        testImages: '/srv/mnist/testImages.idx',
        testLabels: '/srv/mnist/testLabels.idx',
      },
    },
    epochs: EPOCHS,
    batchSize: 32,
    validationSplit: 0,
    minWorkers: 1,
    maxWorkers: 2,
    checkpointEverySteps: 50,
  });

  async function waitForStep(id: string, step: number): Promise<void> {
    const deadline = Date.now() + 120_000;
    while ((await client.job(id)).progress.step < step) {
      if (Date.now() > deadline) throw new Error(`job ${id} did not reach step ${step}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function logOf(id: string): Promise<string> {
    return (await fetch(`${base}/v1/jobs/${id}/logs`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).text();
  }

  async function workerId(name: string): Promise<string> {
    return (await client.workers()).find((w) => w.name === name)!.id;
  }

  function expectExact(done: JobStatus): void {
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.history).toHaveLength(EPOCHS);
    for (const h of done.history) {
      expect(h.audit.ok, JSON.stringify(h.audit)).toBe(true);
      expect(h.samples).toBe(TRAIN);
    }
    expect(done.replicas.divergences).toBe(0);
    expect(done.result!.testAccuracy).toBeGreaterThan(0.8);
  }

  it('a worker container paused mid-job is dropped; the job completes with the exact sample audit', async () => {
    const job = await client.submit(spec());
    await waitForStep(job.id, 30);
    const id = await workerId('worker-2');
    const paused = workers[1]!;
    podman('pause', paused.getId());
    await new Promise((r) => setTimeout(r, 6_000)); // past the 4 s heartbeat timeout
    podman('unpause', paused.getId());
    const done = await client.waitForJob(job.id);
    expectExact(done);
    const log = await logOf(job.id);
    expect(log).toMatch(new RegExp(`worker ${id} left: connection closed \\(4008: HEARTBEAT_TIMEOUT`));
    expect(log).toMatch(/worker w\d+ joined at step \d+/); // unpaused, it reconnected and rejoined the running job
  });

  it('a worker container cut off the network mid-job is dropped; the job completes with the exact sample audit', async () => {
    await client.waitForWorkers(2, 60_000); // the paused worker reconnected
    const job = await client.submit(spec());
    await waitForStep(job.id, 30);
    const id = await workerId('worker-1');
    const cut = workers[0]!;
    const net = network.getName();
    podman('network', 'disconnect', net, cut.getId());
    await new Promise((r) => setTimeout(r, 6_000));
    podman('network', 'connect', '--alias', 'worker-1', net, cut.getId());
    const done = await client.waitForJob(job.id);
    expectExact(done);
    expect(await logOf(job.id)).toMatch(new RegExp(`worker ${id} left: connection closed \\(4008: HEARTBEAT_TIMEOUT`));
  });

  it('Prometheus (the project config) scraped throughput from the coordinator container', async () => {
    const prom = `http://${prometheus.getHost()}:${prometheus.getMappedPort(9090)}`;
    const query = async (q: string) => {
      const body = (await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as {
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      return body.data.result;
    };
    expect((await query('up{job="gradfleet-coordinator"}'))[0]?.value[1]).toBe('1');
    // Both jobs' examples, once the last scrape after the second job is in.
    let scraped = 0;
    for (let i = 0; i < 50 && scraped < 2 * EPOCHS * TRAIN; i++) {
      scraped = Number((await query('sum(gradfleet_samples_total)'))[0]?.value[1] ?? 0);
      if (scraped < 2 * EPOCHS * TRAIN) await new Promise((r) => setTimeout(r, 200));
    }
    expect(scraped).toBe(2 * EPOCHS * TRAIN);
    const rate = await query('max_over_time((sum(rate(gradfleet_samples_total[5s])))[5m:1s])');
    expect(Number(rate[0]?.value[1])).toBeGreaterThan(100); // samples/s while the jobs ran
    // Both worker containers were scraped too (the one cut off the network may still be
    // re-resolving its name right after it came back, so look over the whole run).
    const workers = await query('max_over_time(gradfleet_replica_samples_total{job="gradfleet-workers"}[5m]) > 0');
    expect(workers.map((r) => r.metric['instance']).sort()).toEqual(['worker-1:9464', 'worker-2:9464']);
  });
});
