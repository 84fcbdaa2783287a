import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradfleetClient, type JobStatus } from '@gradfleet/core';
import { ROOT, TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { TestHost, netnsUnavailable } from './helpers/netns.js';
import { skipUnlessAvailable } from './helpers/requirements.js';

const unavailable = netnsUnavailable();
const HEARTBEAT_TIMEOUT_MS = 2_000;
const WORKER_TOKEN = 'multi-host-worker-token';
const API_TOKEN = 'multi-host-api-token';

describe.skipIf(skipUnlessAvailable('the multi-host suite', unavailable))(
  `workers on separate hosts (network namespaces)${unavailable ? ` — skipped: ${unavailable}` : ''}`,
  () => {
    const cluster = new TestCluster();
    const hosts: TestHost[] = [];
    const workers: ChildProcess[] = [];
    let data: SmallMnist;

    beforeAll(async () => {
      data = await writeSmallMnist(6000, 1000);
      for (let k = 1; k <= 3; k++) hosts.push(new TestHost(k));
      // Listening on all addresses (so tokens are required): the workers reach it through their veth pairs.
      await cluster.startCoordinator([
        '--host',
        '0.0.0.0',
        '--insecure', // plaintext between network namespaces of this machine
        '--worker-token',
        WORKER_TOKEN,
        '--api-token',
        API_TOKEN,
        '--heartbeat-interval-ms',
        '500',
        '--heartbeat-timeout-ms',
        String(HEARTBEAT_TIMEOUT_MS),
      ]);
      cluster.client = new GradfleetClient({ url: cluster.url, token: API_TOKEN });
      const port = new URL(cluster.url).port;
      for (const h of hosts) {
        const [cmd, ...args] = h.exec([
          process.execPath,
          join(ROOT, 'apps/worker/dist/main.js'),
          '--coordinator',
          `ws://${h.hostIp}:${port}`,
          '--backend',
          'wasm',
          '--name',
          h.ns,
          '--token',
          WORKER_TOKEN,
        ]);
        const w = spawn(cmd!, args, { stdio: 'ignore', env: { ...process.env, GRADFLEET_LOG_LEVEL: 'warn' } });
        workers.push(w);
      }
      await cluster.client.waitForWorkers(3);
    });
    afterAll(async () => {
      for (const w of workers) w.kill('SIGKILL');
      await cluster.stop();
      for (const h of hosts) h.destroy();
    });

    it('a worker whose link is cut (iptables DROP) is dropped within the timeout, rejoins when it returns, and the job finishes', async () => {
      const job = await cluster.client.submit({
        dataset: data.dataset,
        epochs: 8,
        batchSize: 32,
        minWorkers: 2,
        maxWorkers: 3,
        checkpointEverySteps: 0,
      });
      const until = async (ok: (j: JobStatus) => boolean, ms = 60_000) => {
        const deadline = Date.now() + ms;
        for (;;) {
          const j = await cluster.client.job(job.id);
          if (ok(j)) return j;
          if (Date.now() > deadline)
            throw new Error(`timed out at step ${j.progress.step}, workers ${j.workers.join(',')}, state ${j.state}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      await until((j) => j.workers.length === 3 && j.progress.step >= 30);
      hosts[0]!.cut();
      const cutAt = Date.now();
      const without = await until((j) => j.workers.length === 2);
      expect(Date.now() - cutAt).toBeLessThan(HEARTBEAT_TIMEOUT_MS + 1_500);
      expect(without.state).toBe('RUNNING');
      hosts[0]!.restore();
      const back = await until((j) => j.workers.length === 3 || j.state !== 'RUNNING');
      expect(back.state).toBe('RUNNING');
      const done = await cluster.client.waitForJob(job.id);
      expect(done.state, done.reason).toBe('SUCCEEDED');
      expect(done.history.every((h) => h.audit.ok && h.audit.seen === 5400)).toBe(true);
      expect(done.replicas.divergences).toBe(0);
      const logs = (await cluster.client.logs(job.id)).map((l) => l.line).join('\n');
      expect(logs).toMatch(/HEARTBEAT_TIMEOUT/);
      expect(logs).toMatch(/joined at step/);
    });
  },
);
