/**
 * Gradient arithmetic as pure functions over flat Float32 vectors (all trainable
 * weights concatenated in model order).
 */

/** `acc += g * w`. */
export function addScaled(acc: Float32Array, g: Float32Array, w: number): void {
  if (acc.length !== g.length) throw new RangeError(`length mismatch: ${acc.length} vs ${g.length}`);
  for (let i = 0; i < g.length; i++) acc[i]! += g[i]! * w;
}

/** `acc *= s`. */
export function scaleInPlace(acc: Float32Array, s: number): void {
  for (let i = 0; i < acc.length; i++) acc[i]! *= s;
}

/**
 * Sample-weighted mean of per-worker mean gradients:
 * `sum_k(g_k * n_k) / sum_k(n_k)`, the gradient of the mean loss over the union of slices.
 */
export function weightedMean(grads: readonly Float32Array[], samples: readonly number[]): Float32Array {
  if (grads.length === 0 || grads.length !== samples.length)
    throw new RangeError('weightedMean needs one sample count per gradient');
  const out = new Float32Array(grads[0]!.length);
  const total = samples.reduce((a, b) => a + b, 0);
  grads.forEach((g, k) => addScaled(out, g, samples[k]!));
  scaleInPlace(out, 1 / total);
  return out;
}

/**
 * Replica checksum of a set of weight arrays: an FNV-1a style hash over the raw 32-bit
 * words (bit-exact: equal only when every weight is identical) and a float64 sum (to
 * size a divergence when the hashes differ).
 */
export function weightsChecksum(arrays: readonly Float32Array[]): { hash: string; sum: number } {
  let h = 0x811c9dc5;
  let sum = 0;
  for (const a of arrays) {
    const words = new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (let i = 0; i < words.length; i++) {
      h = Math.imul(h ^ words[i]!, 0x01000193);
      sum += a[i]!;
    }
  }
  return { hash: (h >>> 0).toString(16).padStart(8, '0'), sum };
}

/** Largest |a-b| divided by the largest |b| (0 when both are all zero). */
export function maxRelativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length mismatch: ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}
