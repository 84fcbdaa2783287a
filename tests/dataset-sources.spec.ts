import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster } from './helpers/cluster.js';

const API_TOKEN = 'api-token-in-the-environment-0123456789';
/** A marker planted in files and responses: no answer may contain it. */
const SECRET = 'SECRET-MARKER-7f3a9c';
const UPLOAD_LIMIT = 64 * 1024;

/** A Dense softmax model over 2 features and 3 classes. */
const model = {
  topology: {
    class_name: 'Sequential',
    config: {
      layers: [{ class_name: 'Dense', config: { units: 3, activation: 'softmax', batch_input_shape: [null, 2] } }],
    },
  },
};

/** Submits a CSV job naming `train`; returns the status and the whole answer as text. */
async function submitCsv(url: string, train: string, header?: boolean): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_TOKEN}` },
    body: JSON.stringify({ model, dataset: { csv: { train, ...(header === undefined ? {} : { header }) } } }),
  });
  return { status: res.status, text: await res.text() };
}

function expectRefused(got: { status: number; text: string }, reason: RegExp): void {
  expect(got.status, got.text).toBe(400);
  const body = JSON.parse(got.text) as { error: { code: string; message: string; issues: { path: string }[] } };
  expect(body.error.code).toBe('INVALID_DATA');
  expect(body.error.issues[0]!.path).toBe('dataset.csv.train');
  expect(body.error.message).toMatch(reason);
  expect(got.text).not.toContain(SECRET);
  expect(got.text).not.toContain(API_TOKEN);
}

/** An HTTP server answering `routes[path]` (a status, headers and body). */
async function serve(
  routes: Record<string, { status?: number; headers?: Record<string, string>; body?: string | Buffer }>,
): Promise<{ server: Server; base: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const r = routes[req.url ?? ''];
    if (!r) return void res.writeHead(404).end();
    res.writeHead(r.status ?? 200, r.headers ?? {}).end(r.body ?? '');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as { port: number }).port}`, hits };
}

describe('dataset sources on a coordinator that did not opt in', () => {
  const cluster = new TestCluster();
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gradfleet-src-'));
    cluster.datasetRoots = [];
    // Tokens from the environment, as with `gradfleet up`, compose and Kubernetes: they are in /proc/self/environ.
    cluster.coordinatorEnv = { GRADFLEET_API_TOKEN: API_TOKEN, GRADFLEET_SECRET: SECRET };
    await cluster.startCoordinator();
  });
  afterAll(() => cluster.stop());

  it('refuses /proc/self/environ as a CSV (400) without echoing the environment', async () => {
    const got = await submitCsv(cluster.url, '/proc/self/environ', true);
    expectRefused(got, /\/proc\/self\/environ: dataset paths on the coordinator are refused: .*--dataset-root/);
    expect(got.text).not.toMatch(/PATH=|HOME=|GRADFLEET_/);
  });

  it('refuses every path, even under the temp dir, until --dataset-root is given', async () => {
    writeFileSync(join(dir, 'ok.csv'), 'label,a,b\n1,0.5,0.5\n');
    expectRefused(await submitCsv(cluster.url, join(dir, 'ok.csv')), /--dataset-root/);
  });

  it('refuses http://127.0.0.1:PORT/metrics (400) without echoing the metrics', async () => {
    const got = await submitCsv(cluster.url, `${cluster.url}/metrics`, true);
    expectRefused(got, /host 127\.0\.0\.1 is not on the coordinator's --dataset-url-allow list/);
    expect(got.text).not.toMatch(/# HELP|gradfleet_|process_cpu/);
  });
});

describe('dataset sources under --dataset-root and --dataset-url-allow', () => {
  const cluster = new TestCluster();
  let root: string;
  let outside: string;
  let data: Awaited<ReturnType<typeof serve>>;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'gradfleet-root-'));
    outside = mkdtempSync(join(tmpdir(), 'gradfleet-outside-'));
    writeFileSync(join(outside, 'secret.csv'), `label,${SECRET}\n1,0.5\n`);
    writeFileSync(join(root, 'ok.csv'), 'label,a,b\n1,0.5,0.5\n2,0.25,0.75\n');
    writeFileSync(join(root, 'bad.csv'), `label,${SECRET},b\n1,${SECRET},0.5\n`);
    writeFileSync(join(root, 'big.csv'), 'label,a,b\n' + '1,0.5,0.5\n'.repeat(UPLOAD_LIMIT / 10 + 1));
    symlinkSync(join(outside, 'secret.csv'), join(root, 'link.csv'));
    symlinkSync(join(root, 'ok.csv'), join(root, 'inner-link.csv'));
    mkdirSync(join(root, 'a-dir'));
    execFileSync('mkfifo', [join(root, 'fifo.csv')]); // opening one for reading would block a naive reader forever
    const csv = 'label,a,b\n1,0.5,0.5\n';
    data = await serve({
      '/ok.csv': { body: csv },
      '/bad.csv': { body: `label,a,b\n1,${SECRET},0.5\n` },
      '/to-metrics': { status: 302, headers: { location: 'http://localhost:1/metrics' } },
      '/to-metadata': { status: 302, headers: { location: 'http://169.254.169.254/latest/meta-data/' } },
      '/to-ok': { status: 301, headers: { location: '/ok.csv' } },
      '/loop': { status: 302, headers: { location: '/loop' } },
      '/bomb.csv': {
        headers: { 'content-encoding': 'gzip' },
        body: gzipSync(Buffer.from('label,a\n' + '1,0\n'.repeat(UPLOAD_LIMIT))),
      },
    });
    cluster.datasetRoots = [root];
    cluster.coordinatorEnv = { GRADFLEET_API_TOKEN: API_TOKEN };
    await cluster.startCoordinator([
      '--max-upload-bytes',
      String(UPLOAD_LIMIT),
      '--dataset-url-allow',
      'localhost,127.0.0.1',
    ]);
  });
  afterAll(async () => {
    data.server.close();
    await cluster.stop();
  });

  it('accepts a regular file under the root, also through a symlink that stays inside', async () => {
    for (const name of ['ok.csv', 'inner-link.csv'])
      expect((await submitCsv(cluster.url, join(root, name))).status).toBe(201);
  });

  it('refuses paths that escape the root by .., by symlink, or name /proc (400), without their content', async () => {
    const rel = `${root}/../${outside.split('/').pop()!}/secret.csv`;
    for (const path of [rel, join(root, 'link.csv'), '/proc/self/environ'])
      expectRefused(await submitCsv(cluster.url, path, true), /outside the coordinator --dataset-root/);
  });

  it('refuses directories, FIFOs and files over the size limit before reading them', async () => {
    expectRefused(await submitCsv(cluster.url, join(root, 'a-dir')), /not a regular file/);
    expectRefused(await submitCsv(cluster.url, join(root, 'fifo.csv')), /not a regular file/);
    expectRefused(await submitCsv(cluster.url, join(root, 'big.csv')), /bytes exceeds the coordinator's limit/);
  });

  it('names the file, line and column of bad data, never its content', async () => {
    const got = await submitCsv(cluster.url, join(root, 'bad.csv'), true);
    expectRefused(got, /bad\.csv: line 2: column 2: not a number/);
  });

  it('fetches an allowed host, and refuses a host name that resolves to loopback (the coordinator /metrics)', async () => {
    expect((await submitCsv(cluster.url, `${data.base}/ok.csv`)).status).toBe(201);
    expect((await submitCsv(cluster.url, `${data.base}/to-ok`)).status).toBe(201);
    const port = new URL(cluster.url).port;
    const got = await submitCsv(cluster.url, `http://localhost:${port}/metrics`, true);
    expectRefused(got, /localhost resolves to a loopback, private, link-local, multicast or reserved address/);
    expect(got.text).not.toMatch(/# HELP|gradfleet_/);
  });

  it('re-checks every redirect hop and bounds their number', async () => {
    expectRefused(
      await submitCsv(cluster.url, `${data.base}/to-metrics`),
      /redirect 1: localhost resolves to a loopback/,
    );
    expectRefused(await submitCsv(cluster.url, `${data.base}/to-metadata`), /redirect 1: the redirect target is not/);
    expectRefused(await submitCsv(cluster.url, `${data.base}/loop`), /more than 5 redirects/);
  });

  it('counts decoded bytes while streaming: a gzip bomb stops at the limit and leaves no file', async () => {
    expectRefused(await submitCsv(cluster.url, `${data.base}/bomb.csv`), /more than 65536 bytes once decoded/);
    const downloads = join(cluster.dataDir, 'downloads');
    const left = readdirSync(downloads).filter((f) => !f.startsWith('.'));
    expect(left.length).toBe(2); // ok.csv and to-ok only
  });

  it('never echoes the response of a fetched URL in a parse error', async () => {
    expectRefused(await submitCsv(cluster.url, `${data.base}/bad.csv`), /bad\.csv: line 2: column 2: not a number/);
  });
});
