import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataCache, MAX_SHARD_BYTES } from './remote-data.js';

const SHA = '0'.repeat(64);

describe('DataCache against a hostile coordinator', () => {
  let server: Server;
  let base = '';
  const hits: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(`${req.headers.host ?? ''}${req.url ?? ''}`);
      res.writeHead(200).end(Buffer.alloc(64)); // more than any split below announces
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => server.close());

  it.each([
    ['@attacker.example/v1/jobs/x/data/train', /outside its own \/v1\/jobs\/ path/],
    ['//attacker.example/v1/jobs/x/data/train', /outside its own/],
    ['http://attacker.example/v1/jobs/x/data/train', /outside its own/],
    ['/metrics', /outside its own/],
  ])('refuses a shard path %s that leaves the coordinator (the token goes with it)', async (path, why) => {
    const cache = new DataCache(base, 'worker-token-0123456789');
    await expect(cache.get({ train: { path, bytes: 8, sha256: SHA } }, false)).rejects.toThrow(why);
    expect(hits).toEqual([]);
  });

  it('refuses an announced shard over the cap before allocating it', async () => {
    const cache = new DataCache(base);
    await expect(
      cache.get({ train: { path: '/v1/jobs/x/data/train', bytes: MAX_SHARD_BYTES + 1, sha256: SHA } }, false),
    ).rejects.toThrow(/workers accept at most/);
    expect(hits).toEqual([]);
  });

  it('stops reading past the announced size', async () => {
    const cache = new DataCache(base);
    await expect(
      cache.get({ train: { path: '/v1/jobs/x/data/train', bytes: 16, sha256: SHA } }, false),
    ).rejects.toThrow(/more than the 16 bytes announced/);
  });
});
