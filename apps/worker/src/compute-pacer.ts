/**
 * Sizes the chunks a long computation is cut into so that none runs longer than a time
 * budget: tfjs kernels run synchronously on the worker's only thread, so heartbeats (and
 * everything else on the socket) wait until a chunk ends. Between chunks the replica yields
 * to the event loop (`yieldToEventLoop`).
 *
 * The cost per example is measured (a small probe at job start, then every chunk) as an
 * exponentially weighted mean; a slice whose estimate fits the budget is computed in one
 * chunk, exactly as without pacing.
 *
 * Chunk sizes are powers of two: a slice cut into chunks gives the same gradient up to float
 * rounding, not bit for bit, so the cut must not follow every jitter of a busy machine (a
 * seeded run is reproducible while its slices stay whole; the budget is far above an
 * ordinary step, see `CHUNK_BUDGET_OF_TIMEOUT`); the estimate has to move by a factor of two
 * to change it.
 */
export class ComputePacer {
  /** Weight of the newest measurement in the running mean (0..1): adapts within a few steps, damps jitter. */
  private static readonly SMOOTHING = 0.3;
  private msPerExample: number | undefined;

  constructor(
    /** Longest a chunk may take, in ms. */
    public budgetMs: number,
  ) {}

  /** Examples per chunk: all of `n` while the estimate is unknown or fits the budget, else a power of two. */
  chunk(n: number): number {
    if (this.msPerExample === undefined || this.msPerExample <= 0) return n;
    const fit = Math.floor(this.budgetMs / this.msPerExample);
    if (fit >= n) return n;
    return fit < 1 ? 1 : 2 ** Math.floor(Math.log2(fit));
  }

  /** `examples` took `ms` to compute. */
  observe(examples: number, ms: number): void {
    if (examples <= 0) return;
    const x = ms / examples;
    this.msPerExample =
      this.msPerExample === undefined
        ? x
        : ComputePacer.SMOOTHING * x + (1 - ComputePacer.SMOOTHING) * this.msPerExample;
  }
}

/** Lets timers and socket I/O run (heartbeats in and out) before the next chunk. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
