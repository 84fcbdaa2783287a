import type { BucketCodec } from '../compression/codec.js';
import { ProtocolError } from '../protocol/protocol-error.js';
import { Accumulator } from './accumulator.js';
import type { BucketPlan } from './bucket-plan.js';

/**
 * Streaming reducer for one step (PyTorch DDP vocabulary): each arriving bucket of a
 * worker's gradient is decoded straight into one preallocated accumulator (WebAssembly
 * SIMD), weighted by the worker's sample count, as it arrives. The last contribution to
 * a bucket folds the 1/total scale into its add, so when the last bucket lands only its
 * own addition remains.
 *
 * A bad bucket (wrong size) is refused before it touches anything; a non-finite one is
 * caught in the same pass that adds it, which spoils the accumulator: the caller then
 * abandons the step and retries its slices (never averages a partial contribution).
 */
export class GradientReducer {
  readonly acc: Accumulator;
  private readonly filled: Uint32Array;
  /** Buckets whose mean was folded into their last add. */
  private readonly scaled: Uint8Array;

  constructor(
    readonly plan: BucketPlan,
    readonly codec: BucketCodec,
  ) {
    this.acc = new Accumulator(plan.size);
    this.filled = new Uint32Array(plan.count);
    this.scaled = new Uint8Array(plan.count);
  }

  /** Starts a step. */
  begin(): void {
    this.filled.fill(0);
    this.scaled.fill(0);
    if (this.codec.sparse) this.acc.values.fill(0);
  }

  /**
   * Adds one encoded bucket of a worker's gradient with weight `samples`. `lastOfTotal`:
   * this is the bucket's last contribution and the step's samples add up to it, so the
   * 1/total scale rides in the same pass. Throws ProtocolError.
   */
  add(bucket: number, payload: Uint8Array, samples: number, lastOfTotal?: number): void {
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= this.plan.count) {
      throw new ProtocolError('GRADIENT_SIZE_MISMATCH', `bucket ${bucket} of a gradient cut into ${this.plan.count}`);
    }
    const first = this.filled[bucket] === 0;
    const scale = lastOfTotal === undefined || this.codec.sparse ? undefined : 1 / lastOfTotal;
    const ok = this.codec.accumulate(
      payload,
      this.plan.length(bucket),
      this.acc,
      this.plan.start(bucket),
      samples,
      first,
      scale,
    );
    this.filled[bucket]!++;
    if (scale !== undefined) this.scaled[bucket] = 1;
    if (!ok)
      throw new ProtocolError('NON_FINITE_GRADIENT', `bucket ${bucket} of the gradient contains NaN or Infinity`);
  }

  /** Scales bucket `b` by 1/`totalSamples` and returns it (a view of the accumulator). */
  finishBucket(b: number, totalSamples: number): Float32Array {
    if (this.filled[b] === 0 && !this.codec.sparse) throw new Error(`bucket ${b} has no contribution`);
    if (!this.scaled[b]) this.acc.scale(this.plan.start(b), this.plan.length(b), 1 / totalSamples);
    return this.plan.slice(this.acc.values, b);
  }
}
