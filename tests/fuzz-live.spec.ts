import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  PROTOCOL_VERSION,
  errorCodeForClose,
  encodeFrame,
  encodeMessage,
  maxRelativeDifference,
  mulberry32,
  type JobSpecInput,
} from '@gradfleet/core';
import { TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';
import { CLOSE_FOR_LIE, LyingWorker, type InJobLie } from './helpers/lying-worker.js';
import { RawWorker } from './helpers/raw-worker.js';

/** Hostile connections per run; `GRADFLEET_FUZZ_LIVE_CONNECTIONS` raises it for a long run. */
const CONNECTIONS = Number(process.env['GRADFLEET_FUZZ_LIVE_CONNECTIONS'] ?? 400);
const DOCUMENTED = new Set<number>([...Object.values(CLOSE_CODES), 1009]);

const hello = encodeMessage({ t: 'hello', v: PROTOCOL_VERSION, name: 'hostile', host: 'h', pid: 1, backend: 'none' });
const samples = [
  hello,
  encodeMessage(
    { t: 'gradient', jobId: 'j', step: 0, bucket: 0, samples: 1, lossSum: 0, correct: 0, computeMs: 0 },
    new Float32Array(32),
  ),
  encodeMessage({ t: 'ready', jobId: 'j', trainCount: 1, testCount: 1 }),
  encodeMessage({ t: 'eval-result', jobId: 'j', requestId: 1, lossSum: 0, correct: 0, count: 1 }),
  encodeMessage({ t: 'weights', jobId: 'j', requestId: 9, state: { transfer: 1, bytes: 16, chunkBytes: 16 } }),
  encodeMessage({ t: 'state-chunk', transfer: 1, index: 0 }, new Float32Array(4)),
];

/** One hostile frame from a seeded generator: random bytes, mutated or replayed real frames, lies. */
function hostileFrame(rand: () => number): Buffer {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  switch (Math.floor(rand() * 6)) {
    case 0:
      return Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
    case 1: {
      const b = Buffer.from(pick(samples));
      for (let i = 0; i < 1 + rand() * 6; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      return b;
    }
    case 2:
      return Buffer.from(pick(samples)).subarray(0, Math.floor(rand() * 40));
    case 3: {
      const b = Buffer.from(pick(samples));
      b.writeUInt32LE(Math.floor(rand() * 0xffffffff), 0);
      return b;
    }
    case 4:
      return encodeFrame({
        t: pick(['gradient', 'ready', 'weights', 'state-chunk', 'checksum', 'hello', 'x']),
        step: rand() > 0.5 ? -1 : 1e12,
        jobId: rand() > 0.5 ? 'j' : 7,
        pb: 0,
      });
    default:
      return pick(samples); // replayed valid frames: out of order or for no job
  }
}

describe('a live coordinator under hostile connections', () => {
  const cluster = new TestCluster();
  let spec: JobSpecInput;

  beforeAll(async () => {
    const data = await writeSmallMnist(3000, 500);
    spec = {
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 2,
      batchSize: 32,
      seed: 11,
      minWorkers: 2,
      maxWorkers: 2,
      checkpointEverySteps: 0,
    };
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
  });
  afterAll(() => cluster.stop());

  async function train(): Promise<Float32Array> {
    const done = await cluster.client.waitForJob((await cluster.client.submit(spec)).id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    return new Float32Array((await cluster.client.model(done.id)).weights);
  }

  it(`closes every one of ${CONNECTIONS} hostile connections with a documented code while a job trains to the same result`, async () => {
    const rss = async () =>
      Number(/process_resident_memory_bytes (\d+)/.exec(await (await fetch(`${cluster.url}/metrics`)).text())![1]);
    const reference = await train();
    const rssBefore = await rss();
    const rand = mulberry32(2024);
    const attacked = train();
    const codes: number[] = [];
    let frames = 0;
    for (let batch = 0; batch < CONNECTIONS / 20; batch++) {
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const w = new RawWorker(cluster.wsUrl);
          await w.opened;
          if (rand() < 0.5) w.ws.send(hello);
          for (let i = 0; i < 1 + rand() * 10 && w.ws.readyState === w.ws.OPEN; i++) {
            w.ws.send(hostileFrame(rand));
            frames++;
          }
          const closed = await Promise.race([
            w.closed,
            new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000)),
          ]);
          if (closed) codes.push(closed.code);
          else w.ws.close();
        }),
      );
    }
    const weights = await attacked;
    expect(codes.length).toBe(CONNECTIONS); // every hostile connection was closed by the coordinator
    expect(codes.filter((c) => !DOCUMENTED.has(c))).toEqual([]);
    expect(frames).toBeGreaterThan(CONNECTIONS);
    expect(maxRelativeDifference(weights, reference)).toBeLessThan(1e-6);
    expect((await fetch(`${cluster.url}/healthz`)).ok).toBe(true);
    expect((await rss()) - rssBefore).toBeLessThan(200 * 1024 * 1024);
  });
});

describe('hostile peers inside the training job', () => {
  const cluster = new TestCluster();
  const TRAIN = 3000;
  const TEST = 500;
  /** Lies told by peers that join mid-job (each gets a slice, then lies about it). */
  const JOINER_LIES: InJobLie[] = ['wrong-step', 'wrong-bucket', 'wrong-samples', 'nan-gradient', 'oversized-gradient'];
  let spec: JobSpecInput;

  beforeAll(async () => {
    const data = await writeSmallMnist(TRAIN, TEST);
    spec = {
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 2,
      batchSize: 16, // ~340 steps: time for the joiners to get in and lie
      seed: 12,
      minWorkers: 2,
      maxWorkers: 16,
      checkpointEverySteps: 4, // the first weight fetch comes early: the first member is asked
      checksumEverySteps: 10,
    };
    // The lies travel as gradients on the control connection: the main-thread reducer (data-plane
    // lies: tests/data-plane.spec.ts).
    await cluster.startCoordinator(['--reducer-threads', '0']);
  });
  afterAll(() => cluster.stop());

  it('lying members (wrong step, bucket, sample count, NaN, oversized gradient, wrong-size weights) are closed with their documented codes; the honest replicas finish identical with an exact audit', async () => {
    const counts = { trainCount: TRAIN, testCount: TEST };
    const within = <T>(p: Promise<T>, what: string) =>
      Promise.race([
        p,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not closed in time`)), 60_000)),
      ]);
    // The weights liar connects before the honest workers: it is the job's first member, the
    // one asked for the weights at the first checkpoint.
    const first = new LyingWorker(cluster.wsUrl, 'wrong-size-weights', counts);
    await first.join();
    cluster.startWorker(['--name', 'honest-1']);
    cluster.startWorker(['--name', 'honest-2']);
    await cluster.client.waitForWorkers(3, 60_000);
    const job = await cluster.client.submit(spec);
    for (let i = 0; (await cluster.client.job(job.id)).progress.step < 8 && i < 2000; i++)
      await new Promise((r) => setTimeout(r, 20));
    const joiners = JOINER_LIES.map((lie) => new LyingWorker(cluster.wsUrl, lie, counts));
    await Promise.all(joiners.map((j) => j.join()));
    const closes = await Promise.all([first, ...joiners].map((l) => within(l.closed, l.lie)));
    const done = await cluster.client.waitForJob(job.id);

    for (const [i, liar] of [first, ...joiners].entries()) {
      expect(liar.lied, liar.lie).toBe(true); // it was a member and told its lie in-job
      expect(errorCodeForClose(closes[i]!.code), `${liar.lie}: ${closes[i]!.reason}`).toBe(CLOSE_FOR_LIE[liar.lie]);
    }
    expect(first.stepsAnswered).toBeGreaterThan(0);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.history.map((h) => h.audit)).toEqual(
      [0, 1].map((epoch) => ({ epoch, ok: true, seen: 2700, missing: 0, duplicated: 0 })),
    );
    expect(done.replicas.checks).toBeGreaterThan(0);
    expect(done.replicas.divergences).toBe(0);
    const log = (await cluster.client.logs(done.id)).map((l) => l.line).join('\n');
    for (const liar of [first, ...joiners]) expect(log).toContain(CLOSE_FOR_LIE[liar.lie]);
    const honest = (await cluster.client.workers()).filter((w) => w.name.startsWith('honest-'));
    expect(honest.map((w) => w.stats!.samples > 0)).toEqual([true, true]);
    expect(done.result!.testAccuracy).toBeGreaterThan(0.7);
  });
});
