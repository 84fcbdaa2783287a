import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpecInput, JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

const ms = (iso: string | undefined) => new Date(iso!).getTime();
const exact = (j: JobStatus, n: number) => j.history.every((h) => h.audit.ok && h.audit.seen === n);

describe('scheduling: priorities and concurrent jobs (real worker processes)', () => {
  const cluster = new TestCluster();
  let spec: JobSpecInput;
  const TRAIN_SEEN = 1800; // 2000 examples less the 10 % validation tail

  beforeAll(async () => {
    const data = await writeSmallMnist(2000, 200);
    spec = {
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 1,
      batchSize: 32,
      seed: 8,
      checkpointEverySteps: 0,
    };
    await cluster.startCoordinator(); // no workers yet: the first test submits before any is there
  });
  afterAll(() => cluster.stop());

  it('a higher-priority job submitted later starts first; the earlier one waits for its workers', async () => {
    const c = cluster.client;
    const low = await c.submit({ ...spec, name: 'low', priority: 0, minWorkers: 2, maxWorkers: 4 });
    const high = await c.submit({ ...spec, name: 'high', priority: 5, minWorkers: 2, maxWorkers: 4 });
    expect([low.state, high.state]).toEqual(['QUEUED', 'QUEUED']);
    await cluster.startWorkers(2);
    const [l, h] = [await c.waitForJob(low.id), await c.waitForJob(high.id)];
    expect([l.state, h.state], `${l.reason} / ${h.reason}`).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    // Both workers went to the higher-priority job; the earlier, lower one ran after it.
    expect(ms(l.startedAt)).toBeGreaterThanOrEqual(ms(h.finishedAt));
    expect(exact(l, TRAIN_SEEN) && exact(h, TRAIN_SEEN)).toBe(true);
  });

  it('two jobs run alongside, on disjoint workers, when there are workers enough for both', async () => {
    await cluster.startWorkers(2, 4);
    const c = cluster.client;
    const pair = { ...spec, epochs: 3, minWorkers: 2, maxWorkers: 2 };
    const a = await c.submit({ ...pair, name: 'a' });
    const b = await c.submit({ ...pair, name: 'b' });
    let both: [JobStatus, JobStatus] | undefined;
    for (let i = 0; !both && i < 3000; i++) {
      const [ja, jb] = [await c.job(a.id), await c.job(b.id)];
      if (ja.state === 'RUNNING' && jb.state === 'RUNNING' && ja.progress.step > 0 && jb.progress.step > 0)
        both = [ja, jb];
      else if (!['QUEUED', 'RUNNING'].includes(ja.state) || !['QUEUED', 'RUNNING'].includes(jb.state)) break;
      else await new Promise((r) => setTimeout(r, 20));
    }
    expect(both, 'both jobs training at the same time').toBeDefined();
    const [ja, jb] = both!;
    expect(ja.workers).toHaveLength(2);
    expect(jb.workers).toHaveLength(2);
    expect(ja.workers.filter((w) => jb.workers.includes(w))).toEqual([]);
    const [da, db] = [await c.waitForJob(a.id), await c.waitForJob(b.id)];
    expect([da.state, db.state], `${da.reason} / ${db.reason}`).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(ms(da.startedAt)).toBeLessThan(ms(db.finishedAt));
    expect(ms(db.startedAt)).toBeLessThan(ms(da.finishedAt));
    expect(exact(da, TRAIN_SEEN) && exact(db, TRAIN_SEEN)).toBe(true);
    expect(da.replicas.divergences + db.replicas.divergences).toBe(0);
  });
});
