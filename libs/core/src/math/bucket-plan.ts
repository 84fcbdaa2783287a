/**
 * Default bucket size, in bytes. Measured here (docs/benchmarks.md, design notes): `ws`
 * moves ~4 MB messages at near raw-TCP speed over loopback while 100 MB ones run at half
 * of it (fresh allocations), and one 4 MB bucket is added in well under a millisecond,
 * so the event loop is never held long and the next bucket's transfer overlaps the add.
 */
export const DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024;

/** Bucket lengths are whole multiples of this many floats (int8 blocks never straddle buckets). */
export const BUCKET_GRANULE_FLOATS = 256;

/** How a flat gradient of `size` floats is cut into buckets that travel as separate frames. */
export class BucketPlan {
  readonly bucketFloats: number;
  readonly count: number;

  constructor(
    readonly size: number,
    bucketBytes = DEFAULT_BUCKET_BYTES,
  ) {
    const granules = Math.max(1, Math.floor(bucketBytes / 4 / BUCKET_GRANULE_FLOATS));
    this.bucketFloats = granules * BUCKET_GRANULE_FLOATS;
    this.count = Math.max(1, Math.ceil(size / this.bucketFloats));
  }

  /** First float of bucket `b`. */
  start(b: number): number {
    return b * this.bucketFloats;
  }

  /** Floats in bucket `b` (the last one may be shorter). */
  length(b: number): number {
    return Math.max(0, Math.min(this.bucketFloats, this.size - b * this.bucketFloats));
  }

  /** Bucket `b` of a flat vector, as a view. */
  slice<T extends Float32Array>(v: T, b: number): Float32Array {
    return v.subarray(this.start(b), this.start(b) + this.length(b));
  }
}
