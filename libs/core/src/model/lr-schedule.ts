import type { LrSchedule } from '../job/job-spec.js';

/**
 * The learning rate of step `step` (0-based: the `step`-th update a replica applies).
 *
 * Warmup, when `warmupSteps` > 0: `base · (step + 1) / warmupSteps` for the first
 * `warmupSteps` steps. After it, with `s = step − warmupSteps`:
 * - constant: `base`
 * - step: `base · gamma^⌊s / stepSize⌋`
 * - exponential: `base · decayRate^(s / decaySteps)` (the exponent floored with `staircase`)
 * - cosine: `base · ((1 − alpha) · ½ (1 + cos(π · min(s, decaySteps) / decaySteps)) + alpha)`
 *
 * Computed in float64 from the step number alone, so every replica gets the same value.
 */
export function learningRateAt(base: number, schedule: LrSchedule, step: number): number {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`step must be an integer >= 0, got ${step}`);
  const warmup = schedule.warmupSteps;
  if (step < warmup) return (base * (step + 1)) / warmup;
  const s = step - warmup;
  switch (schedule.type) {
    case 'constant':
      return base;
    case 'step':
      return base * schedule.gamma ** Math.floor(s / schedule.stepSize);
    case 'exponential': {
      const exponent = s / schedule.decaySteps;
      return base * schedule.decayRate ** (schedule.staircase ? Math.floor(exponent) : exponent);
    }
    case 'cosine': {
      const progress = Math.min(s, schedule.decaySteps) / schedule.decaySteps;
      return base * ((1 - schedule.alpha) * 0.5 * (1 + Math.cos(Math.PI * progress)) + schedule.alpha);
    }
  }
}
