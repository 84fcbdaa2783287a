import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, GradfleetClient } from '@gradfleet/core';
import { ROOT, TestCluster, writeSmallMnist } from './helpers/cluster.js';

/** A CA and a server certificate for 127.0.0.1 signed by it, made with openssl at test time. */
function makePki(dir: string, name: string): { ca: string; cert: string; key: string } {
  const f = (x: string) => join(dir, `${name}-${x}`);
  const ssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${name} test CA`,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  ]);
  ssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ssl([
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('ext.cnf'),
    '-out',
    f('server.pem'),
  ]);
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

describe('TLS (https:// and wss://) with certificate verification', () => {
  const cluster = new TestCluster();
  let dir: string;
  let good: ReturnType<typeof makePki>;
  let other: ReturnType<typeof makePki>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gradfleet-tls-'));
    good = makePki(dir, 'good');
    other = makePki(dir, 'other');
    await cluster.startCoordinator(['--tls-cert', good.cert, '--tls-key', good.key]);
  });
  afterAll(() => cluster.stop());

  it('serves https; a worker and a client that trust the CA train a job end to end', async () => {
    expect(cluster.url).toMatch(/^https:/);
    const client = new GradfleetClient({ url: cluster.url, ca: readFileSync(good.ca) });
    cluster.startWorker(['--ca', good.ca]);
    await client.waitForWorkers(1);
    const data = await writeSmallMnist(1000, 200);
    const done = await client.waitForJob((await client.submit({ dataset: data.dataset, epochs: 1 })).id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    const { weights } = await client.download(done.id);
    expect(weights.byteLength).toBeGreaterThan(0);
  });

  it('fails closed with a CA that did not sign the certificate (client and worker)', async () => {
    const err = await new GradfleetClient({ url: cluster.url, ca: readFileSync(other.ca) })
      .jobs()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toMatch(/cannot reach the coordinator.*(certificate|CERT|self-signed|UNABLE)/i);
    const plain = await new GradfleetClient({ url: cluster.url }).jobs().catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(ApiError);
    const before = (await new GradfleetClient({ url: cluster.url, ca: readFileSync(good.ca) }).workers()).length;
    const worker = spawn(
      process.execPath,
      [join(ROOT, 'apps/worker/dist/main.js'), '--coordinator', cluster.wsUrl, '--backend', 'cpu', '--ca', other.ca],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    worker.stderr.on('data', (d: Buffer) => (log += d.toString()));
    await new Promise((r) => setTimeout(r, 3_000));
    worker.kill('SIGKILL');
    expect(log).toMatch(/certificate|self-signed|UNABLE_TO_VERIFY/i);
    expect((await new GradfleetClient({ url: cluster.url, ca: readFileSync(good.ca) }).workers()).length).toBe(before);
  });
});
