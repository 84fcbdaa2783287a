import { describe, expect, it, vi } from 'vitest';
import { createLogger, type ReplicaReport } from '@gradfleet/core';
import { CoordinatorMetrics } from './metrics.js';
import { ReplicaChecks } from './replica-checks.js';

describe('ReplicaChecks', () => {
  it('counts agreeing checksums and reports a diverged replica for resync', () => {
    const report: ReplicaReport = { checks: 0, divergences: 0 };
    const onDivergence = vi.fn();
    const checks = new ReplicaChecks(
      report,
      new CoordinatorMetrics(),
      'j',
      createLogger('test').child({ level: 'silent' }),
      onDivergence,
    );
    checks.record('w1', 10, 'aaaa', 1.5);
    checks.record('w2', 10, 'aaaa', 1.5);
    expect(report).toMatchObject({ checks: 1, divergences: 0, lastStep: 10 });
    checks.record('w1', 20, 'bbbb', 2);
    checks.record('w2', 20, 'cccc', 2.1);
    expect(report.divergences).toBe(1);
    expect(onDivergence).toHaveBeenCalledWith(expect.stringMatching(/REPLICA DIVERGENCE after step 20/), 'w2');
  });
});
