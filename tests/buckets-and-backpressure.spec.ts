import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES, selectBackend, type CoordinatorMessage } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { RawWorker } from './helpers/raw-worker.js';

/** Dense(784 -> units, relu) -> Dense(10, softmax) as a Layers topology. */
function mlp(units: number): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [784], units, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

const paramsOf = (m: CoordinatorMessage) =>
  m.t === 'job-start' ? m.layout.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0) : 0;

// The main-thread reducer (--reducer-threads 0): gradients over the WebSocket control connection.
// The same cases on the data plane: tests/data-plane.spec.ts.
describe('bucketed gradients on the main thread: partial contributions and readers that stop reading', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;

  beforeAll(async () => {
    await selectBackend('cpu'); // to build the test's topology
    data = await writeSmallMnist(2048, 200);
    await cluster.startCoordinator(['--heartbeat-timeout-ms', '60000', '--reducer-threads', '0']);
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  it('a worker refused part-way through its buckets: the step is abandoned and retried, never averaged; the audit stays exact', async () => {
    const rogue = new RawWorker(cluster.wsUrl);
    await rogue.hello('half-a-gradient');
    await cluster.client.waitForWorkers(3);
    rogue.onMessage = (m, payload) => {
      if (m.t === 'job-start')
        rogue.send({ t: 'ready', jobId: m.jobId, trainCount: data.trainCount, testCount: data.testCount });
      if (m.t === 'train') {
        const header = {
          t: 'gradient',
          jobId: m.jobId,
          step: m.step,
          samples: payload.byteLength / 4,
          lossSum: 1,
          correct: 0,
          computeMs: 1,
        };
        rogue.send({ ...header, bucket: 0 }, new Float32Array(16384)); // a good first bucket (64 KiB)...
        const bad = new Float32Array(16384);
        bad[5] = NaN;
        rogue.send({ ...header, bucket: 1 }, bad); // ...then NaN: refused after bucket 0 was summed
      }
    };
    const job = await cluster.client.submit({
      dataset: data.dataset,
      epochs: 2,
      batchSize: 64,
      validationSplit: 0,
      minWorkers: 2,
      maxWorkers: 3,
      bucketBytes: 65536,
    });
    expect((await rogue.closed).code).toBe(CLOSE_CODES.NON_FINITE_GRADIENT);
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    for (const h of done.history) {
      expect(h.audit.ok).toBe(true);
      expect(h.samples).toBe(data.trainCount);
    }
    expect(done.replicas.divergences).toBe(0);
    const log = await (await fetch(`${cluster.url}/v1/jobs/${job.id}/logs`)).text();
    expect(log).toMatch(/step 0 abandoned: a worker was lost while sending its gradient; its batch is retried/);
  });

  it('a worker that stops reading is closed with SLOW_READER once two steps of updates are queued; the job goes on', async () => {
    const reader = new RawWorker(cluster.wsUrl);
    await reader.hello('never-reads');
    await cluster.client.waitForWorkers(3);
    let params = 0;
    reader.onMessage = (m) => {
      if (m.t !== 'job-start') return;
      params = paramsOf(m);
      reader.send({ t: 'ready', jobId: m.jobId, trainCount: data.trainCount, testCount: data.testCount });
      (reader.ws as unknown as { _socket: { pause(): void } })._socket.pause(); // reads nothing more
    };
    const slowReaderCloses = async () =>
      Number(
        /gradfleet_protocol_errors_total\{code="SLOW_READER"\} (\d+)/.exec(
          await (await fetch(`${cluster.url}/metrics`)).text(),
        )?.[1] ?? NaN,
      );
    const slowBefore = await slowReaderCloses();
    const beat = setInterval(() => reader.send({ t: 'heartbeat' }), 1000);
    try {
      // ~3.3 MB updates; one backup worker: steps go on without the silent reader's gradient.
      const job = await cluster.client.submit({
        model: { topology: mlp(1024) },
        dataset: data.dataset,
        epochs: 1,
        batchSize: 32,
        validationSplit: 0,
        minWorkers: 2,
        maxWorkers: 3,
        backupWorkers: 1,
      });
      // The peer reads nothing, so it never sees the close frame: the coordinator closes with
      // SLOW_READER, then drops the TCP connection (1006 on this side).
      const closed = await reader.closed;
      expect([CLOSE_CODES.SLOW_READER, 1006]).toContain(closed.code);
      // At least the silent reader: under load a real worker that falls behind the backup-worker
      // cadence (its gradient excused, its updates still queued) is closed the same way (CI saw 2).
      expect(await slowReaderCloses()).toBeGreaterThanOrEqual(slowBefore + 1);
      await cluster.waitForLog('over two steps of updates');
      expect(params * 4).toBeGreaterThan(3_000_000);
      const done = await cluster.client.waitForJob(job.id);
      expect(done.state, done.reason).toBe('SUCCEEDED');
      expect(done.history.every((h) => h.audit.ok && h.samples === data.trainCount)).toBe(true);
    } finally {
      clearInterval(beat);
    }
  });
});
