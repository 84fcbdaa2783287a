import { describe, expect, it } from 'vitest';
import { RateMeter } from './rate-meter.js';

describe('RateMeter', () => {
  it('averages over the last 10 s and forgets older events', () => {
    const t0 = Math.ceil(Date.now() / 1000) * 1000; // on a second boundary
    const m = new RateMeter(t0);
    for (let s = 0; s < 10; s++) m.add(100, t0 + s * 1000);
    expect(m.rate(t0 + 9_999)).toBeCloseTo(100, 0);
    expect(m.rate(t0 + 25_000)).toBe(0);
  });
});
