import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES, encodeFrame } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { RawWorker } from './helpers/raw-worker.js';

const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

describe('hostile frames are refused with their documented code; good workers keep training', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;

  beforeAll(async () => {
    data = await writeSmallMnist(2000, 500);
    await cluster.startCoordinator([
      '--max-message-bytes',
      String(MAX_MESSAGE_BYTES),
      '--heartbeat-timeout-ms',
      '5000',
      '--reducer-threads', // these in-job violations travel on the control connection (main-thread reducer);
      '0', // their data-plane counterparts are in tests/data-plane.spec.ts
    ]);
  });
  afterAll(() => cluster.stop());

  it('closes a wrong protocol version with UNSUPPORTED_PROTOCOL_VERSION', async () => {
    const w = new RawWorker(cluster.wsUrl);
    await w.hello('old', 999);
    expect(await w.closed).toMatchObject({ code: CLOSE_CODES.UNSUPPORTED_PROTOCOL_VERSION });
  });

  it('closes truncated, malformed, text and out-of-order frames with their codes', async () => {
    const cases: [(w: RawWorker) => void, number][] = [
      [(w) => w.sendRaw(encodeFrame({ t: 'hello' }, new Float32Array(4)).subarray(0, 30)), CLOSE_CODES.TRUNCATED_FRAME],
      [(w) => w.sendRaw(Buffer.from([1, 0, 0, 0, 0xc1])), CLOSE_CODES.MALFORMED_FRAME],
      [(w) => w.sendRaw('{"t":"hello"}'), CLOSE_CODES.MALFORMED_FRAME],
      [
        (w) =>
          w.send(
            { t: 'gradient', jobId: 'j', step: 0, bucket: 0, samples: 1, lossSum: 0, correct: 0, computeMs: 0 },
            new Float32Array(4),
          ),
        CLOSE_CODES.UNEXPECTED_MESSAGE,
      ],
    ];
    for (const [act, code] of cases) {
      const w = new RawWorker(cluster.wsUrl);
      await w.opened;
      act(w);
      expect((await w.closed).code).toBe(code);
    }
  });

  it('refuses a message over --max-message-bytes from its frame header (1009)', async () => {
    const w = new RawWorker(cluster.wsUrl);
    await w.hello();
    w.send({ t: 'state-chunk', transfer: 1, index: 0 }, new Float32Array(MAX_MESSAGE_BYTES / 4 + 16));
    expect((await w.closed).code).toBe(1009);
  });

  it('drops workers sending NaN, wrong-length or unknown-step gradients; the job completes with an exact audit', async () => {
    await cluster.startWorkers(2);
    const bad: {
      w: RawWorker;
      send: (m: { jobId: string; step: number }, n: number, params: number) => void;
      code: number;
    }[] = [
      {
        w: new RawWorker(cluster.wsUrl),
        code: CLOSE_CODES.NON_FINITE_GRADIENT,
        send: function (m, n, params) {
          const g = new Float32Array(params);
          g[7] = NaN;
          this.w.send(
            {
              t: 'gradient',
              jobId: m.jobId,
              step: m.step,
              bucket: 0,
              samples: n,
              lossSum: 1,
              correct: 0,
              computeMs: 1,
            },
            g,
          );
        },
      },
      {
        w: new RawWorker(cluster.wsUrl),
        code: CLOSE_CODES.GRADIENT_SIZE_MISMATCH,
        send: function (m, n, params) {
          this.w.send(
            {
              t: 'gradient',
              jobId: m.jobId,
              step: m.step,
              bucket: 0,
              samples: n,
              lossSum: 1,
              correct: 0,
              computeMs: 1,
            },
            new Float32Array(params - 1),
          );
        },
      },
      {
        w: new RawWorker(cluster.wsUrl),
        code: CLOSE_CODES.UNKNOWN_STEP,
        send: function (m, n, params) {
          this.w.send(
            {
              t: 'gradient',
              jobId: m.jobId,
              step: m.step + 5,
              bucket: 0,
              samples: n,
              lossSum: 1,
              correct: 0,
              computeMs: 1,
            },
            new Float32Array(params),
          );
        },
      },
    ];
    for (const b of bad) {
      await b.w.hello('rogue');
      let params = 0;
      b.w.onMessage = (message, payload) => {
        if (message.t === 'job-start') {
          params = message.layout.slice(0, 4).reduce((n, s) => n + s.reduce((a, c) => a * c, 1), 0); // 2 dense layers: 4 trainable tensors
          b.w.send({ t: 'ready', jobId: message.jobId, trainCount: data.trainCount, testCount: data.testCount });
        }
        if (message.t === 'train') b.send.call(b, message, payload.byteLength / 4, params);
      };
    }
    // All five are idle: the job takes them all; it may go on with the two good ones.
    const job = await cluster.client.submit({
      dataset: data.dataset,
      epochs: 1,
      batchSize: 50,
      minWorkers: 2,
      maxWorkers: 5,
    });
    const codes = await Promise.all(bad.map((b) => b.w.closed));
    expect(codes.map((c) => c.code)).toEqual(bad.map((b) => b.code));
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.history[0]!.audit).toMatchObject({ ok: true, missing: 0, duplicated: 0, seen: 1800 });
    expect(done.result!.testAccuracy).toBeGreaterThan(0.7);
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    for (const code of [
      'NON_FINITE_GRADIENT',
      'GRADIENT_SIZE_MISMATCH',
      'UNKNOWN_STEP',
      'UNSUPPORTED_PROTOCOL_VERSION',
      'TRUNCATED_FRAME',
    ]) {
      expect(metrics).toMatch(new RegExp(`gradfleet_protocol_errors_total\\{code="${code}"\\} [1-9]`));
    }
    expect(await cluster.client.workers()).toHaveLength(2);
  });
});
