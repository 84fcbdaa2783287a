import { describe, expect, it } from 'vitest';
import { bucketCodec, COMPRESSIONS } from '../compression/codec.js';
import { BucketPlan } from '../math/bucket-plan.js';
import { GradientReducer } from '../math/gradient-reducer.js';
import { DATA_FRAME_TYPES, type DataFrameHeader } from './data-frame.js';
import { ReducerShard, type ShardEvent, type ShardLink } from './reducer-shard.js';

/** A ShardLink without sockets: records frames per worker, `done` on demand, configurable backlog. */
class FakeLink implements ShardLink {
  frames = new Map<string, Buffer[]>();
  backlog = new Map<string, number>();
  absent = new Set<string>();
  send(worker: string, frame: Buffer, done: () => void): boolean {
    if (this.absent.has(worker)) return false;
    const list = this.frames.get(worker) ?? [];
    list.push(Buffer.from(frame));
    this.frames.set(worker, list);
    done();
    return true;
  }
  queued(worker: string): number {
    return this.backlog.get(worker) ?? 0;
  }
}

const PLAN = new BucketPlan(3 * 256 + 100, 1024); // 4 buckets, the last one short
const head = (bucket: number, samples: number, round = 1): DataFrameHeader => ({
  type: DATA_FRAME_TYPES.GRADIENT,
  flags: 0,
  round,
  step: 0,
  bucket,
  samples,
  payloadBytes: 0,
});

function setup(codecName: (typeof COMPRESSIONS)[number] = 'none', range: readonly [number, number] = [1, 4]) {
  const codec = bucketCodec(codecName, 0.5);
  const link = new FakeLink();
  const events: ShardEvent[] = [];
  const shard = new ReducerShard('job', PLAN, codec, range, link, (e) => events.push(e));
  const grad = (seed: number) =>
    Float32Array.from({ length: PLAN.size }, (_, i) => Math.sin(seed * 7.1 + i * 0.37) * seed);
  const encode = (g: Float32Array, b: number) => {
    const v = PLAN.slice(g, b);
    const out = new Uint8Array(codec.gradientBytes(v.length));
    codec.encode(v, out);
    return out;
  };
  return { codec, link, events, shard, grad, encode };
}

describe('ReducerShard', () => {
  for (const name of COMPRESSIONS) {
    it(`sends each recipient exactly the bytes a plain GradientReducer produces (${name})`, () => {
      const { codec, link, events, shard, grad, encode } = setup(name);
      const contributors = { a: 3, b: 5, c: 1 };
      shard.begin({ round: 1, step: 0, contributors, recipients: ['a', 'b', 'c', 'r'], checksum: false });
      const gs = { a: grad(1), b: grad(2), c: grad(3) };
      const ref = new GradientReducer(PLAN, bucketCodec(name, 0.5));
      ref.begin();
      // Encoded once each: the payloads both reducers see are the same bytes.
      const enc = new Map<string, Uint8Array>();
      for (const w of Object.keys(contributors))
        for (let b = 1; b < 4; b++) enc.set(`${w}/${b}`, encode(gs[w as keyof typeof gs], b));
      for (const [w, n] of Object.entries(contributors))
        for (let b = 1; b < 4; b++) shard.gradient(w, head(b, n), enc.get(`${w}/${b}`)!);
      for (let b = 1; b < 4; b++) {
        const ws = Object.entries(contributors);
        ws.forEach(([w, n], i) => ref.add(b, enc.get(`${w}/${b}`)!, n, i === ws.length - 1 ? 9 : undefined));
        const values = ref.finishBucket(b, 9);
        const expected = new Uint8Array(codec.updateBytes(values));
        codec.encodeUpdate(values, expected);
        for (const r of ['a', 'b', 'c', 'r']) {
          const f = link.frames.get(r)![b - 1]!;
          expect(f.readUInt32LE(12)).toBe(b);
          expect(Buffer.from(f.subarray(32)).equals(Buffer.from(expected))).toBe(true);
        }
      }
      expect(events.filter((e) => e.t === 'started')).toHaveLength(3);
      const done = events.filter((e) => e.t === 'done');
      expect(done).toHaveLength(1);
      expect(done[0]).toMatchObject({ round: 1 });
      expect((done[0] as { bytesIn: number }).bytesIn).toBeGreaterThan(0);
      expect((done[0] as { bytesOut: number }).bytesOut).toBeGreaterThan(0);
    });
  }

  it('excuse before any bucket completes without the excused; after a bucket taints', () => {
    const { events, shard, grad, encode, link } = setup();
    shard.begin({ round: 1, step: 0, contributors: { a: 2, b: 3 }, recipients: ['a'], checksum: false });
    shard.excuse(1, 'b');
    for (let b = 1; b < 4; b++) shard.gradient('a', head(b, 2), encode(grad(1), b));
    expect(events.at(-1)?.t).toBe('done');
    expect(link.frames.get('a')).toHaveLength(3);
    // The total excludes b's 3 samples: the average of a alone is a's gradient (codec none: raw float32).
    const f = link.frames.get('a')![0]!;
    const got = new Float32Array(f.buffer.slice(f.byteOffset + 32, f.byteOffset + f.byteLength));
    const want = PLAN.slice(grad(1), 1);
    for (let i = 0; i < want.length; i += 37) expect(got[i]).toBeCloseTo(want[i]!, 5);

    const t = setup();
    t.shard.begin({ round: 1, step: 0, contributors: { a: 2, b: 3 }, recipients: ['a'], checksum: false });
    t.shard.gradient('b', head(1, 3), t.encode(t.grad(2), 1));
    t.shard.excuse(1, 'b');
    expect(t.events.at(-1)?.t).toBe('tainted');
    for (let b = 1; b < 4; b++) t.shard.gradient('a', head(b, 2), t.encode(t.grad(1), b));
    expect(t.link.frames.size).toBe(0);
  });

  it('lost: an incomplete contributor taints, a recipient-only worker does nothing', () => {
    const { events, shard } = setup();
    shard.begin({ round: 1, step: 0, contributors: { a: 2 }, recipients: ['a', 'r'], checksum: false });
    shard.lost('r');
    expect(events).toEqual([]);
    const c = setup();
    c.shard.begin({ round: 1, step: 0, contributors: { a: 2, b: 1 }, recipients: ['a'], checksum: false });
    for (let b = 1; b < 4; b++) c.shard.gradient('a', head(b, 2), c.encode(c.grad(1), b));
    c.shard.lost('a'); // a sent everything: its contributions are in, the round can still complete
    expect(c.events.map((e) => e.t)).toEqual(['started']);
    shard.lost('a');
    expect(events.map((e) => e.t)).toEqual(['tainted']);
  });

  it('holds buckets of the next round that outrun its begin, and adds them once it begins', () => {
    const { events, shard, grad, encode } = setup();
    shard.begin({ round: 1, step: 0, contributors: { a: 2 }, recipients: ['a'], checksum: false });
    for (let b = 1; b < 4; b++) shard.gradient('a', head(b, 2, 1), encode(grad(b), b));
    expect(events.filter((e) => e.t === 'done')).toHaveLength(1);
    // Round 2's buckets reach the shard before the controller's begin(2) does.
    for (let b = 1; b < 4; b++) shard.gradient('a', head(b, 2, 2), encode(grad(b), b));
    expect(events.filter((e) => e.t === 'done')).toHaveLength(1);
    shard.begin({ round: 2, step: 1, contributors: { a: 2 }, recipients: ['a'], checksum: false });
    expect(events.filter((e) => e.t === 'done').map((e) => (e as { round: number }).round)).toEqual([1, 2]);
  });

  it('ignores stale rounds, refuses rounds beyond the next, wrong samples, out-of-order buckets and NaN', () => {
    const { events, shard, grad, encode } = setup();
    shard.begin({ round: 5, step: 0, contributors: { a: 2 }, recipients: ['a'], checksum: false });
    shard.gradient('a', head(1, 2, 4), encode(grad(1), 1));
    expect(events).toEqual([]);
    expect(() => shard.gradient('a', head(1, 2, 7), encode(grad(1), 1))).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_STEP' }),
    );
    expect(() => shard.gradient('a', head(1, 3, 5), encode(grad(1), 1))).toThrow(
      expect.objectContaining({ code: 'MALFORMED_FRAME' }),
    );
    expect(() => shard.gradient('a', head(2, 2, 5), encode(grad(1), 2))).toThrow(
      expect.objectContaining({ code: 'MALFORMED_FRAME' }),
    );
    const bad = grad(1);
    bad[PLAN.start(1) + 3] = Number.NaN;
    expect(() => shard.gradient('a', head(1, 2, 5), encode(bad, 1))).toThrow(
      expect.objectContaining({ code: 'NON_FINITE_GRADIENT' }),
    );
    expect(events.at(-1)?.t).toBe('tainted');
  });

  it('abort answers aborted, or re-sends done when complete; empty range completes at begin', () => {
    const { events, shard } = setup();
    shard.begin({ round: 1, step: 0, contributors: { a: 2 }, recipients: ['a'], checksum: false });
    shard.abort(1);
    expect(events).toEqual([{ t: 'aborted', round: 1 }]);
    const e = setup('none', [4, 4]);
    e.shard.begin({ round: 2, step: 0, contributors: { a: 2 }, recipients: ['a'], checksum: false });
    expect(e.events).toEqual([{ t: 'done', round: 2, bytesIn: 0, bytesOut: 0 }]);
    e.shard.abort(2);
    expect(e.events.map((x) => x.t)).toEqual(['done', 'done']);
  });

  it('fails a slow reader with SLOW_READER and a recipient without a connection', () => {
    const { events, shard, grad, encode, link } = setup();
    link.backlog.set('slow', 1 << 30);
    link.absent.add('gone');
    shard.begin({ round: 1, step: 0, contributors: { a: 2 }, recipients: ['a', 'slow', 'gone'], checksum: false });
    shard.gradient('a', head(1, 2), encode(grad(1), 1));
    expect(events).toContainEqual(expect.objectContaining({ t: 'failed', worker: 'slow', code: 'SLOW_READER' }));
    expect(events).toContainEqual(expect.objectContaining({ t: 'failed', worker: 'gone' }));
    expect(link.frames.get('a')).toHaveLength(1);
  });

  // Regression: the limit was two buckets, not two rounds, so a worker reading normally (one
  // round of a many-bucket range still queued) was closed as a slow reader.
  it('lets a recipient hold a whole round of a many-bucket range queued, not more than two', () => {
    const plan = new BucketPlan(8 * 262_144, 1 << 20); // 8 buckets of 1 MiB
    const MiB = 1 << 20;
    for (const [queued, slow] of [
      [8 * MiB, false],
      [19 * MiB, true],
    ] as const) {
      const link = new FakeLink();
      const events: ShardEvent[] = [];
      const shard = new ReducerShard('job', plan, bucketCodec('none', 0.5), [0, 8], link, (e) => events.push(e));
      link.backlog.set('r', queued);
      shard.begin({ round: 1, step: 0, contributors: { a: 1 }, recipients: ['a', 'r'], checksum: false });
      shard.gradient('a', head(0, 1), new Uint8Array(MiB));
      const failed = events.some((e) => e.t === 'failed' && e.worker === 'r');
      expect(failed, `${queued} bytes queued`).toBe(slow);
    }
  });
});
