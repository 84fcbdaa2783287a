import { ProtocolError, type TensorSpec } from '@gradfleet/core';
import type { StateFiles } from './state-files.js';
import type { WorkerConnection } from './worker-connection.js';

/** Sums returned for a range of examples (or, for a weight fetch, the state received on disk). */
export interface RangeStats {
  lossSum: number;
  correct: number;
  count: number;
  /** Evaluation: the sums of the job's metrics (`metricSums`), added position by position. */
  metrics?: number[];
  state?: StateFiles;
  optimizerSpecs?: TensorSpec[];
}

interface Request {
  range: [number, number];
  worker: WorkerConnection | undefined;
}

let nextRequestId = 1;

/**
 * A request split into example ranges across workers (evaluation) or sent to one worker
 * (weight fetch). A lost worker's ranges go back to be re-issued to a live one, so a
 * result never silently lacks examples.
 */
export class Scatter {
  readonly totals: RangeStats = { lossSum: 0, correct: 0, count: 0 };
  private readonly requests = new Map<number, Request>();

  constructor(
    readonly what: string,
    private readonly start: number,
    private readonly end: number,
  ) {}

  /** Splits [start, end) into `parts` contiguous ranges (at least one example each). */
  split(parts: number): void {
    const n = this.end - this.start;
    const k = Math.max(1, Math.min(parts, n));
    for (let i = 0; i < k; i++) {
      const lo = this.start + Math.floor((i * n) / k);
      const hi = this.start + Math.floor(((i + 1) * n) / k);
      this.requests.set(nextRequestId++, { range: [lo, hi], worker: undefined });
    }
  }

  /** Set when receiving a result failed on this side (a disk error): the collection gives up with it. */
  error: Error | undefined;

  /** Throws ProtocolError unless `requestId` is outstanding for `worker` (checked before a transfer is accepted). */
  check(worker: WorkerConnection, requestId: number): void {
    if (this.requests.get(requestId)?.worker !== worker)
      throw new ProtocolError('UNKNOWN_STEP', `no ${this.what} request ${requestId} outstanding for this worker`);
  }

  get done(): boolean {
    return this.requests.size === 0;
  }

  /** Gives every unassigned range to a worker (least loaded first); returns what to send. */
  assign(workers: WorkerConnection[]): [WorkerConnection, number, [number, number]][] {
    const out: [WorkerConnection, number, [number, number]][] = [];
    if (workers.length === 0) return out;
    const load = new Map(workers.map((w) => [w, 0]));
    for (const r of this.requests.values()) if (r.worker) load.set(r.worker, (load.get(r.worker) ?? 0) + 1);
    for (const [id, r] of this.requests) {
      if (r.worker) continue;
      const w = [...load.entries()].sort((a, b) => a[1] - b[1])[0]![0];
      r.worker = w;
      load.set(w, load.get(w)! + 1);
      out.push([w, id, r.range]);
    }
    return out;
  }

  outstandingWorkers(): WorkerConnection[] {
    return [
      ...new Set(
        [...this.requests.values()].map((r) => r.worker).filter((w): w is WorkerConnection => w !== undefined),
      ),
    ];
  }

  /** Records a worker's answer; throws ProtocolError for an unknown request or a wrong count. */
  result(worker: WorkerConnection, requestId: number, stats: RangeStats): void {
    const r = this.requests.get(requestId);
    if (!r || r.worker !== worker)
      throw new ProtocolError('UNKNOWN_STEP', `no ${this.what} request ${requestId} outstanding for this worker`);
    if (!stats.state && stats.count !== r.range[1] - r.range[0]) {
      throw new ProtocolError(
        'MALFORMED_FRAME',
        `${this.what} result covers ${stats.count} examples, range has ${r.range[1] - r.range[0]}`,
      );
    }
    this.requests.delete(requestId);
    this.totals.lossSum += stats.lossSum;
    this.totals.correct += stats.correct;
    this.totals.count += stats.count;
    if (stats.metrics) {
      const t = (this.totals.metrics ??= []);
      stats.metrics.forEach((v, i) => (t[i] = (t[i] ?? 0) + v));
    }
    if (stats.state) this.totals.state = stats.state;
    if (stats.optimizerSpecs) this.totals.optimizerSpecs = stats.optimizerSpecs;
  }

  /** A worker left: its ranges are re-issued to others. */
  lost(worker: WorkerConnection): void {
    for (const r of this.requests.values()) if (r.worker === worker) r.worker = undefined;
  }
}
