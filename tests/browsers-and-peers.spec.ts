import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_WS_PATH } from '@gradfleet/core';
import { ROOT, TestCluster } from './helpers/cluster.js';
import { RawWorker } from './helpers/raw-worker.js';

const WORKER_TOKEN = 'worker-token-browsers-0123456789';
const API_TOKEN = 'api-token-browsers-9876543210';

/** A request with exactly these headers (Host and Origin included); the status, headers and body text. */
function call(
  url: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: init.method ?? 'GET', headers: init.headers ?? {} }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** Runs an app until it exits or `ms` pass (then SIGKILL); its exit code and output. */
function run(
  app: 'worker' | 'coordinator',
  args: string[],
  env: NodeJS.ProcessEnv = {},
  ms = 20_000,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'apps', app, 'dist/main.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, GRADFLEET_LOG_LEVEL: 'info', ...env },
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

/** Whether a WebSocket upgrade with these headers opens, or the HTTP status that refused it. */
function upgrade(wsUrl: string, origin?: string): Promise<number | 'open'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl + WORKER_WS_PATH, origin ? { origin } : {});
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => undefined);
  });
}

describe('browsers are kept out of a loopback coordinator', () => {
  const cluster = new TestCluster();
  let port: string;

  beforeAll(async () => {
    await cluster.startCoordinator(['--public-host', 'gradfleet.internal', '--allow-origin', 'https://dash.example']);
    port = new URL(cluster.url).port;
  });
  afterAll(() => cluster.stop());

  it('refuses job bodies that are not application/json (415), as a page can send them without a preflight', async () => {
    const types: Record<string, string>[] = [
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/x-www-form-urlencoded' },
      {},
    ];
    for (const headers of types)
      for (const body of ['{"epochs":1}', '']) {
        const got = await call(cluster.url, '/v1/jobs', { method: 'POST', headers, body });
        expect(got.status, got.text).toBe(415);
        expect(got.text).toContain('UNSUPPORTED_MEDIA_TYPE');
      }
    const upload = await call(cluster.url, '/v1/datasets?name=x.csv', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'label,a\n1,2\n',
    });
    expect(upload.status).toBe(415);
    expect(await cluster.client.jobs()).toEqual([]); // nothing was queued
  });

  it('answers 421 to a Host that is not its address, localhost or a --public-host (DNS rebinding), and nothing else', async () => {
    await cluster.client.submit({ epochs: 1, minWorkers: 9, name: 'private-job-name' });
    const rebound = await call(cluster.url, '/v1/jobs', { headers: { host: `attacker.example:${port}` } });
    expect(rebound.status).toBe(421);
    expect(rebound.text).toContain('MISDIRECTED_REQUEST');
    expect(rebound.text).not.toContain('private-job-name');
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `gradfleet.internal:${port}`, 'GRADFLEET.INTERNAL']) {
      const ok = await call(cluster.url, '/v1/jobs', { headers: { host } });
      expect(ok.status, host).toBe(200);
    }
    // Probes and Prometheus reach these by any name; they carry no secrets.
    expect((await call(cluster.url, '/healthz', { headers: { host: 'attacker.example' } })).status).toBe(200);
  });

  it('refuses API calls and worker upgrades carrying a browser Origin (403) unless --allow-origin names it', async () => {
    const api = await call(cluster.url, '/v1/jobs', { headers: { origin: 'https://attacker.example' } });
    expect(api.status).toBe(403);
    expect(api.text).toContain('ORIGIN_NOT_ALLOWED');
    expect(api.text).not.toContain('private-job-name');
    expect((await call(cluster.url, '/v1/jobs', { headers: { origin: 'https://dash.example' } })).status).toBe(200);
    expect(await upgrade(cluster.wsUrl, 'https://attacker.example')).toBe(403);
    expect(await upgrade(cluster.wsUrl, 'https://dash.example')).toBe('open');
    expect(await upgrade(cluster.wsUrl)).toBe('open'); // Node's ws sends no Origin: real workers pass
  });

  it('answers 400 to a bad percent-encoding and keeps serving', async () => {
    const got = await call(cluster.url, '/v1/jobs/%E0%A4%A');
    expect(got.status).toBe(400);
    expect(got.text).toContain('INVALID_PATH');
    expect((await call(cluster.url, '/healthz')).status).toBe(200);
  });

  it('survives dataset shard reads racing the job delete', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-race-'));
    writeFileSync(join(dir, 'train.csv'), 'label,a,b\n' + '1,0.5,0.5\n'.repeat(20_000));
    const model = {
      topology: {
        class_name: 'Sequential',
        config: { layers: [{ class_name: 'Dense', config: { units: 3, batch_input_shape: [null, 2] } }] },
      },
    };
    for (let round = 0; round < 3; round++) {
      const job = await cluster.client.submit({
        model,
        dataset: { csv: { train: join(dir, 'train.csv') } },
        minWorkers: 9,
      });
      await cluster.client.cancel(job.id);
      const reads = Array.from({ length: 20 }, () =>
        call(cluster.url, `/v1/jobs/${job.id}/data/train`).catch(() => ({ status: 0, text: '' })),
      );
      await cluster.client.delete(job.id);
      for (const r of await Promise.all(reads)) expect([0, 200, 404]).toContain(r.status);
    }
    expect((await call(cluster.url, '/healthz')).status).toBe(200);
  });

  it('escapes control characters in worker-supplied names before they reach terminals and logs', async () => {
    const w = new RawWorker(cluster.wsUrl);
    await w.hello('\u001b[2J\u001b[31mfake\r\nline\u202e');
    const workers = await cluster.client.workers();
    const name = workers.map((x) => x.name).find((n) => n.includes('fake'))!;
    expect(name).toBe('\\u{1b}[2J\\u{1b}[31mfake\\u{d}\\u{a}line\\u{202e}');
    w.ws.close();
  });
});

describe('coordinator start-up refusals', () => {
  const dataDir = () => mkdtempSync(join(tmpdir(), 'gradfleet-startup-'));

  it('refuses plaintext off loopback unless --insecure, without echoing the tokens', async () => {
    const env = { GRADFLEET_WORKER_TOKEN: WORKER_TOKEN, GRADFLEET_API_TOKEN: API_TOKEN };
    const args = ['--host', '0.0.0.0', '--port', '0', '--announce'];
    const refused = await run('coordinator', [...args, '--data-dir', dataDir()], env);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/refusing to serve 0\.0\.0\.0 over plaintext/);
    expect(refused.out).not.toContain(WORKER_TOKEN);
    expect(refused.out).not.toContain(API_TOKEN);
    const insecure = await run('coordinator', [...args, '--insecure', '--data-dir', dataDir()], env, 4_000);
    expect(insecure.out).toMatch(/INSECURE: serving a non-loopback address without TLS/);
    expect(insecure.out).toMatch(/GRADFLEET_LISTENING/);
  });

  it('refuses tokens shorter than 16 characters and a worker token equal to the API token', async () => {
    const short = await run('coordinator', ['--port', '0', '--data-dir', dataDir()], {
      GRADFLEET_API_TOKEN: 'short-secret',
    });
    expect(short.code).toBe(1);
    expect(short.out).toMatch(/the API token \(--api-token, GRADFLEET_API_TOKEN\) has fewer than 16 characters/);
    expect(short.out).not.toContain('short-secret');
    const same = await run('coordinator', ['--port', '0', '--data-dir', dataDir()], {
      GRADFLEET_API_TOKEN: API_TOKEN,
      GRADFLEET_WORKER_TOKEN: API_TOKEN,
    });
    expect(same.code).toBe(1);
    expect(same.out).toMatch(/worker and API tokens are equal/);
    expect(same.out).not.toContain(API_TOKEN);
  });
});

describe('workers facing a coordinator', () => {
  it('warn when connecting with ws:// to a non-loopback host, not to loopback', async () => {
    const remote = await run('worker', ['--coordinator', 'ws://192.0.2.1:9', '--backend', 'cpu'], {}, 3_000);
    expect(remote.out).toMatch(/INSECURE: ws:\/\/ to a non-loopback coordinator/);
    const local = await run('worker', ['--coordinator', 'ws://127.0.0.1:9', '--backend', 'cpu'], {}, 3_000);
    expect(local.out).not.toMatch(/INSECURE/);
  });

  it('close a connection whose coordinator sends a message over --max-message-bytes (1009)', async () => {
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as { port: number }).port;
    const closed = new Promise<number>((resolve) =>
      server.once('connection', (ws) => {
        ws.once('close', (code) => resolve(code));
        ws.send(Buffer.alloc(4096));
      }),
    );
    const worker = run(
      'worker',
      ['--coordinator', `ws://127.0.0.1:${port}`, '--backend', 'cpu', '--max-message-bytes', '1024'],
      {},
      8_000,
    );
    expect(await closed).toBe(1009);
    server.close();
    await worker;
  });
});
