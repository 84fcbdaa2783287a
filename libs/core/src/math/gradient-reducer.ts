import { ProtocolError } from '../protocol/protocol-error.js';
import { addScaled, allFinite, scaleInPlace, writeScaled } from './gradient-math.js';

/**
 * Streaming reducer for one step (PyTorch DDP vocabulary): each arriving gradient is
 * checked and added, weighted by its sample count, into one accumulator as it arrives;
 * when the last one lands only its own addition and the final 1/total scale remain.
 * The accumulator is supplied by the caller so it can be the payload region of the
 * outgoing `update` frame: the mean is encoded once, in place, and sent to every worker.
 */
export class GradientReducer {
  readonly size: number;
  private acc: Float32Array | undefined;
  private totalSamples = 0;
  private contributions = 0;

  constructor(size: number) {
    this.size = size;
  }

  /** Starts a step, accumulating into `accumulator` (length `size`). */
  begin(accumulator: Float32Array): void {
    if (accumulator.length !== this.size) throw new RangeError(`accumulator of ${accumulator.length}, expected ${this.size}`);
    this.acc = accumulator;
    this.totalSamples = 0;
    this.contributions = 0;
  }

  /**
   * Validates a gradient (length, finiteness) before it can touch the accumulator,
   * then adds it with weight `samples`. Throws ProtocolError on a bad gradient.
   */
  add(gradient: Float32Array, samples: number): void {
    if (!this.acc) throw new Error('GradientReducer.add before begin');
    if (gradient.length !== this.size) {
      throw new ProtocolError('GRADIENT_SIZE_MISMATCH', `gradient has ${gradient.length} values, model has ${this.size}`);
    }
    if (!allFinite(gradient)) throw new ProtocolError('NON_FINITE_GRADIENT', 'gradient contains NaN or Infinity');
    if (samples <= 0) return;
    if (this.contributions === 0) writeScaled(this.acc, gradient, samples);
    else addScaled(this.acc, gradient, samples);
    this.totalSamples += samples;
    this.contributions++;
  }

  get samples(): number {
    return this.totalSamples;
  }

  get count(): number {
    return this.contributions;
  }

  /** Divides by the total sample count and returns the mean (the accumulator itself). */
  finish(): Float32Array {
    if (!this.acc || this.contributions === 0) throw new Error('GradientReducer.finish with no contribution');
    scaleInPlace(this.acc, 1 / this.totalSamples);
    const out = this.acc;
    this.acc = undefined;
    return out;
  }
}
