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
  private sending = 0;
  private nextUpdateBucket = 0;

  constructor(params: number, spec: JobSpec) {
    this.plan = new BucketPlan(params, spec.bucketBytes);
    this.codec = bucketCodec(spec.compression, spec.topkRatio);
    this.gradient = new Float32Array(params);
    this.update = new Float32Array(params);
    this.residual = this.codec.sparse ? new Float32Array(params) : undefined;
    this.writers = this.newWriters();
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
    let source = this.gradient;
    if (this.residual) {
      for (let i = 0; i < source.length; i++) this.residual[i]! += source[i]!;
      source = this.residual;
    }
    for (let b = 0; b < this.plan.count; b++) {
      const w = this.writers[b]!;
      this.codec.encode(this.plan.slice(source, b), w.payload);
      this.sending++;
      send(w.frame({ ...header, bucket: b }), () => this.sending--);
    }
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
