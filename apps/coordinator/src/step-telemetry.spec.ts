import { describe, expect, it } from 'vitest';
import { CoordinatorMetrics } from './metrics.js';
import { StepTelemetry } from './step-telemetry.js';

/** Count and sum of one phase of `gradfleet_step_phase_seconds` for job `j`. */
async function phase(m: CoordinatorMetrics, name: string): Promise<{ count: number; sum: number }> {
  const { values } = await m.stepPhase.get();
  const of = (metric: string) =>
    values.find((v) => v.metricName === metric && v.labels['job_id'] === 'j' && v.labels['phase'] === name)?.value;
  return {
    count: of('gradfleet_step_phase_seconds_count') ?? 0,
    sum: of('gradfleet_step_phase_seconds_sum') ?? 0,
  };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('step telemetry: data wait', () => {
  it('observes each worker’s wait for examples as phase data_wait, apart from compute and upload', async () => {
    const m = new CoordinatorMetrics();
    const t = new StepTelemetry(m, 'j');
    t.begin();
    const s0 = performance.now();
    t.sent('a');
    t.sent('b');
    await wait(60);
    t.arrived('a', 10, 2, 32, 100, 0, 40);
    t.arrived('b', 20, 2, 32, 100, 0, 0);
    const longest = performance.now() - s0; // each round trip is in [60, longest] ms
    t.finish(64, 0, 2).sent();
    const dataWait = await phase(m, 'data_wait');
    expect(dataWait.count).toBe(2);
    expect(dataWait.sum).toBeCloseTo(0.04, 9);
    expect((await phase(m, 'compute')).sum).toBeCloseTo(0.03, 9); // forward+backward only
    // Upload is the round trip minus compute, apply and data wait: a's 40 ms wait is not upload time.
    const upload = await phase(m, 'upload');
    expect(upload.count).toBe(2);
    expect(upload.sum * 1000).toBeGreaterThanOrEqual(60 - 52 + (60 - 22) - 1e-6);
    expect(upload.sum * 1000).toBeLessThanOrEqual(longest - 52 + (longest - 22) + 1e-6);
    expect(t.timing.dataWaitMs).toBeCloseTo(20, 9); // the mean over the step's workers
    expect(t.timing.computeMs).toBeCloseTo(15, 9);
  });

  it('reports 0 for workers that send no wait (in-memory data, older workers)', async () => {
    const m = new CoordinatorMetrics();
    const t = new StepTelemetry(m, 'j');
    for (let step = 0; step < 3; step++) {
      t.begin();
      t.sent('a');
      t.arrived('a', 5, 1, 8, 10, 0);
      t.finish(8, 0, 1).sent();
    }
    expect(await phase(m, 'data_wait')).toEqual({ count: 3, sum: 0 });
    expect(t.timing.dataWaitMs).toBe(0);
  });

  it('keeps a moving average of the wait across steps', async () => {
    const m = new CoordinatorMetrics();
    const t = new StepTelemetry(m, 'j');
    const step = (waitMs: number) => {
      t.begin();
      t.sent('a');
      t.arrived('a', 5, 1, 8, 10, 0, waitMs);
      t.finish(8, 0, 1).sent();
    };
    step(100);
    expect(t.timing.dataWaitMs).toBe(100); // the first step sets it
    step(0);
    expect(t.timing.dataWaitMs).toBeCloseTo(95, 9); // then 5 % of each new step
    expect((await phase(m, 'data_wait')).sum).toBeCloseTo(0.1, 9);
  });
});
