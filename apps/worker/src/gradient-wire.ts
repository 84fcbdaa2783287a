import { DATA_FRAME_TYPES, DataFrameWriter } from '@gradfleet/core/dataplane';
import {
  BucketPlan,
  FrameWriter,
  ProtocolError,
  bucketCodec,
  type BucketCodec,
  type JobSpec,
  type WorkerMessageInput,
} from '@gradfleet/core';

type GradientHeader = Omit<Extract<WorkerMessageInput, { t: 'gradient' }>, 'bucket'>;

/**
 * A worker's side of the bucketed gradient exchange for one job: encodes the gradient
 * bucket by bucket into reusable frames (top-k keeps its error-feedback residual here),
 * and assembles the averaged update from its buckets.
 */
export class GradientWire {
  readonly plan: BucketPlan;
  readonly codec: BucketCodec;
  /** The replica writes each step's gradient here. */
  readonly gradient: Float32Array;
  /** What top-k has not sent yet, added to the next gradient (error feedback). */
  private readonly residual: Float32Array | undefined;
  private readonly update: Float32Array;
  private writers: FrameWriter[];
  private dataWriters: DataFrameWriter[] | undefined;
  private sending = 0;
  private nextUpdateBucket = 0;
  /** Data plane: the round whose update buckets are arriving, and which are in. */
  private updateRound = -1;
  private readonly got: Uint8Array;
  private gotCount = 0;

  constructor(params: number, spec: JobSpec) {
    this.plan = new BucketPlan(params, spec.bucketBytes);
    this.codec = bucketCodec(spec.compression, spec.topkRatio);
    this.gradient = new Float32Array(params);
    this.update = new Float32Array(params);
    this.residual = this.codec.sparse ? new Float32Array(params) : undefined;
    this.writers = this.newWriters();
    this.got = new Uint8Array(this.plan.count);
  }

  private newWriters(): FrameWriter[] {
    return Array.from(
      { length: this.plan.count },
      (_, b) => new FrameWriter(this.codec.gradientBytes(this.plan.length(b))),
    );
  }

  /**
   * Encodes `gradient` and hands each bucket's frame to `send`, in order; `send` calls
   * its callback once the frame is written out (frames are reused only after that).
   */
  send(header: GradientHeader, send: (frame: Buffer, done: () => void) => void): void {
    if (this.sending > 0) this.writers = this.newWriters(); // previous frames still queued: never overwrite them
    const source = this.source();
    for (let b = 0; b < this.plan.count; b++) {
      const w = this.writers[b]!;
      this.codec.encode(this.plan.slice(source, b), w.payload);
      this.sending++;
      send(w.frame({ ...header, bucket: b }), () => this.sending--);
    }
  }

  /**
   * Data plane: encodes the gradient into reusable data frames, one per bucket, and hands
   * each to `send` with its bucket index (the caller routes it to the shard that owns it).
   */
  sendData(
    round: number,
    step: number,
    samples: number,
    send: (bucket: number, frame: Buffer, done: () => void) => void,
  ): void {
    if (!this.dataWriters || this.sending > 0) this.dataWriters = this.newDataWriters();
    const source = this.source();
    for (let b = 0; b < this.plan.count; b++) {
      const w = this.dataWriters[b]!;
      this.codec.encode(this.plan.slice(source, b), w.payload);
      this.sending++;
      send(
        b,
        w.frame({ type: DATA_FRAME_TYPES.GRADIENT, flags: 0, round, step, bucket: b, samples }),
        () => this.sending--,
      );
    }
  }

  /**
   * Data plane: takes one update bucket of `round` (buckets come from several shards, in
   * any order); returns the whole averaged gradient once every bucket of the round is in.
   * Buckets of an earlier round that was abandoned are dropped when a new round starts.
   */
  receiveData(round: number, bucket: number, payload: Uint8Array): Float32Array | undefined {
    if (round !== this.updateRound) {
      this.updateRound = round;
      this.got.fill(0);
      this.gotCount = 0;
    }
    if (bucket >= this.plan.count || this.got[bucket])
      throw new ProtocolError('MALFORMED_FRAME', `update bucket ${bucket} of round ${round} twice or out of range`);
    this.codec.decode(payload, this.plan.slice(this.update, bucket));
    this.got[bucket] = 1;
    if (++this.gotCount < this.plan.count) return undefined;
    this.updateRound = -1;
    return this.update;
  }

  /** Most bytes an update bucket `b` may take: the dense size, or (index, value) pairs with top-k. */
  maxUpdateBytes(b: number): number {
    const n = this.plan.length(b);
    return this.codec.sparse ? n * 8 : this.codec.gradientBytes(n);
  }

  /** What to encode this step: the gradient, plus what top-k left unsent before (error feedback). */
  private source(): Float32Array {
    if (!this.residual) return this.gradient;
    for (let i = 0; i < this.gradient.length; i++) this.residual[i]! += this.gradient[i]!;
    return this.residual;
  }

  private newDataWriters(): DataFrameWriter[] {
    return Array.from(
      { length: this.plan.count },
      (_, b) => new DataFrameWriter(this.codec.gradientBytes(this.plan.length(b))),
    );
  }

  /** Takes one update bucket; returns the whole averaged gradient once the last is in. */
  receive(bucket: number, payload: Uint8Array): Float32Array | undefined {
    if (bucket !== this.nextUpdateBucket)
      throw new ProtocolError('MALFORMED_FRAME', `update bucket ${bucket}, expected ${this.nextUpdateBucket}`);
    this.codec.decode(payload, this.plan.slice(this.update, bucket));
    if (++this.nextUpdateBucket < this.plan.count) return undefined;
    this.nextUpdateBucket = 0;
    return this.update;
  }
}
