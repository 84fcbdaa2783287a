import { describe, expect, it } from 'vitest';
import { SliceBalancer } from './slice-balancer.js';
import type { WorkerConnection } from './worker-connection.js';

const worker = (id: string) => ({ id }) as unknown as WorkerConnection;

describe('SliceBalancer', () => {
  const [a, b, c] = [worker('a'), worker('b'), worker('c')];

  it('equal: the same share for everyone, whatever was measured', () => {
    const s = new SliceBalancer('equal');
    for (let i = 0; i < 5; i++) s.observe(a, 32, 1);
    expect(s.weights([a, b])).toEqual([1, 1]);
  });

  it('throughput: shares proportional to examples per ms once past the warm-up', () => {
    const s = new SliceBalancer('throughput');
    s.observe(a, 32, 10);
    s.observe(b, 32, 40);
    expect(s.weights([a, b])).toEqual([1, 1]); // not trusted yet
    for (let i = 0; i < 3; i++) {
      s.observe(a, 32, 10);
      s.observe(b, 32, 40);
    }
    const [wa, wb] = s.weights([a, b]);
    expect(wa! / wb!).toBeCloseTo(4, 5);
  });

  it('a newcomer gets the mean share until measured; a very slow worker keeps a minimum share', () => {
    const s = new SliceBalancer('throughput');
    for (let i = 0; i < 3; i++) {
      s.observe(a, 100, 1); // 100 per ms
      s.observe(b, 1, 1000); // 0.001 per ms
    }
    const [wa, wb, wc] = s.weights([a, b, c]);
    const total = wa! + wb! + wc!;
    expect(wc).toBeCloseTo((100 + 0.001) / 2, 5);
    expect(wb! / total).toBeGreaterThanOrEqual((0.1 / 3) * 0.9); // about a tenth of an equal share
    s.forget(a);
    expect(s.weights([a, b])[0]).toBeCloseTo(0.001, 6); // a is new again: the mean of the measured
  });
});
