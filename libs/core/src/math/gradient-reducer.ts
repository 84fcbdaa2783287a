import type { BucketCodec } from '../compression/codec.js';
import { ProtocolError } from '../protocol/protocol-error.js';
import { Accumulator } from './accumulator.js';
import type { BucketPlan } from './bucket-plan.js';

/**
 * Streaming reducer for one step (PyTorch DDP vocabulary): each arriving bucket of a
 * worker's gradient is decoded straight into one preallocated accumulator (WebAssembly
 * SIMD), weighted by the worker's sample count, as it arrives. The last contribution to
 * a bucket folds the 1/total scale into its add, so when the last bucket lands only its
 * own addition remains: the caller names the step's total samples in `begin(expected)`
 * (or each last add in `add(..., lastOfTotal)`), and the reducer folds the scale into the
 * add that brings a bucket's samples up to that total. Folding changes no bit: the kernels
 * round `(acc + g * w) * s` after every operation exactly as the add followed by a
 * separate scale pass does (a single contributor's `(g * w) * s` included). When fewer
 * samples arrive than expected (a straggler excused), `finishBucket` scales as before.
 *
 * A bad bucket (wrong size) is refused before it touches anything; a non-finite one is
 * caught in the same pass that adds it, which spoils the accumulator: the caller then
 * abandons the step and retries its slices (never averages a partial contribution).
 */
export class GradientReducer {
  readonly acc: Accumulator;
  private readonly filled: Uint32Array;
  /** Per bucket: the total whose mean was folded into its last add (0: not folded). */
  private readonly scaled: Float64Array;
  /** Per bucket: samples added so far this step. */
  private readonly samples: Float64Array;
  private expected: number | undefined;

  /**
   * `receiveBytes`: size of a receive region in the accumulator's wasm memory
   * (`acc.receive()`); buckets whose payload lies there are added without a staging copy.
   */
  constructor(
    readonly plan: BucketPlan,
    readonly codec: BucketCodec,
    options: { receiveBytes?: number } = {},
  ) {
    this.acc = new Accumulator(plan.size, options.receiveBytes);
    this.filled = new Uint32Array(plan.count);
    this.scaled = new Float64Array(plan.count);
    this.samples = new Float64Array(plan.count);
  }

  /**
   * Starts a step. `expectedSamples`: the samples the step's slices add up to, when known
   * (the mean is then folded into each bucket's last add).
   */
  begin(expectedSamples?: number): void {
    if (expectedSamples !== undefined && !(Number.isFinite(expectedSamples) && expectedSamples > 0))
      throw new RangeError(`expected samples must be positive, got ${expectedSamples}`);
    this.expected = expectedSamples;
    this.filled.fill(0);
    this.scaled.fill(0);
    this.samples.fill(0);
    if (this.codec.sparse) this.acc.values.fill(0);
  }

  /**
   * Adds one encoded bucket of a worker's gradient with weight `samples`. `lastOfTotal`:
   * this is the bucket's last contribution and the step's samples add up to it, so the
   * 1/total scale rides in the same pass (as it does, without the argument, for the add
   * that completes `begin`'s expected total). Throws ProtocolError.
   */
  add(bucket: number, payload: Uint8Array, samples: number, lastOfTotal?: number): void {
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= this.plan.count) {
      throw new ProtocolError('GRADIENT_SIZE_MISMATCH', `bucket ${bucket} of a gradient cut into ${this.plan.count}`);
    }
    if (this.scaled[bucket] !== 0)
      throw new ProtocolError('DUPLICATE_MESSAGE', `bucket ${bucket} already has every expected contribution`);
    const first = this.filled[bucket] === 0;
    const reached = this.samples[bucket]! + samples;
    const total = lastOfTotal ?? (reached === this.expected ? this.expected : undefined);
    const scale = total === undefined || this.codec.sparse ? undefined : 1 / total;
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
    this.samples[bucket] = reached;
    if (scale !== undefined) this.scaled[bucket] = total!;
    if (!ok)
      throw new ProtocolError('NON_FINITE_GRADIENT', `bucket ${bucket} of the gradient contains NaN or Infinity`);
  }

  /** Scales bucket `b` by 1/`totalSamples` and returns it (a view of the accumulator). */
  finishBucket(b: number, totalSamples: number): Float32Array {
    if (this.filled[b] === 0 && !this.codec.sparse) throw new Error(`bucket ${b} has no contribution`);
    const folded = this.scaled[b]!;
    if (folded === 0) this.acc.scale(this.plan.start(b), this.plan.length(b), 1 / totalSamples);
    else if (folded !== totalSamples)
      throw new Error(`bucket ${b} was averaged over ${folded} samples, not the ${totalSamples} it is finished with`);
    return this.plan.slice(this.acc.values, b);
  }
}
