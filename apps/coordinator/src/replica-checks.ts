import type { Logger, ReplicaReport } from '@gradfleet/core';
import type { CoordinatorMetrics } from './metrics.js';

/**
 * Replica consistency: after the same step every replica's weights hash must be equal.
 * A mismatch is reported loudly (error log, metric, job event) with both sums.
 */
export class ReplicaChecks {
  private readonly seen = new Map<number, { hash: string; sum: number; worker: string }>();

  constructor(
    private readonly report: ReplicaReport,
    private readonly metrics: CoordinatorMetrics,
    private readonly jobId: string,
    private readonly log: Logger,
    private readonly onDivergence: (message: string, worker: string) => void,
  ) {}

  record(worker: string, step: number, hash: string, sum: number): void {
    const first = this.seen.get(step);
    if (!first) {
      this.seen.set(step, { hash, sum, worker });
      this.report.checks++;
      this.report.lastStep = step;
      this.report.lastHash = hash;
      this.metrics.replicaChecks.inc({ job_id: this.jobId });
      for (const old of this.seen.keys()) if (old < step - 1000) this.seen.delete(old);
      return;
    }
    if (first.hash === hash) return;
    this.report.divergences++;
    this.metrics.replicaDivergences.inc({ job_id: this.jobId });
    const msg = `REPLICA DIVERGENCE after step ${step}: ${worker} hash ${hash} (sum ${sum}) vs ${first.worker} hash ${first.hash} (sum ${first.sum})`;
    this.log.error({ step, worker, hash, sum, reference: first }, msg);
    this.onDivergence(msg, worker);
  }
}
