import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketPlan, CLOSE_CODES, type CoordinatorMessage } from '@gradfleet/core';
import { DATA_FRAME_TYPES, shardOf } from '@gradfleet/core/dataplane';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { freePort } from './helpers/prometheus.js';
import { RawDataPeer } from './helpers/raw-data-peer.js';
import { RawWorker } from './helpers/raw-worker.js';

type JobStart = Extract<CoordinatorMessage, { t: 'job-start' }>;
const paramsOf = (m: JobStart) => m.layout.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);

/**
 * A peer that joins a job on the data plane by hand: it connects to every reducer shard
 * named in `job-start` and, for each `train`, calls `gradient` to send what it likes.
 */
class RoguePeer {
  readonly w: RawWorker;
  readonly shards: RawDataPeer[] = [];
  start: JobStart | undefined;
  constructor(
    wsUrl: string,
    private readonly data: SmallMnist,
    private readonly onTrain: (rogue: RoguePeer, m: Extract<CoordinatorMessage, { t: 'train' }>, n: number) => void,
  ) {
    this.w = new RawWorker(wsUrl);
  }

  async join(name: string): Promise<void> {
    await this.w.hello(name);
    this.w.onMessage = (m, payload) => {
      if (m.t === 'job-start') {
        this.start = m;
        for (const s of m.dataPlane!.shards) {
          const peer = new RawDataPeer(s.port);
          peer.hello(m.jobId, this.w.workerId);
          this.shards.push(peer);
        }
        this.w.send({ t: 'ready', jobId: m.jobId, trainCount: this.data.trainCount, testCount: this.data.testCount });
      }
      if (m.t === 'train') this.onTrain(this, m, payload.byteLength / 4);
    };
  }

  /** Sends the gradient-sent stats, then bucket `b` of `values(b)` to the shard that owns it. */
  gradient(
    m: Extract<CoordinatorMessage, { t: 'train' }>,
    n: number,
    values: (b: number, len: number) => Float32Array,
  ): void {
    const start = this.start!;
    const plan = new BucketPlan(paramsOf(start), (start.spec['bucketBytes'] as number) ?? 4 << 20);
    const ranges = start.dataPlane!.shards.map((s) => [s.start, s.end] as const);
    this.w.send({
      t: 'gradient-sent',
      jobId: m.jobId,
      step: m.step,
      round: m.round!,
      samples: n,
      lossSum: 1,
      correct: 0,
      computeMs: 1,
    });
    for (let b = 0; b < plan.count; b++) {
      const v = values(b, plan.length(b));
      this.shards[shardOf(ranges, b)]!.frame(
        { type: DATA_FRAME_TYPES.GRADIENT, round: m.round!, step: m.step, bucket: b, samples: n },
        new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
      );
    }
  }
}

describe('data plane: reducer shards under partial, slow and hostile peers', () => {
  const cluster = new TestCluster();
  let data: SmallMnist;
  let port = 0;

  beforeAll(async () => {
    data = await writeSmallMnist(2048, 200);
    port = await freePort();
    // Shard k listens on port + 1 + k.
    await cluster.startCoordinator(['--heartbeat-timeout-ms', '60000', '--reducer-threads', '2'], port);
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  it('a peer whose bucket is refused part-way: the round is abandoned on every shard and retried, never averaged', async () => {
    const rogue = new RoguePeer(cluster.wsUrl, data, (r, m, n) =>
      r.gradient(m, n, (b, len) => {
        const g = new Float32Array(len);
        if (b === 3) g[5] = NaN; // buckets 0-2 were summed (on both shards' ranges) before this one
        return g;
      }),
    );
    await rogue.join('half-a-gradient');
    await cluster.client.waitForWorkers(3);
    const job = await cluster.client.submit({
      dataset: data.dataset,
      epochs: 2,
      batchSize: 64,
      validationSplit: 0,
      minWorkers: 2,
      maxWorkers: 3,
      bucketBytes: 65536, // mnist-mlp: 7 buckets over 2 shards
      checksumEverySteps: 4,
    });
    expect((await rogue.w.closed).code).toBe(CLOSE_CODES.NON_FINITE_GRADIENT);
    expect(rogue.start!.dataPlane!.shards).toHaveLength(2);
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    for (const h of done.history) {
      expect(h.audit.ok).toBe(true);
      expect(h.samples).toBe(data.trainCount);
    }
    expect(done.replicas.divergences).toBe(0);
    expect(done.replicas.checks).toBeGreaterThan(0);
    const log = (await cluster.client.logs(job.id)).map((l) => l.line).join('\n');
    expect(log).toMatch(/step 0 abandoned: bucket 3 from w\d+ refused; its batch is retried/);
  });

  it('a peer that stops reading its data connection is closed with SLOW_READER; the job goes on', async () => {
    let params = 0;
    const rogue = new RoguePeer(cluster.wsUrl, data, () => {
      for (const s of rogue.shards) s.socket.pause(); // sends nothing and reads nothing: excused each step
    });
    await rogue.join('never-reads');
    await cluster.client.waitForWorkers(3);
    const beat = setInterval(() => rogue.w.send({ t: 'heartbeat' }), 1000);
    try {
      const job = await cluster.client.submit({
        dataset: data.dataset,
        epochs: 1,
        batchSize: 32,
        validationSplit: 0,
        minWorkers: 2,
        maxWorkers: 3,
        backupWorkers: 1,
        model: { topology: wideMlp() },
      });
      const closedWith = await rogue.w.closed;
      expect(closedWith.code, closedWith.reason).toBe(CLOSE_CODES.SLOW_READER);
      params = paramsOf(rogue.start!);
      expect(params * 4).toBeGreaterThan(3_000_000);
      const done = await cluster.client.waitForJob(job.id);
      expect(done.state, done.reason).toBe('SUCCEEDED');
      expect(done.history.every((h) => h.audit.ok && h.samples === data.trainCount)).toBe(true);
    } finally {
      clearInterval(beat);
    }
  });

  it('hostile data connections are refused and closed; training beside them is unaffected', async () => {
    const job = await cluster.client.submit({ dataset: data.dataset, epochs: 1, batchSize: 64, validationSplit: 0 });
    const attempts: [string, (p: RawDataPeer) => void, RegExp | undefined][] = [
      ['unknown worker', (p) => p.hello(job.id, 'w-nobody'), /UNKNOWN_STEP: worker w-nobody is not in job/],
      ['unknown job', (p) => p.hello('no-such-job', 'w1'), /UNKNOWN_STEP/],
      [
        'gradient before hello',
        (p) => p.frame({ type: DATA_FRAME_TYPES.GRADIENT }, new Uint8Array(8)),
        /UNEXPECTED_MESSAGE/,
      ],
      ['hello not JSON', (p) => p.frame({ type: DATA_FRAME_TYPES.HELLO }, Buffer.from('{{')), /MALFORMED_FRAME/],
      ['oversized hello', (p) => p.frame({ type: DATA_FRAME_TYPES.HELLO }, new Uint8Array(5000)), /MESSAGE_TOO_LARGE/],
      ['unknown type', (p) => p.frame({ type: 9 }, new Uint8Array(0)), /MALFORMED_FRAME/],
      ['random bytes', (p) => p.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(3))), undefined],
    ];
    for (const [what, act, reason] of attempts) {
      const p = new RawDataPeer(port + 1);
      await p.opened;
      act(p);
      const closed = await p.closed;
      if (reason) expect(closed.refused, what).toMatch(reason);
    }
    const done = await cluster.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.history.every((h) => h.audit.ok)).toBe(true);
  });
});

describe('data plane: K reducer shards give the bytes of the main-thread reducer', () => {
  // One worker sends its step stats 300 ms after its buckets (GRADFLEET_TEST_LATE_STATS_MS), so
  // the shards commit every round before its loss and accuracy reach the coordinator: they must
  // still count (a regression: they were dropped, and the epoch's loss was off under load).
  it('final weights are bit-identical, and loss and accuracy the same, for --reducer-threads 0, 1, 2 and 3 with 2 workers', async () => {
    const data = await writeSmallMnist(640, 100);
    const results: Float32Array[] = [];
    const epochs: { loss: number; accuracy: number }[] = [];
    for (const threads of [0, 1, 2, 3]) {
      const cluster = new TestCluster();
      try {
        await cluster.startCoordinator(['--reducer-threads', String(threads)]);
        cluster.startWorker(['--name', 'prompt']);
        cluster.startWorker(['--name', 'late-stats'], { GRADFLEET_TEST_LATE_STATS_MS: '300' });
        await cluster.client.waitForWorkers(2, 60_000);
        const job = await cluster.client.submit({
          model: { topology: wideMlp(64) },
          dataset: data.dataset,
          epochs: 1,
          batchSize: 64,
          validationSplit: 0,
          minWorkers: 2,
          maxWorkers: 2,
          bucketBytes: 16384, // ~13 buckets: every shard gets a range
          checksumEverySteps: 2,
          // No straggler deadline: the late stats must not get a slice excused (and retried in
          // another order) on a busy machine; only their accounting is under test.
          stragglerDeadlineFactor: 0,
        });
        const done = await cluster.client.waitForJob(job.id);
        expect(done.state, `${done.reason}\n${cluster.log}`).toBe('SUCCEEDED');
        expect(done.replicas.divergences).toBe(0);
        results.push(new Float32Array((await cluster.client.model(job.id)).weights));
        epochs.push({ loss: done.history[0]!.loss, accuracy: done.history[0]!.accuracy });
        const retried = (await cluster.client.logs(job.id)).filter((l) => /abandoned|excused|left/.test(l.line));
        expect(retried, `K=${threads}`).toEqual([]);
      } finally {
        await cluster.stop();
      }
    }
    for (const r of results.slice(1)) expect(Buffer.from(r.buffer).equals(Buffer.from(results[0]!.buffer))).toBe(true);
    // The same per-worker stats, summed in arrival order: equal up to the order of additions.
    for (const e of epochs.slice(1)) {
      expect(Math.abs(e.loss - epochs[0]!.loss)).toBeLessThan(1e-9 * epochs[0]!.loss);
      expect(e.accuracy).toBeCloseTo(epochs[0]!.accuracy, 12);
    }
  });
});

/** Dense(784 -> units, relu) -> Dense(10, softmax), as a Layers topology. */
function wideMlp(units = 1024): Record<string, unknown> {
  return {
    class_name: 'Sequential',
    config: {
      name: 'wide',
      layers: [
        { class_name: 'Dense', config: { units, activation: 'relu', batch_input_shape: [null, 784], name: 'd1' } },
        { class_name: 'Dense', config: { units: 10, activation: 'softmax', name: 'd2' } },
      ],
    },
  };
}
