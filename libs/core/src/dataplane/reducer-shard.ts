import type { BucketCodec } from '../compression/codec.js';
import { BucketPlan } from '../math/bucket-plan.js';
import { GradientReducer } from '../math/gradient-reducer.js';
import { ProtocolError, type ProtocolErrorCode } from '../protocol/protocol-error.js';
import { bucketDigest } from '../replica/update-stream-hash.js';
import {
  DATA_FLAG_CHECKSUM,
  DATA_FRAME_HEADER_BYTES,
  DATA_FRAME_TYPES,
  DataFrameWriter,
  type DataFrameHeader,
} from './data-frame.js';
import type { BucketRange } from './shard-assignment.js';

/** One attempt at a step, as the coordinator planned it. */
export interface ShardRoundPlan {
  /** Attempt number, unique per job: a retried step gets a new one. */
  round: number;
  /** Committed steps before this one (what the replicas have applied). */
  step: number;
  /** Worker id → examples in its slice; these must each send every bucket of the range. */
  contributors: Record<string, number>;
  /** Workers that receive the averaged buckets (every member of the job). */
  recipients: string[];
  /** Replicas report a checksum after applying this update. */
  checksum: boolean;
}

/** What a shard tells its controller (the coordinator's job runner). */
export type ShardEvent =
  /** A contributor's first bucket of the round arrived here: it can no longer be excused. */
  | { t: 'started'; round: number; worker: string }
  /** Every bucket of the range is averaged and handed to every recipient's connection. */
  | { t: 'done'; round: number; bytesIn: number; bytesOut: number; digests?: Uint8Array[] }
  /** The round can never complete here (a contributor was lost or excused part-way): it sends nothing more. */
  | { t: 'tainted'; round: number; reason: string }
  /** Answer to `abort`: the round is over here without being completed. */
  | { t: 'aborted'; round: number }
  /** A worker's data connection misbehaved or cannot take the update: the controller drops that worker. */
  | { t: 'failed'; worker: string; code: ProtocolErrorCode; reason: string };

/** How a shard reaches workers' data connections. */
export interface ShardLink {
  /** Queues `frame` to `worker`; `done` runs once written. False when the worker has no connection. */
  send(worker: string, frame: Buffer, done: () => void): boolean;
  /** Bytes queued and not yet written to `worker`'s connection. */
  queued(worker: string): number;
}

/**
 * Bytes a recipient may have queued beyond two rounds of this shard's updates (every bucket
 * of its range, headers included) before it counts as a slow reader: the synchronous protocol
 * never queues more for a live worker, which reads one round while the next is summed.
 */
const SLOW_READER_SLACK_BYTES = 1024 * 1024;

/**
 * One job's reducer shard (BytePS's summation server, PyTorch DDP's reducer for a bucket
 * range): it receives its range of buckets from every contributor of a round, adds each
 * into the SIMD accumulator as it arrives (sample-weighted, finiteness checked in the same
 * pass, the last add folding in 1/total), and sends each averaged bucket, encoded once, to
 * every recipient as soon as the bucket has all its contributions.
 *
 * Never partly applied: a replica applies an update only when it holds every bucket of
 * the round, from every shard. A shard that cannot complete a round (a contributor lost
 * or excused after it started) reports `tainted` and sends nothing more for it; the
 * controller then aborts the round on every shard and retries the step.
 */
export class ReducerShard {
  readonly range: BucketRange;
  private readonly plan: BucketPlan | undefined;
  private readonly reducer: GradientReducer | undefined;
  private readonly writers: DataFrameWriter[][];
  private current: ShardRoundPlan | undefined;
  private contributors = new Map<string, { samples: number; next: number }>();
  private excused = new Set<string>();
  private total = 0;
  private complete = 0;
  /** Contributions added per bucket of the range, this round. */
  private readonly filled: Uint32Array;
  /** Buckets of the range already averaged and sent, this round. */
  private readonly sent: Uint8Array;
  private state: 'idle' | 'running' | 'done' | 'tainted' | 'aborted' = 'idle';
  /** `roundUpdateBytes`, once computed. */
  private roundBytes: number | undefined;
  private bytesIn = 0;
  private bytesOut = 0;
  /** Buckets of the next round that arrived before its `begin` (copies). */
  private early: { worker: string; h: DataFrameHeader; payload: Uint8Array }[] = [];
  /** This round's update bucket digests, in range order (when hashing). */
  private digests: Uint8Array[] = [];

  constructor(
    readonly jobId: string,
    readonly global: BucketPlan,
    readonly codec: BucketCodec,
    range: BucketRange,
    private readonly link: ShardLink,
    private readonly emit: (ev: ShardEvent) => void,
    /** Hash each encoded update bucket (`bucketDigest`) for the replica check's reference chain. */
    private readonly hashUpdates = false,
  ) {
    this.range = range;
    const floats =
      range[1] > range[0] ? global.start(range[1] - 1) + global.length(range[1] - 1) - global.start(range[0]) : 0;
    if (floats > 0) {
      this.plan = new BucketPlan(floats, global.bucketFloats * 4);
      this.reducer = new GradientReducer(this.plan, codec);
    }
    this.filled = new Uint32Array(this.buckets);
    this.sent = new Uint8Array(this.buckets);
    this.writers = Array.from({ length: this.buckets }, () => []);
  }

  /** Buckets this shard owns. */
  get buckets(): number {
    return this.range[1] - this.range[0];
  }

  /** Most payload bytes a frame of header `h` may carry on this shard's connections. */
  maxPayload(h: DataFrameHeader): number {
    if (h.type !== DATA_FRAME_TYPES.GRADIENT) return 0;
    const local = h.bucket - this.range[0];
    if (local < 0 || local >= this.buckets)
      throw new ProtocolError('UNKNOWN_STEP', `bucket ${h.bucket} is not owned by this shard`);
    return this.codec.gradientBytes(this.plan!.length(local));
  }

  /** Starts a round. A round still running is abandoned silently (the controller moved on). */
  begin(p: ShardRoundPlan): void {
    this.current = p;
    this.contributors = new Map(Object.entries(p.contributors).map(([w, samples]) => [w, { samples, next: 0 }]));
    this.excused = new Set();
    this.total = Object.values(p.contributors).reduce((a, b) => a + b, 0);
    this.filled.fill(0);
    this.sent.fill(0);
    this.complete = 0;
    this.bytesIn = 0;
    this.bytesOut = 0;
    this.digests = [];
    this.state = 'running';
    this.reducer?.begin();
    this.maybeDone();
    const early = this.early.filter((e) => e.h.round === p.round);
    this.early = [];
    for (const e of early) {
      try {
        this.gradient(e.worker, e.h, e.payload);
      } catch (err) {
        const code = err instanceof ProtocolError ? err.code : 'MALFORMED_FRAME';
        this.emit({ t: 'failed', worker: e.worker, code, reason: (err as Error).message });
      }
    }
  }

  /**
   * One gradient bucket from `worker`'s data connection. Throws ProtocolError for a frame
   * that breaks the protocol (the caller closes that connection and reports `failed`).
   */
  gradient(worker: string, h: DataFrameHeader, payload: Uint8Array): void {
    const p = this.current;
    if (!p || h.round !== p.round) {
      if (p && h.round < p.round) return; // a late bucket of an abandoned round
      if (h.round === (p?.round ?? 0) + 1) return this.hold(worker, h, payload);
      throw new ProtocolError(
        'UNKNOWN_STEP',
        `gradient for round ${h.round}, round in flight is ${p?.round ?? 'none'}`,
      );
    }
    if (this.excused.has(worker) || this.state !== 'running') return; // excused straggler, or round over here
    const c = this.contributors.get(worker);
    if (!c) throw new ProtocolError('UNKNOWN_STEP', `worker ${worker} has no slice in round ${h.round}`);
    if (h.samples !== c.samples)
      throw new ProtocolError('MALFORMED_FRAME', `gradient over ${h.samples} samples, slice has ${c.samples}`);
    const local = h.bucket - this.range[0];
    if (local !== c.next)
      throw new ProtocolError('MALFORMED_FRAME', `gradient bucket ${h.bucket}, expected ${this.range[0] + c.next}`);
    if (c.next === 0) this.emit({ t: 'started', round: p.round, worker });
    const last = this.filled[local]! + 1 === this.contributors.size;
    try {
      this.reducer!.add(local, payload, c.samples, last ? this.total : undefined);
    } catch (err) {
      // The accumulator holds part of this worker's gradient now: the round cannot complete.
      this.taint(`bucket ${h.bucket} from ${worker} refused`);
      throw err;
    }
    c.next++;
    this.bytesIn += payload.byteLength;
    this.filled[local]!++;
    if (last) this.sendBucket(local);
  }

  /**
   * A bucket of the next round, arrived before the controller's `begin` for it (the worker's
   * data connection can outrun the controller's message to this shard): kept, a copy, until
   * `begin`, at most one round's worth of buckets per worker.
   */
  private hold(worker: string, h: DataFrameHeader, payload: Uint8Array): void {
    const mine = this.early.filter((e) => e.worker === worker);
    if (mine.some((e) => e.h.round !== h.round) || mine.length >= this.buckets)
      throw new ProtocolError('UNEXPECTED_MESSAGE', `more early buckets for round ${h.round} than the range holds`);
    this.early.push({ worker, h, payload: Uint8Array.from(payload) });
  }

  /**
   * The controller excused a straggler before it started: its slice went back to the pool.
   * If any of its buckets already arrived here, the round can no longer complete.
   */
  excuse(round: number, worker: string): void {
    if (this.current?.round !== round || this.state !== 'running') return;
    const c = this.contributors.get(worker);
    if (!c) return;
    if (c.next > 0) return this.taint(`${worker} was excused after it started sending`);
    this.contributors.delete(worker);
    this.excused.add(worker);
    this.total -= c.samples;
    this.sendCompleted();
  }

  /** A worker left the job (its control or data connection is gone). */
  lost(worker: string): void {
    if (this.state !== 'running') return;
    const c = this.contributors.get(worker);
    if (c && c.next < this.buckets) this.taint(`${worker} was lost before its gradient was complete`);
  }

  /** The controller gives up on `round`; answers `aborted`, or `done` if it completed first. */
  abort(round: number): void {
    if (this.current?.round !== round) return this.emit({ t: 'aborted', round });
    if (this.state === 'done') return this.emitDone();
    this.state = 'aborted';
    this.emit({ t: 'aborted', round });
  }

  private taint(reason: string): void {
    if (this.state !== 'running') return;
    this.state = 'tainted';
    this.emit({ t: 'tainted', round: this.current!.round, reason });
  }

  /** After an excuse, buckets may now hold every remaining contribution. */
  private sendCompleted(): void {
    for (let b = 0; b < this.buckets; b++) {
      if (this.state !== 'running') return;
      if (this.sent[b] === 0 && this.filled[b]! > 0 && this.filled[b] === this.contributors.size) this.sendBucket(b);
    }
    this.maybeDone();
  }

  private sendBucket(local: number): void {
    const p = this.current!;
    const values = this.reducer!.finishBucket(local, this.total);
    const bytes = this.codec.updateBytes(values);
    const writer = this.acquire(local, bytes);
    this.codec.encodeUpdate(values, writer.payload.subarray(0, bytes));
    if (this.hashUpdates) this.digests[local] = bucketDigest(writer.payload.subarray(0, bytes));
    const frame = writer.frame(
      {
        type: DATA_FRAME_TYPES.UPDATE,
        flags: p.checksum ? DATA_FLAG_CHECKSUM : 0,
        round: p.round,
        step: p.step,
        bucket: this.range[0] + local,
        samples: 0,
      },
      bytes,
    );
    let pendingSends = 1; // released once every recipient's socket wrote it
    const release = () => {
      if (--pendingSends === 0) this.writers[local]!.push(writer);
    };
    const limit = 2 * this.roundUpdateBytes() + SLOW_READER_SLACK_BYTES;
    for (const w of p.recipients) {
      if (this.link.queued(w) > limit) {
        this.emit({ t: 'failed', worker: w, code: 'SLOW_READER', reason: `${this.link.queued(w)} bytes still queued` });
        continue;
      }
      pendingSends++;
      if (this.link.send(w, frame, release)) this.bytesOut += frame.byteLength;
      else {
        pendingSends--;
        this.emit({ t: 'failed', worker: w, code: 'UNKNOWN_STEP', reason: 'no data connection for the update' });
      }
    }
    release();
    this.sent[local] = 1;
    this.complete++;
    this.maybeDone();
  }

  /** Largest update of bucket `local`: the dense size, or (index, value) pairs for every float with top-k. */
  private maxUpdateBytes(local: number): number {
    const n = this.plan!.length(this.range[0] + local);
    return this.codec.sparse ? n * 8 : this.codec.gradientBytes(n);
  }

  /** Most bytes one round of this shard's updates puts on a recipient's connection (frames with headers). */
  private roundUpdateBytes(): number {
    if (this.roundBytes === undefined) {
      this.roundBytes = 0;
      for (let b = 0; b < this.buckets; b++) this.roundBytes += DATA_FRAME_HEADER_BYTES + this.maxUpdateBytes(b);
    }
    return this.roundBytes;
  }

  /** A frame for bucket `local` with room for `bytes` (recycled when dense; top-k sizes vary). */
  private acquire(local: number, bytes: number): DataFrameWriter {
    const free = this.writers[local]!;
    while (free.length > 0) {
      const w = free.pop()!;
      if (w.payload.byteLength >= bytes) return w;
    }
    return new DataFrameWriter(bytes);
  }

  private maybeDone(): void {
    if (this.state === 'running' && this.complete === this.buckets) {
      this.state = 'done';
      this.emitDone();
    }
  }

  private emitDone(): void {
    this.emit({
      t: 'done',
      round: this.current!.round,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      ...(this.hashUpdates ? { digests: this.digests } : {}),
    });
  }
}
