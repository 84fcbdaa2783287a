import { bucketDigest, UpdateStreamHash, chainDigest, type Logger, type ReplicaReport } from '@gradfleet/core';
import type { CoordinatorMetrics } from './metrics.js';

/** What one replica reported after a checked step. */
interface ChecksumReport {
  hash: string;
  sum: number;
  /** Its chain of the update bytes it applied in steps `from..step`, if it sent one. */
  stream: { from: number; hash: string } | undefined;
}

/** What to do about the replicas of one or more checked steps. */
export interface ReplicaVerdict {
  /** Replicas outvoted (or caught applying other bytes than were sent): reload them from a healthy one. */
  resync: string[];
  /** Set when no replica can be trusted over another: roll the job back to its last checkpoint. */
  rollback?: string;
}

/**
 * Replica consistency, decided by majority. After a checked step every replica reports a
 * bit-exact hash of its weights and a chain of the update bytes it applied since its last
 * report (`UpdateStreamHash`); the coordinator keeps the same chain of the bytes it sent.
 *
 * 1. A replica whose update chain differs from the coordinator's applied other bytes than
 *    were sent: it is faulty, whatever its weights.
 * 2. Among the others, the weights hash held by a strict majority wins; the rest are faulty.
 * 3. No strict majority (two replicas that applied the same bytes yet differ): neither can
 *    be trusted over the other, so the job rolls back to its last checkpoint
 *    (docs/fault-tolerance.md, "Replica checks").
 */
export class ReplicaChecks {
  private readonly stream = new UpdateStreamHash();
  /** Digest of each step's update bytes since the last decided step (the reference). */
  private readonly digests = new Map<number, Buffer>();
  /** Checked steps not yet decided: the workers asked for a checksum, and their reports. */
  private readonly pending = new Map<number, { asked: Set<string>; reports: Map<string, ChecksumReport> }>();

  constructor(
    private readonly report: ReplicaReport,
    private readonly metrics: CoordinatorMetrics,
    private readonly jobId: string,
    private readonly log: Logger,
    /** A divergence, for the job's events and log. */
    private readonly onDivergence: (message: string) => void,
    /** Update buckets per step. */
    private readonly buckets: number,
    /** False when the job checks nothing (`checksumEverySteps` 0): no update bytes are hashed. */
    private readonly enabled = true,
  ) {}

  /** One bucket of a step's encoded update, exactly as sent to every replica (buckets in order). */
  updateSent(step: number, bucket: number, bytes: Uint8Array): void {
    if (!this.enabled) return;
    this.updateDigestSent(step, bucket, bucketDigest(bytes));
  }

  /** Same, from the bucket's digest (the data plane: the reducer shards hash what they send). */
  updateDigestSent(step: number, bucket: number, digest: Uint8Array): void {
    if (!this.enabled) return;
    this.stream.addDigest(step, bucket, digest);
    if (bucket === this.buckets - 1) this.digests.set(step, this.stream.endStep());
  }

  /** Whether update bytes are hashed at all (the job checks replicas). */
  get hashing(): boolean {
    return this.enabled;
  }

  /** The update of `step` asked `workers` for a checksum. */
  expect(step: number, workers: string[]): void {
    this.pending.set(step, { asked: new Set(workers), reports: new Map() });
  }

  /** The update of `step` was never applied (a data-plane round abandoned): nobody owes its checksum. */
  cancel(step: number): void {
    this.pending.delete(step);
  }

  /** A replica's checksum; reports for steps not asked (or already decided) are ignored. */
  record(
    worker: string,
    step: number,
    hash: string,
    sum: number,
    stream?: { from: number; hash: string } | undefined,
  ): void {
    const p = this.pending.get(step);
    if (!p?.asked.has(worker)) {
      this.log.warn({ worker, step }, 'checksum for a step that was not checked (or already decided); ignored');
      return;
    }
    p.reports.set(worker, { hash, sum, stream });
  }

  /** Members that still owe a checksum for an undecided step. */
  waitingFor(members: string[]): string[] {
    const owed = new Set<string>();
    for (const { asked, reports } of this.pending.values())
      for (const w of members) if (asked.has(w) && !reports.has(w)) owed.add(w);
    return [...owed];
  }

  /** Decides every pending step with the reports of the workers still in `members`. */
  decide(members: string[]): ReplicaVerdict {
    const live = new Set(members);
    const verdict: ReplicaVerdict = { resync: [] };
    for (const step of [...this.pending.keys()].sort((a, b) => a - b)) {
      const reports = [...this.pending.get(step)!.reports].filter(([w]) => live.has(w));
      this.pending.delete(step);
      const one = this.decideStep(step, reports);
      for (const w of one.resync) if (!verdict.resync.includes(w)) verdict.resync.push(w);
      if (one.rollback !== undefined) verdict.rollback ??= one.rollback;
      for (const s of this.digests.keys()) if (s <= step) this.digests.delete(s);
    }
    return verdict;
  }

  private decideStep(step: number, reports: [string, ChecksumReport][]): ReplicaVerdict {
    if (reports.length === 0) return { resync: [] };
    this.report.checks++;
    this.report.lastStep = step;
    this.metrics.replicaChecks.inc({ job_id: this.jobId });
    const badStream = reports.filter(([, r]) => {
      if (!r.stream) return false;
      const ref = this.reference(r.stream.from, step);
      return ref !== undefined && ref !== r.stream.hash;
    });
    const rest = reports.filter((r) => !badStream.includes(r));
    const groups = new Map<string, string[]>();
    for (const [w, r] of rest) groups.set(r.hash, [...(groups.get(r.hash) ?? []), w]);
    const ranked = [...groups].sort((a, b) => b[1].length - a[1].length);
    const top = ranked[0];
    const describe = reports.map(([w, r]) => `${w} ${r.hash} (sum ${r.sum})`).join(', ');
    if (top && top[1].length * 2 > rest.length) {
      this.report.lastHash = top[0];
      const faulty = reports.map(([w]) => w).filter((w) => !top[1].includes(w));
      if (faulty.length === 0) return { resync: [] };
      const streamNote =
        badStream.length > 0
          ? `; ${badStream.map(([w]) => w).join(', ')} applied other update bytes than were sent`
          : '';
      this.diverged(
        step,
        faulty.length,
        `REPLICA DIVERGENCE after step ${step}: ${describe}${streamNote}; the majority ${top[1].join(', ')} wins, resynchronising ${faulty.join(', ')} from it`,
        reports,
      );
      return { resync: faulty };
    }
    const why =
      rest.length === 0
        ? 'every replica applied other update bytes than were sent'
        : 'no majority among replicas that applied the same update bytes';
    const message = `REPLICA DIVERGENCE after step ${step}: ${describe}; ${why}: no replica can be trusted over another, rolling back to the last checkpoint`;
    this.diverged(step, 1, message, reports);
    return { resync: [], rollback: message };
  }

  private diverged(step: number, count: number, message: string, reports: [string, ChecksumReport][]): void {
    this.report.divergences += count;
    this.metrics.replicaDivergences.inc({ job_id: this.jobId }, count);
    this.log.error({ step, reports: Object.fromEntries(reports) }, message);
    this.onDivergence(message);
  }

  /** The coordinator's chain of the update bytes of steps `from..to`; undefined when a step's digest is gone. */
  private reference(from: number, to: number): string | undefined {
    let chain: Buffer = Buffer.alloc(0);
    for (let s = from; s <= to; s++) {
      const d = this.digests.get(s);
      if (!d) return undefined;
      chain = chainDigest(chain, d);
    }
    return chain.toString('hex');
  }
}
