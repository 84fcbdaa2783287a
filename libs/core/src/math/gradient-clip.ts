/**
 * Clips a gradient vector in place, as a replica does to the averaged gradient before its
 * optimizer step: first every entry to [-clipValue, clipValue] (when clipValue > 0), then
 * the whole vector to global L2 norm clipNorm (when clipNorm > 0 and the norm is above it:
 * every entry times clipNorm / norm, as `tf.clip_by_global_norm` does).
 *
 * Sums in float64 in index order, so every replica computes the same bits from the same
 * input. Returns the global norm seen by the norm clip (after value clipping).
 */
export function clipGradient(g: Float32Array, clipValue: number, clipNorm: number): number {
  if (clipValue > 0) {
    for (let i = 0; i < g.length; i++) {
      const v = g[i]!;
      if (v > clipValue) g[i] = clipValue;
      else if (v < -clipValue) g[i] = -clipValue;
    }
  }
  let sumSquares = 0;
  for (let i = 0; i < g.length; i++) sumSquares += g[i]! * g[i]!;
  const norm = Math.sqrt(sumSquares);
  if (clipNorm > 0 && norm > clipNorm) {
    const scale = clipNorm / norm;
    for (let i = 0; i < g.length; i++) g[i] = g[i]! * scale;
  }
  return norm;
}
