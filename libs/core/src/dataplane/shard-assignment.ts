import type { BucketPlan } from '../math/bucket-plan.js';

/** Buckets `[start, end)` of a job's plan that one reducer shard owns. */
export type BucketRange = readonly [start: number, end: number];

/**
 * Cuts a job's buckets into `shards` contiguous ranges of about equal size in floats,
 * deterministically (BytePS assigns key ranges the same way): shard k owns a range that
 * depends only on the plan and k, so every worker sends bucket b to the same shard and
 * every replica receives the same averaged bytes for it, whichever shard computed them.
 * With fewer buckets than shards, some shards own empty ranges (interleaved, keeping each
 * boundary within one bucket of the ideal split).
 */
export function assignBuckets(plan: BucketPlan, shards: number): BucketRange[] {
  if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`shards must be a positive integer, got ${shards}`);
  const ranges: BucketRange[] = [];
  let start = 0;
  for (let k = 0; k < shards; k++) {
    // The first float shard k+1 should start at, rounded to the nearest bucket boundary.
    const target = Math.round(((k + 1) * plan.size) / shards);
    let end = start;
    while (end < plan.count && plan.start(end) + plan.length(end) / 2 < target) end++;
    if (k === shards - 1) end = plan.count;
    ranges.push([start, end]);
    start = end;
  }
  return ranges;
}

/** The shard that owns bucket `b`. */
export function shardOf(ranges: readonly BucketRange[], b: number): number {
  const k = ranges.findIndex(([s, e]) => b >= s && b < e);
  if (k < 0) throw new RangeError(`bucket ${b} is owned by no shard`);
  return k;
}
