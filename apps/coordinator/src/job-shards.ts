import { BucketPlan, type JobSpec, type ProtocolErrorCode } from '@gradfleet/core';
import { assignBuckets, type BucketRange, type ShardEvent, type ShardRoundPlan } from '@gradfleet/core/dataplane';
import type { ShardPool } from './shard-pool.js';

/** What a job runner hears from its shards. */
export interface JobShardHandlers {
  /** A contributor's first bucket reached a shard: it can no longer be excused. */
  started(worker: string): void;
  /** A worker's data connection failed (or cannot take updates): drop the worker. */
  failed(worker: string, code: ProtocolErrorCode, reason: string): void;
  /** A shard reported progress on the round (done, tainted, aborted) or an error. */
  changed(): void;
}

/** How a round ended on the shards. */
export type RoundOutcome = 'commit' | 'abandon';

/**
 * One job's view of the reducer shards: the deterministic bucket ranges, and the state of
 * the round in flight. The round commits when every shard with buckets reports `done`
 * (then every replica has received every averaged bucket); it is abandoned when a shard
 * reports `tainted` or the runner gives up, and only once every shard has answered the
 * abort (a shard that completed first answers `done`: if all did, the round commits after
 * all, since the replicas got the whole update).
 */
export class JobShards {
  readonly ranges: BucketRange[];
  /** Shards that own at least one bucket. */
  private readonly active: number[];
  private round:
    | {
        id: number;
        done: Set<number>;
        over: Set<number>;
        tainted?: string;
        aborting: boolean;
        /** Update bucket digests the shards reported, by global bucket. */
        digests: Uint8Array[];
      }
    | undefined;
  private failure: string | undefined;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    private readonly pool: ShardPool,
    private readonly jobId: string,
    spec: JobSpec,
    params: number,
    private readonly handlers: JobShardHandlers,
  ) {
    const plan = new BucketPlan(params, spec.bucketBytes);
    this.ranges = assignBuckets(plan, pool.size);
    this.active = this.ranges.flatMap(([s, e], k) => (e > s ? [k] : []));
    pool.attach(jobId, (k, ev) => this.onEvent(k, ev));
    for (const k of this.active)
      pool.post(k, {
        t: 'job',
        jobId,
        params,
        bucketBytes: spec.bucketBytes,
        compression: spec.compression,
        topkRatio: spec.topkRatio,
        range: this.ranges[k]!,
        hashUpdates: spec.checksumEverySteps > 0,
      });
  }

  /** Where workers send which buckets (the `dataPlane` field of `job-start`). */
  get endpoints(): { port: number; start: number; end: number }[] {
    return this.active.map((k) => ({ port: this.pool.ports[k]!, start: this.ranges[k]![0], end: this.ranges[k]![1] }));
  }

  /** A shard thread failed: the job cannot continue on this data plane. */
  get error(): string | undefined {
    return this.failure;
  }

  allow(workers: string[]): void {
    for (const k of this.active) this.pool.post(k, { t: 'allow', jobId: this.jobId, workers });
  }

  begin(plan: ShardRoundPlan): void {
    this.round = { id: plan.round, done: new Set(), over: new Set(), aborting: false, digests: [] };
    for (const k of this.active) this.pool.post(k, { t: 'begin', jobId: this.jobId, plan });
  }

  excuse(worker: string): void {
    if (!this.round) return;
    for (const k of this.active) this.pool.post(k, { t: 'excuse', jobId: this.jobId, round: this.round.id, worker });
  }

  drop(worker: string): void {
    for (const k of this.active) this.pool.post(k, { t: 'drop', jobId: this.jobId, worker });
  }

  /** Asks every shard to give up the round; `outcome` settles once all have answered. */
  abort(): void {
    const r = this.round;
    if (!r || r.aborting) return;
    r.aborting = true;
    for (const k of this.active) this.pool.post(k, { t: 'abort', jobId: this.jobId, round: r.id });
  }

  get outcome(): RoundOutcome | undefined {
    const r = this.round;
    if (!r) return undefined;
    if (r.done.size === this.active.length) return 'commit';
    if (r.aborting && r.over.size === this.active.length) return 'abandon';
    return undefined;
  }

  /** The committed round's update bucket digests, by bucket (when the job checks replicas). */
  get digests(): readonly Uint8Array[] {
    return this.round?.digests ?? [];
  }

  /** Why the round cannot complete, when a shard said so. */
  get tainted(): string | undefined {
    return this.round?.tainted;
  }

  end(): void {
    this.pool.detach(this.jobId);
  }

  private onEvent(k: number, ev: ShardEvent | { t: 'error'; message: string }): void {
    const r = this.round;
    switch (ev.t) {
      case 'started':
        if (r?.id === ev.round) this.handlers.started(ev.worker);
        return;
      case 'failed':
        this.handlers.failed(ev.worker, ev.code, ev.reason);
        return;
      case 'error':
        this.failure = ev.message;
        break;
      case 'done':
        if (r?.id !== ev.round || r.done.has(k)) return;
        r.done.add(k);
        r.over.add(k);
        ev.digests?.forEach((d, i) => (r.digests[this.ranges[k]![0] + i] = d));
        this.bytesIn += ev.bytesIn;
        this.bytesOut += ev.bytesOut;
        break;
      case 'tainted':
        if (r?.id !== ev.round) return;
        r.tainted ??= ev.reason;
        break;
      case 'aborted':
        if (r?.id !== ev.round) return;
        r.over.add(k);
        break;
    }
    this.handlers.changed();
  }
}
