import { describe, expect, it } from 'vitest';
import { clipGradient } from './gradient-clip.js';

describe('clipGradient', () => {
  it('leaves the gradient alone when both limits are 0', () => {
    const g = Float32Array.from([3, -4]);
    expect(clipGradient(g, 0, 0)).toBe(5);
    expect(Array.from(g)).toEqual([3, -4]);
  });

  it('scales to the global norm only when above it', () => {
    const g = Float32Array.from([3, -4, 0]);
    expect(clipGradient(g, 0, 1)).toBe(5);
    expect(Array.from(g)).toEqual([Math.fround(0.6), Math.fround(-0.8), 0]);
    const small = Float32Array.from([0.3, 0.4]);
    clipGradient(small, 0, 1);
    expect(Array.from(small)).toEqual([Math.fround(0.3), Math.fround(0.4)]);
  });

  it('clamps entries first, then clips the norm of what is left', () => {
    const g = Float32Array.from([10, -10, 0.5]);
    const norm = clipGradient(g, 1, 1);
    expect(norm).toBeCloseTo(Math.sqrt(2.25), 6);
    expect(g[0]).toBeCloseTo(1 / 1.5, 6);
    expect(g[1]).toBeCloseTo(-1 / 1.5, 6);
    expect(g[2]).toBeCloseTo(0.5 / 1.5, 6);
  });
});
