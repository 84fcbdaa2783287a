import { describe, expect, it } from 'vitest';
import { Scatter } from './scatter.js';
import type { WorkerConnection } from './worker-connection.js';

const worker = (id: string) => ({ id }) as unknown as WorkerConnection;

describe('Scatter', () => {
  it('splits a range across workers and sums their results exactly', () => {
    const s = new Scatter('validation', 100, 110);
    s.split(3);
    const [a, b] = [worker('a'), worker('b')];
    const sent = s.assign([a, b]);
    expect(sent.map(([, , r]) => r)).toEqual([
      [100, 103],
      [103, 106],
      [106, 110],
    ]);
    expect(new Set(sent.map(([w]) => w)).size).toBe(2);
    for (const [w, id, [lo, hi]] of sent) s.result(w, id, { lossSum: hi - lo, correct: 1, count: hi - lo });
    expect(s.done).toBe(true);
    expect(s.totals).toEqual({ lossSum: 10, correct: 3, count: 10 });
  });

  it('re-issues a lost worker’s ranges and refuses results it did not ask for', () => {
    const s = new Scatter('test', 0, 4);
    s.split(2);
    const [a, b] = [worker('a'), worker('b')];
    const first = s.assign([a, b]);
    const [wa, ida, ra] = first.find(([w]) => w === a)!;
    s.lost(a);
    expect(() => s.result(wa, ida, { lossSum: 0, correct: 0, count: ra[1] - ra[0] })).toThrow(/no test request/);
    const again = s.assign([b]);
    expect(again).toEqual([[b, ida, ra]]);
    const [, idb, rb] = first.find(([w]) => w === b)!;
    expect(() => s.result(b, idb, { lossSum: 0, correct: 0, count: 99 })).toThrow(/covers 99 examples/);
    s.result(b, idb, { lossSum: 0, correct: 0, count: rb[1] - rb[0] });
    s.result(b, ida, { lossSum: 0, correct: 0, count: ra[1] - ra[0] });
    expect(s.done).toBe(true);
    expect(s.totals.count).toBe(4);
  });
});
