import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, GradfleetClient } from '@gradfleet/core';
import { TestCluster } from './helpers/cluster.js';

const TOKENS = {
  alice: 'alice-token-0123456789abcdef',
  bob: 'bob-token-0123456789abcdef',
  root: 'root-token-0123456789abcdef',
};
const ADMIN_TOKEN = 'single-admin-token-0123456789';
const WORKER_TOKEN = 'worker-token-0123456789abcdef';
const sha256 = (t: string) => createHash('sha256').update(t).digest('hex');

async function status(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return (err as ApiError).status;
  }
}

describe('per-user API tokens (--api-tokens)', () => {
  const cluster = new TestCluster();
  const as: Record<string, GradfleetClient> = {};
  const ids: Record<string, string> = {};
  const start = async () => {
    await cluster.startCoordinator(['--api-tokens', join(dir, 'tokens')]);
    for (const [name, token] of Object.entries({ ...TOKENS, admin: ADMIN_TOKEN }))
      as[name] = new GradfleetClient({ url: cluster.url, token });
  };
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gradfleet-tokens-'));
    writeFileSync(
      join(dir, 'tokens'),
      [
        '# name sha256 role',
        `alice ${sha256(TOKENS.alice)} submit`,
        `bob   ${sha256(TOKENS.bob)} submit   # a comment`,
        '',
        `root ${sha256(TOKENS.root)} admin`,
      ].join('\n'),
    );
    cluster.coordinatorEnv = {
      GRADFLEET_API_TOKEN: ADMIN_TOKEN,
      GRADFLEET_WORKER_TOKEN: WORKER_TOKEN,
      GRADFLEET_LOG_LEVEL: 'debug', // successful reads are logged at debug
    };
    await start();
    ids['alice'] = (await as['alice']!.submit({ epochs: 1, minWorkers: 9, name: 'alice-job' })).id;
    ids['bob'] = (await as['bob']!.submit({ epochs: 1, minWorkers: 9, name: 'bob-job' })).id;
  });
  afterAll(() => cluster.stop());

  const check = async () => {
    expect((await as['alice']!.jobs()).map((j) => j.id)).toEqual([ids['alice']]);
    expect((await as['bob']!.jobs()).map((j) => j.id)).toEqual([ids['bob']]);
    for (const admin of ['root', 'admin'])
      expect((await as[admin]!.jobs()).map((j) => j.id).sort()).toEqual([ids['alice'], ids['bob']].sort());
    expect((await as['root']!.job(ids['alice']!)).owner).toBe('alice');
  };

  it('submit tokens see only their own jobs; admin tokens (the file or GRADFLEET_API_TOKEN) see all', check);

  it("answers 404 to a submit token touching another's job, as for a job that does not exist", async () => {
    const alice = as['alice']!;
    const bobs = ids['bob']!;
    for (const p of [alice.job(bobs), alice.cancel(bobs), alice.delete(bobs), alice.logs(bobs)])
      expect(await status(p)).toBe(404);
    const shard = await fetch(`${cluster.url}/v1/jobs/${bobs}/events`, {
      headers: { authorization: `Bearer ${TOKENS.alice}` },
    });
    expect(shard.status).toBe(404);
    expect(await shard.text()).not.toContain('bob-job');
    expect((await as['bob']!.job(bobs)).state).toBe('QUEUED'); // untouched
    expect((await as['bob']!.cancel(bobs)).state).toBe('CANCELLED');
  });

  it('refuses unknown tokens (401) and the worker token (403)', async () => {
    expect(await status(new GradfleetClient({ url: cluster.url, token: 'x'.repeat(32) }).jobs())).toBe(401);
    expect(await status(new GradfleetClient({ url: cluster.url, token: WORKER_TOKEN }).jobs())).toBe(403);
  });

  it("logs every API call with the token's name, never a token", () => {
    const calls = cluster.log.split('\n').filter((l) => l.includes('"api call"'));
    expect(calls.some((l) => l.includes('"token":"alice"') && l.includes('"status":404'))).toBe(true);
    expect(calls.some((l) => l.includes('"token":"root"'))).toBe(true);
    expect(calls.some((l) => l.includes('"token":"admin"'))).toBe(true);
    for (const t of [...Object.values(TOKENS), ADMIN_TOKEN, WORKER_TOKEN]) expect(cluster.log).not.toContain(t);
  });

  it('keeps ownership across a restart', async () => {
    await cluster.stop();
    await start();
    await check();
  });
});
