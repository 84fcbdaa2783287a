import { describe, expect, it } from 'vitest';
import { parseJobSpec } from '../job/job-spec.js';
import { learningRateAt } from './lr-schedule.js';

const schedule = (lrSchedule: unknown) => parseJobSpec({ lrSchedule }).lrSchedule;
const rates = (s: unknown, steps: number, base = 0.1) =>
  Array.from({ length: steps }, (_, t) => learningRateAt(base, schedule(s), t));

describe('learningRateAt', () => {
  it('keeps the default schedule at the base rate', () => {
    expect(rates({ type: 'constant' }, 5)).toEqual([0.1, 0.1, 0.1, 0.1, 0.1]);
  });

  it('warms up linearly from base / warmupSteps to base, then starts the schedule at its step 0', () => {
    expect(rates({ type: 'constant', warmupSteps: 4 }, 6, 1)).toEqual([0.25, 0.5, 0.75, 1, 1, 1]);
    expect(rates({ type: 'step', stepSize: 2, gamma: 0.5, warmupSteps: 2 }, 7, 1)).toEqual([
      0.5, 1, 1, 1, 0.5, 0.5, 0.25,
    ]);
  });

  it('decays exponentially, continuously or in stairs', () => {
    const smooth = rates({ type: 'exponential', decaySteps: 2, decayRate: 0.25 }, 4, 1);
    expect(smooth[1]).toBeCloseTo(0.5, 12);
    expect(smooth[3]).toBeCloseTo(0.125, 12);
    expect(rates({ type: 'exponential', decaySteps: 2, decayRate: 0.25, staircase: true }, 4, 1)).toEqual([
      1, 1, 0.25, 0.25,
    ]);
  });

  it('follows half a cosine down to alpha · base and stays there', () => {
    const r = rates({ type: 'cosine', decaySteps: 4, alpha: 0.1 }, 7, 1);
    expect(r[0]).toBe(1);
    expect(r[2]).toBeCloseTo(0.55, 12); // halfway: 0.9 · 0.5 + 0.1
    expect(r[4]).toBeCloseTo(0.1, 12);
    expect(r[6]).toBeCloseTo(0.1, 12);
  });

  it('refuses a step that is not a count', () => {
    expect(() => learningRateAt(1, schedule({ type: 'constant' }), -1)).toThrow(RangeError);
    expect(() => learningRateAt(1, schedule({ type: 'constant' }), 0.5)).toThrow(RangeError);
  });
});
