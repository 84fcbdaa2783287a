import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { bucketCodec } from '../compression/codec.js';
import { BucketPlan } from '../math/bucket-plan.js';
import { DATA_FRAME_TYPES, dataFrame, readDataHeader } from './data-frame.js';
import type { ShardEvent } from './reducer-shard.js';
import { ShardHost } from './shard-host.js';

const TOKEN = 'secret-worker-token';
const hosts: ShardHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function start(helloTimeoutMs = 10_000) {
  const events: ShardEvent[] = [];
  const host = new ShardHost({ workerToken: TOKEN, helloTimeoutMs }, (_j, e) => events.push(e));
  hosts.push(host);
  const port = await host.listen();
  host.command({
    t: 'job',
    jobId: 'j',
    params: 512,
    bucketBytes: 1024,
    compression: 'none',
    hashUpdates: true,
    topkRatio: 0.01,
    range: [0, 2],
  });
  host.command({ t: 'allow', jobId: 'j', workers: ['w1'] });
  return { host, port, events };
}

/** Connects, sends `frames`, and collects every byte until the host closes the socket (or `until` bytes). */
function talk(port: number, frames: Buffer[], until = Infinity): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let n = 0;
    s.on('connect', () => frames.forEach((f) => s.write(f)));
    s.on('data', (c: Buffer) => {
      got.push(c);
      n += c.byteLength;
      if (n >= until) {
        s.destroy();
        resolve({ bytes: Buffer.concat(got), closed: false });
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => resolve({ bytes: Buffer.concat(got), closed: true }));
  });
}

const hello = (workerId: string, token: string) =>
  dataFrame(
    { type: DATA_FRAME_TYPES.HELLO, flags: 0, round: 0, step: 0, bucket: 0, samples: 0 },
    Buffer.from(JSON.stringify({ jobId: 'j', workerId, token })),
  );

describe('ShardHost over loopback TCP', () => {
  it('refuses a wrong token (UNEXPECTED_MESSAGE) and a worker not allowed (UNKNOWN_STEP) with REFUSE, then closes', async () => {
    const { port } = await start();
    const cases: [Buffer, string][] = [
      [hello('w1', 'wrong'), 'UNEXPECTED_MESSAGE'],
      [hello('intruder', TOKEN), 'UNKNOWN_STEP'],
    ];
    for (const [h, code] of cases) {
      const { bytes, closed } = await talk(port, [h]);
      expect(closed).toBe(true);
      expect(readDataHeader(bytes).type).toBe(DATA_FRAME_TYPES.REFUSE);
      const reason = bytes.subarray(32).toString('utf8');
      expect(reason).toContain(code);
      expect(reason).not.toContain(TOKEN);
    }
  });

  it('closes a silent connection after helloTimeoutMs', async () => {
    const { port } = await start(100);
    const { bytes, closed } = await talk(port, []);
    expect(closed).toBe(true);
    expect(bytes.byteLength).toBe(0);
  });

  it('carries an allowed worker’s gradient to the shard and the update back over the same socket', async () => {
    const { host, port, events } = await start();
    host.command({
      t: 'begin',
      jobId: 'j',
      plan: { round: 1, step: 0, contributors: { w1: 4 }, recipients: ['w1'], checksum: false },
    });
    const codec = bucketCodec('none');
    const plan = new BucketPlan(512, 1024);
    const g = Float32Array.from({ length: 512 }, (_, i) => i / 8);
    const grads = [0, 1].map((b) => {
      const v = plan.slice(g, b);
      const out = new Uint8Array(codec.gradientBytes(v.length));
      codec.encode(v, out);
      return dataFrame({ type: DATA_FRAME_TYPES.GRADIENT, flags: 0, round: 1, step: 0, bucket: b, samples: 4 }, out);
    });
    const { bytes } = await talk(port, [hello('w1', TOKEN), ...grads], 2 * (32 + 1024));
    expect(readDataHeader(bytes).type).toBe(DATA_FRAME_TYPES.UPDATE);
    const second = bytes.subarray(32 + 1024);
    expect(readDataHeader(second)).toMatchObject({ type: DATA_FRAME_TYPES.UPDATE, bucket: 1, round: 1 });
    const upd = new Float32Array(second.buffer.slice(second.byteOffset + 32, second.byteOffset + 32 + 1024));
    expect(upd[5]).toBeCloseTo(g[256 + 5]!, 5);
    expect(events).toContainEqual(expect.objectContaining({ t: 'done', round: 1 }));
  });
});
