import type { WorkerConnection } from './worker-connection.js';

/** Weight of the newest observation in a worker's moving average of compute time per example. */
const EMA_WEIGHT = 0.2;
/** Observations of a worker before its own speed is trusted (the first steps include warm-up). */
const WARMUP_STEPS = 3;
/**
 * Smallest share a worker gets, as a fraction of an equal share: a worker measured slow still
 * computes something every step, so its speed keeps being measured and it can win its share back.
 */
const MIN_SHARE_OF_EQUAL = 0.1;

/**
 * Splits each step's batch among the workers (`sliceBalance` in the job spec):
 * `equal` gives everyone the same share (reproducible: the same spec and seed give the same
 * slices run after run); `throughput` gives each worker a share proportional to its measured
 * examples per millisecond of compute (moving average of what it reports with each gradient),
 * so a mixed GPU/CPU fleet keeps its fast workers busy. Either way the step stays
 * exactly-once and sample-weighted: only the slice sizes change.
 */
export class SliceBalancer {
  private readonly speed = new Map<WorkerConnection, { perMs: number; seen: number }>();

  constructor(private readonly mode: 'equal' | 'throughput') {}

  /** One gradient arrived: `samples` computed in `computeMs`. */
  observe(m: WorkerConnection, samples: number, computeMs: number): void {
    if (samples === 0 || !(computeMs > 0)) return;
    const perMs = samples / computeMs;
    const s = this.speed.get(m);
    if (!s) this.speed.set(m, { perMs, seen: 1 });
    else {
      s.perMs = s.seen < WARMUP_STEPS ? perMs : s.perMs + EMA_WEIGHT * (perMs - s.perMs);
      s.seen++;
    }
  }

  forget(m: WorkerConnection): void {
    this.speed.delete(m);
  }

  /** Relative shares for `members` (for `splitBatch`). */
  weights(members: WorkerConnection[]): number[] {
    if (this.mode === 'equal') return members.map(() => 1);
    const known = members.map((m) => this.speed.get(m)).map((s) => (s && s.seen >= WARMUP_STEPS ? s.perMs : 0));
    const measured = known.filter((k) => k > 0);
    if (measured.length === 0) return members.map(() => 1);
    const mean = measured.reduce((a, b) => a + b, 0) / measured.length;
    const raw = known.map((k) => (k > 0 ? k : mean)); // newcomers get the mean until measured
    const total = raw.reduce((a, b) => a + b, 0);
    const floor = (MIN_SHARE_OF_EQUAL * total) / members.length;
    return raw.map((r) => Math.max(r, floor));
  }
}
