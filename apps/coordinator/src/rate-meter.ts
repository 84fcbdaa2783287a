/** Window of the live rates shown by `gradfleet status`, in ms. */
export const RATE_WINDOW_MS = 10_000;

/**
 * Events per second over a sliding window (one-second buckets): the live samples/s of a
 * worker or a job, without Prometheus.
 */
export class RateMeter {
  private readonly buckets = new Float64Array(RATE_WINDOW_MS / 1000);
  private readonly stamps = new Float64Array(RATE_WINDOW_MS / 1000);

  constructor(private readonly born = Date.now()) {}

  add(n: number, now = Date.now()): void {
    const second = Math.floor(now / 1000);
    const i = second % this.buckets.length;
    if (this.stamps[i] !== second) {
      this.stamps[i] = second;
      this.buckets[i] = 0;
    }
    this.buckets[i]! += n;
  }

  /** Mean rate over the window (or over the meter's life when younger). */
  rate(now = Date.now()): number {
    const second = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < this.buckets.length; i++)
      if (second - this.stamps[i]! < this.buckets.length) sum += this.buckets[i]!;
    const spanMs = Math.min(RATE_WINDOW_MS, Math.max(1000, now - this.born));
    return sum / (spanMs / 1000);
  }
}
