import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@gradfleet/core';
import { Coordinator } from './coordinator.js';
import { CoordinatorStartError } from './start-error.js';

const logger = createLogger('test').child({ level: 'silent' });
const dataDir = () => mkdtempSync(join(tmpdir(), 'gradfleet-start-'));

/** What `listen()` rejects with. */
async function startFailure(c: Coordinator): Promise<unknown> {
  try {
    await c.listen();
  } catch (err) {
    return err;
  }
  throw new Error('listen() succeeded');
}

describe('coordinator start errors carry stable codes', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0)) await f();
  });

  it('a non-loopback address without tokens: INSECURE_WITHOUT_TOKENS, saying what to set', async () => {
    const c = new Coordinator({ host: '0.0.0.0', port: 0, dataDir: dataDir(), logger });
    cleanup.push(() => c.close());
    const err = await startFailure(c);
    expect(err).toBeInstanceOf(CoordinatorStartError);
    expect(err).toMatchObject({ code: 'INSECURE_WITHOUT_TOKENS' });
    expect((err as Error).message).toMatch(/--worker-token and --api-token .* or pass --insecure/);
  });

  it('a port in use: ADDRESS_IN_USE, naming host and port', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => taken.close(() => r())));
    const port = (taken.address() as { port: number }).port;
    const c = new Coordinator({ host: '127.0.0.1', port, dataDir: dataDir(), logger });
    cleanup.push(() => c.close().catch(() => undefined));
    const err = await startFailure(c);
    expect(err).toBeInstanceOf(CoordinatorStartError);
    expect(err).toMatchObject({ code: 'ADDRESS_IN_USE' });
    expect((err as Error).message).toContain(`127.0.0.1:${port}: the port is in use`);
  });
});
