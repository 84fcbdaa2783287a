import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, GradfleetClient } from '@gradfleet/core';
import { ROOT, TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { RawWorker } from './helpers/raw-worker.js';

const WORKER_TOKEN = 'w-secret-0123456789';
const API_TOKEN = 'a-secret-9876543210';
/** A worker token this coordinator does not accept (say, one rotated out): still a secret of the worker holding it. */
const STALE_WORKER_TOKEN = 'w-stale-5555555555';
/** Characters of a secret that, found anywhere in a log, count as a leak (a prefix or a fragment of it). */
const LEAK_WINDOW = 8;
/** The pieces of `secret` a log must not contain: each LEAK_WINDOW-character window of it. */
const fragments = (secret: string) =>
  Array.from({ length: secret.length - LEAK_WINDOW + 1 }, (_, i) => secret.slice(i, i + LEAK_WINDOW));
const leaked = (text: string, secret: string) => fragments(secret).filter((f) => text.includes(f));

/** Everything logged, so that a secret in any log line shows. */
const VERBOSE = { GRADFLEET_LOG_LEVEL: 'trace' };

function run(
  app: 'worker' | 'coordinator',
  args: string[],
  ms = 20_000,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'apps', app, 'dist/main.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('limits', () => {
  const cluster = new TestCluster();
  beforeAll(() =>
    cluster.startCoordinator([
      '--max-connections',
      '2',
      '--max-messages-per-second',
      '50',
      '--max-model-params',
      '1000',
    ]),
  );
  afterAll(() => cluster.stop());

  it('refuses connections past --max-connections (503), floods (4014) and models past --max-model-params (400)', async () => {
    const a = new RawWorker(cluster.wsUrl);
    const b = new RawWorker(cluster.wsUrl);
    await Promise.all([a.hello('a'), b.hello('b')]);
    const c = new RawWorker(cluster.wsUrl);
    const status = await new Promise<number>((resolve) =>
      c.ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
    );
    expect(status).toBe(503);
    for (let i = 0; i < 500 && a.ws.readyState === a.ws.OPEN; i++) a.send({ t: 'heartbeat' });
    expect((await a.closed).code).toBe(4014);
    const err = await cluster.client.submit({ epochs: 1 }).catch((e: unknown) => e);
    expect((err as ApiError).status).toBe(400);
    expect((err as ApiError).issues[0]).toMatchObject({
      path: 'model',
      message: expect.stringMatching(/LIMIT_EXCEEDED: 101770 trainable parameters/),
    });
    b.ws.close();
  });
});

describe('authentication', () => {
  const cluster = new TestCluster();
  let client: GradfleetClient;

  beforeAll(async () => {
    await cluster.startCoordinator(['--worker-token', WORKER_TOKEN, '--api-token', API_TOKEN], 0, VERBOSE);
    client = new GradfleetClient({ url: cluster.url, token: API_TOKEN });
  });
  afterAll(() => cluster.stop());

  it('refuses workers without the worker token (401, counted); they exit saying what is missing, never echoing the token they hold', async () => {
    for (const args of [[], ['--token', STALE_WORKER_TOKEN]]) {
      const { code, out } = await run(
        'worker',
        ['--coordinator', cluster.wsUrl, '--backend', 'cpu', ...args],
        20_000,
        VERBOSE,
      );
      expect(code).toBe(2);
      expect(out).toMatch(/missing or wrong worker token/);
      expect(out).toMatch(/"level":30/); // info lines were written (the default in tests is warn): the check below saw them
      expect(leaked(out, STALE_WORKER_TOKEN)).toEqual([]);
      if (args.length) expect(out).toMatch(/--token on the command line is visible to every user/);
    }
    expect(leaked(cluster.log, STALE_WORKER_TOKEN)).toEqual([]);
    // Tokens given as flags are visible in ps: the coordinator and the worker say so (naming the flag, never the token).
    expect(cluster.log).toMatch(/--worker-token on the command line is visible to every user/);
    expect(cluster.log).toMatch(/--api-token on the command line is visible to every user/);
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    expect(metrics).toMatch(/gradfleet_auth_failures_total\{kind="worker"\} [2-9]/);
  });

  it('refuses API calls without the API token (401) and job submission with the worker token (403)', async () => {
    const anonymous = new GradfleetClient({ url: cluster.url });
    const wrong = new GradfleetClient({ url: cluster.url, token: 'nope' });
    const asWorker = new GradfleetClient({ url: cluster.url, token: WORKER_TOKEN });
    for (const [c, status] of [
      [anonymous, 401],
      [wrong, 401],
      [asWorker, 403],
    ] as const) {
      const err = await c.submit({ epochs: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).status).toBe(status);
    }
    expect((await fetch(`${cluster.url}/v1/jobs`)).status).toBe(401);
    expect(await client.jobs()).toEqual([]);
    expect(await (await fetch(`${cluster.url}/metrics`)).text()).toMatch(
      /gradfleet_auth_failures_total\{kind="api"\} [4-9]/,
    );
  });

  it('trains with both tokens right; neither token appears in any log of the worker, the coordinator or the job', async () => {
    const data = await writeSmallMnist(1000, 200);
    cluster.startWorker(['--token', WORKER_TOKEN], VERBOSE);
    await client.waitForWorkers(1);
    const done = await client.waitForJob((await client.submit({ dataset: data.dataset, epochs: 1 })).id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    const logs = cluster.log; // stderr of the coordinator and the worker, every level
    expect(logs).toMatch(/\[worker \d+\] [^\n]*"level":30/); // the worker's own info lines are in it
    const jobLog = (await client.logs(done.id)).map((l) => l.line).join('\n');
    for (const secret of [WORKER_TOKEN, API_TOKEN]) {
      expect(leaked(logs, secret)).toEqual([]);
      expect(leaked(jobLog, secret)).toEqual([]);
      expect(leaked(JSON.stringify(await client.workers()), secret)).toEqual([]);
    }
  });

  it('a coordinator on a non-loopback address refuses to start without tokens, and warns with --insecure', async () => {
    const refused = await run('coordinator', [
      '--host',
      '0.0.0.0',
      '--port',
      '0',
      '--data-dir',
      cluster.dataDir + '-x',
    ]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/refusing to serve 0\.0\.0\.0 without tokens/);
    const insecure = await run(
      'coordinator',
      ['--host', '0.0.0.0', '--port', '0', '--insecure', '--announce', '--data-dir', cluster.dataDir + '-y'],
      4_000,
    );
    expect(insecure.out).toMatch(/INSECURE/);
    expect(insecure.out).toMatch(/GRADFLEET_LISTENING/);
  });
});
