import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BucketPlan } from '../math/bucket-plan.js';
import { assignBuckets, shardOf } from './shard-assignment.js';

describe('assignBuckets / shardOf', () => {
  it('cuts contiguous, covering, deterministic ranges balanced within one bucket of the float split', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200_000 }),
        fc.integer({ min: 1024, max: 64 * 1024 }),
        fc.integer({ min: 1, max: 16 }),
        (size, bucketBytes, shards) => {
          const plan = new BucketPlan(size, bucketBytes);
          const ranges = assignBuckets(plan, shards);
          expect(assignBuckets(plan, shards)).toEqual(ranges);
          expect(ranges).toHaveLength(shards);
          expect(ranges[0]?.[0]).toBe(0);
          expect(ranges[shards - 1]?.[1]).toBe(plan.count);
          for (let k = 0; k < shards; k++) {
            const [s, e] = ranges[k]!;
            expect(e).toBeGreaterThanOrEqual(s);
            if (k > 0) expect(s).toBe(ranges[k - 1]?.[1]);
            // Each boundary lies within one bucket of the ideal float boundary.
            const boundary = e < plan.count ? plan.start(e) : plan.size;
            expect(Math.abs(boundary - ((k + 1) * plan.size) / shards)).toBeLessThanOrEqual(plan.bucketFloats);
            for (let b = s; b < e; b++) expect(shardOf(ranges, b)).toBe(k);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('leaves empty ranges when there are fewer buckets than shards, each bucket owned once', () => {
    // Note: the empty ranges are interleaved ([0,1] [1,1] [1,2] [2,2] [2,3]), not trailing as the
    // doc comment of assignBuckets says; nothing depends on their position (job-shards.ts).
    const plan = new BucketPlan(3 * 256, 1024); // 3 buckets of 256 floats
    expect(plan.count).toBe(3);
    const ranges = assignBuckets(plan, 5);
    expect(ranges.map(([s, e]) => e - s).reduce((a, b) => a + b)).toBe(3);
    expect(ranges.filter(([s, e]) => e > s)).toHaveLength(3);
    expect(ranges.filter(([s, e]) => e === s)).toHaveLength(2);
    expect([0, 1, 2].map((b) => shardOf(ranges, b))).toEqual([0, 2, 4]);
    expect(() => shardOf(ranges, 3)).toThrow(RangeError);
  });

  it('throws on invalid shard counts', () => {
    const plan = new BucketPlan(1000, 1024);
    for (const n of [0, -1, 1.5, Number.NaN, Infinity]) expect(() => assignBuckets(plan, n)).toThrow(RangeError);
  });
});
