/**
 * Top-k sparsification: only the k entries of largest magnitude travel, as
 * [uint32 index x k][float32 value x k]. With error feedback (Stich et al., 2018) the
 * sender keeps what it did not send as a residual and adds it to the next gradient, so
 * every coordinate is delivered eventually: the cumulative update converges to the
 * cumulative uncompressed sum. `selectTopK` zeroes the entries it takes, leaving the
 * residual in place.
 */

/** Entries a bucket of `n` values keeps at `ratio` (at least one). */
export function topkCount(n: number, ratio: number): number {
  return Math.max(1, Math.min(n, Math.ceil(n * ratio)));
}

export function sparseBytes(k: number): number {
  return k * 8;
}

let scratch = new Float32Array(0);

/** The k-th largest of `a[0, n)` (quickselect, in place). */
function kthLargest(a: Float32Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  const target = k - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! > pivot) i++;
      while (a[j]! < pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i++] = a[j]!;
        a[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target]!;
  }
  return a[target]!;
}

/**
 * Writes the k entries of `values` with the largest magnitude (NaN counts as largest, so
 * a bad gradient still reaches the coordinator's check) into `out` in index order, and
 * zeroes them in `values`. Returns the bytes written.
 */
export function selectTopK(values: Float32Array, k: number, out: Uint8Array): number {
  const n = values.length;
  if (scratch.length < n) scratch = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = Math.abs(values[i]!);
    scratch[i] = a === a ? a : Infinity;
  }
  const threshold = kthLargest(scratch, n, k);
  const idx = new Uint32Array(out.buffer, out.byteOffset, k);
  const val = new Float32Array(out.buffer, out.byteOffset + k * 4, k);
  let taken = 0;
  // Strictly larger first, then ties at the threshold until k are taken.
  for (let i = 0; i < n && taken < k; i++) {
    const v = values[i]!;
    const a = v === v ? Math.abs(v) : Infinity;
    if (a > threshold) idx[taken++] = i;
  }
  for (let i = 0; i < n && taken < k; i++) {
    const v = values[i]!;
    if (Math.abs(v) === threshold) idx[taken++] = i;
  }
  idx.subarray(0, taken).sort();
  for (let j = 0; j < taken; j++) {
    val[j] = values[idx[j]!]!;
    values[idx[j]!] = 0;
  }
  return sparseBytes(k);
}

/**
 * Bytes of a top-k update of `n` values with `k` non-zeros. The averaged update carries
 * the union of the workers' entries, which grows with their number: once the sparse
 * layout (8 bytes per entry) would not be smaller than the dense one (4 bytes per value),
 * the update travels dense, as `n` float32. The length tells the layouts apart: exactly
 * `4n` bytes is dense, anything else (a multiple of 8 below `4n`) sparse.
 */
export function topkUpdateBytes(n: number, k: number): number {
  return sparseBytes(k) < n * 4 ? sparseBytes(k) : n * 4;
}

/** Non-zero entries of `values` (the size of the coordinator's averaged top-k update). */
export function countNonZeros(values: Float32Array): number {
  let k = 0;
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) k++;
  return k;
}

/** Writes the `k` non-zero entries of `values` into `out` (at least `sparseBytes(k)` bytes, 4-aligned). */
export function writeNonZeros(values: Float32Array, out: Uint8Array, k: number): void {
  const idx = new Uint32Array(out.buffer, out.byteOffset, k);
  const val = new Float32Array(out.buffer, out.byteOffset + k * 4, k);
  let j = 0;
  for (let i = 0; i < values.length && j < k; i++) {
    if (values[i] !== 0) {
      idx[j] = i;
      val[j++] = values[i]!;
    }
  }
}

/** Splits a sparse payload into index and value views (payload must be 4-aligned). */
export function sparseViews(payload: Uint8Array): { idx: Uint32Array; val: Float32Array } {
  const k = payload.byteLength / 8;
  return {
    idx: new Uint32Array(payload.buffer, payload.byteOffset, k),
    val: new Float32Array(payload.buffer, payload.byteOffset + k * 4, k),
  };
}
