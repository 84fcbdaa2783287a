import { describe, expect, it } from 'vitest';
import { dropoutMask, dropoutStreamSeed } from './seeded-dropout.js';

describe('dropoutMask', () => {
  it('gives each example its own stream, whatever the batch it sits in', () => {
    const both = dropoutMask([5, 9], 16, 0.5, 42, 3, 0);
    const alone = dropoutMask([9], 16, 0.5, 42, 3, 0);
    expect(Array.from(both.subarray(16))).toEqual(Array.from(alone));
    expect(Array.from(both.subarray(0, 16))).not.toEqual(Array.from(alone));
  });

  it('drops about `rate` of the units and scales the rest by 1 / (1 - rate)', () => {
    const mask = dropoutMask(
      Array.from({ length: 100 }, (_, i) => i),
      100,
      0.3,
      1,
      0,
      0,
    );
    const kept = mask.filter((v) => v !== 0);
    expect(new Set(kept)).toEqual(new Set([Math.fround(1 / 0.7)]));
    expect(kept.length / mask.length).toBeGreaterThan(0.67);
    expect(kept.length / mask.length).toBeLessThan(0.73);
  });

  it('changes with the seed, the step and the layer', () => {
    const base = dropoutStreamSeed(1, 2, 3, 4);
    expect(
      new Set([base, dropoutStreamSeed(2, 2, 3, 4), dropoutStreamSeed(1, 3, 3, 4), dropoutStreamSeed(1, 2, 4, 4)]).size,
    ).toBe(4);
  });
});
