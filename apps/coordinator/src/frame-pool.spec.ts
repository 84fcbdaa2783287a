import { describe, expect, it } from 'vitest';
import { FramePool } from './frame-pool.js';

describe('FramePool', () => {
  it('recycles a frame only after every send completed', () => {
    const pool = new FramePool(16);
    const a = pool.acquire();
    const done = pool.releaseAfter(a, 2);
    expect(pool.acquire()).not.toBe(a);
    done();
    expect(pool.acquire()).not.toBe(a);
    const b = pool.acquire();
    pool.release(b);
    done();
    expect([pool.acquire(), pool.acquire()]).toContain(a);
  });
});
