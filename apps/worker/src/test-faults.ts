import type { Logger } from '@gradfleet/core';

/**
 * TEST ONLY: faults injected on purpose so end-to-end tests can watch the coordinator catch
 * a corrupted replica (tests/replica-resync.spec.ts). Off unless the environment sets
 * `GRADFLEET_TEST_CORRUPT_AT_STEP`; never set it in production.
 *
 * - `GRADFLEET_TEST_CORRUPT_AT_STEP=N`: once, at step N's update;
 * - `GRADFLEET_TEST_CORRUPT=weights` (default): after applying the update, perturb the
 *   weights (a memory or device fault: the update stream is intact);
 * - `GRADFLEET_TEST_CORRUPT=update`: flip bits of the first update bucket before it is
 *   applied (bytes damaged after the wire: the replica's update-stream hash disagrees);
 * - `GRADFLEET_TEST_CORRUPT=stats`: after applying the update, perturb the first
 *   non-trainable weight (a BatchNormalization moving statistic; tests/batchnorm.spec.ts).
 */
export class TestFaults {
  private fired = false;

  private constructor(
    private readonly step: number,
    /** What is corrupted: the weights, the update bytes, or the non-trainable weights (`stats`). */
    readonly kind: 'weights' | 'update' | 'stats',
    private readonly log: Logger,
  ) {}

  static fromEnv(env: NodeJS.ProcessEnv, log: Logger): TestFaults | undefined {
    const at = env['GRADFLEET_TEST_CORRUPT_AT_STEP'];
    if (at === undefined || at === '') return undefined;
    const step = Number(at);
    const kind = env['GRADFLEET_TEST_CORRUPT'] ?? 'weights';
    if (!Number.isInteger(step) || step < 0 || (kind !== 'weights' && kind !== 'update' && kind !== 'stats'))
      throw new Error(
        'GRADFLEET_TEST_CORRUPT_AT_STEP must be a step number and GRADFLEET_TEST_CORRUPT weights, update or stats (test-only settings)',
      );
    log.warn({ step, kind }, 'TEST-ONLY fault injection is on: this worker will corrupt its replica');
    return new TestFaults(step, kind, log);
  }

  /** Damages bucket 0 of the chosen step's update in place (kind `update`); true when it did. */
  corruptUpdate(step: number, bucket: number, payload: Uint8Array): boolean {
    if (this.fired || this.kind !== 'update' || step !== this.step || bucket !== 0 || payload.length === 0)
      return false;
    this.fired = true;
    payload[0] = payload[0]! ^ 0xff; // low mantissa byte of the first value: finite, bit-exact different
    this.log.warn({ step }, 'TEST-ONLY fault: corrupted the update bytes of this step');
    return true;
  }

  /** Whether to perturb the weights after applying the chosen step's update (kinds `weights` and `stats`). */
  corruptWeights(step: number): boolean {
    if (this.fired || this.kind === 'update' || step !== this.step) return false;
    this.fired = true;
    this.log.warn({ step, kind: this.kind }, 'TEST-ONLY fault: perturbing the weights after this step');
    return true;
  }
}

/**
 * TEST ONLY: `GRADFLEET_TEST_SLOW_MS_PER_EXAMPLE=N` makes every gradient and evaluation
 * chunk busy-wait N ms per example on the worker's thread, like a slow device would
 * (tests/long-steps.spec.ts). Never set it in production.
 */
export function testSlowdown(env: NodeJS.ProcessEnv, log: Logger): ((examples: number) => void) | undefined {
  const raw = env['GRADFLEET_TEST_SLOW_MS_PER_EXAMPLE'];
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!Number.isFinite(ms) || ms <= 0)
    throw new Error('GRADFLEET_TEST_SLOW_MS_PER_EXAMPLE must be a positive number of ms (a test-only setting)');
  log.warn({ msPerExample: ms }, 'TEST-ONLY slowdown is on: this worker busy-waits in every computation');
  return (examples) => {
    const until = performance.now() + ms * examples;
    while (performance.now() < until); // synchronous on purpose: a busy device blocks the thread
  };
}

/**
 * TEST ONLY: `GRADFLEET_TEST_LATE_STATS_MS=N` makes a data-plane worker send its step's stats
 * (`gradient-sent`) N ms after its buckets instead of before them, so the shards' completion
 * reaches the coordinator first (tests/data-plane.spec.ts). Never set it in production.
 */
export function testLateStatsMs(env: NodeJS.ProcessEnv, log: Logger): number | undefined {
  const raw = env['GRADFLEET_TEST_LATE_STATS_MS'];
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!Number.isFinite(ms) || ms < 0)
    throw new Error('GRADFLEET_TEST_LATE_STATS_MS must be a number of ms (a test-only setting)');
  log.warn({ ms }, 'TEST-ONLY late stats are on: this worker sends its step stats after its gradient');
  return ms;
}
