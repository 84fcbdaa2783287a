import { describe, expect, it } from 'vitest';
import { CoordinatorMetrics, DEFAULT_JOB_SERIES_GRACE_MS } from './metrics.js';

const seriesOf = async (m: CoordinatorMetrics, job: string) =>
  (await m.registry.metrics()).split('\n').filter((l) => l.includes(`job_id="${job}"`));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('per-job metric series are removed when a job ends', () => {
  it('keeps a finished job’s series through the grace period, then removes all of them and only them', async () => {
    const m = new CoordinatorMetrics();
    expect(m.jobSeriesGraceMs).toBe(DEFAULT_JOB_SERIES_GRACE_MS);
    for (const job of ['done', 'live']) {
      m.initJob(job, ['w1', 'w2']);
      m.steps.inc({ job_id: job });
      m.stepPhase.observe({ job_id: job, phase: 'compute' }, 0.01); // a histogram: buckets, sum, count
      m.trainLoss.set({ job_id: job }, 0.5);
    }
    const before = (await seriesOf(m, 'done')).length;
    expect(before).toBeGreaterThan(10);
    m.retireJob('done', 200);
    await sleep(50);
    expect(await seriesOf(m, 'done')).toHaveLength(before); // still there to be scraped
    await sleep(400);
    expect(await seriesOf(m, 'done')).toEqual([]);
    expect((await seriesOf(m, 'live')).length).toBe(before); // another job's series stay
    expect(await m.registry.metrics()).toMatch(/^gradfleet_auth_failures_total\{kind="api"\} 0$/m); // unlabelled by job: untouched
  });

  it('a job that runs again before the grace period ends keeps its series', async () => {
    const m = new CoordinatorMetrics();
    m.initJob('j', ['w1']);
    m.retireJob('j', 100);
    m.initJob('j', ['w1']);
    await sleep(250);
    expect((await seriesOf(m, 'j')).length).toBeGreaterThan(0);
    await m.removeJob('j');
    expect(await seriesOf(m, 'j')).toEqual([]);
  });
});
