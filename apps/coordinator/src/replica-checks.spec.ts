import { describe, expect, it, vi } from 'vitest';
import { UpdateStreamHash, createLogger, type ReplicaReport } from '@gradfleet/core';
import { CoordinatorMetrics } from './metrics.js';
import { ReplicaChecks } from './replica-checks.js';

const BUCKETS = 2;

/** Sends steps `from..to` (two buckets each) through the checks and a replica's own chain. */
function sendSteps(checks: ReplicaChecks, replicas: UpdateStreamHash[], from: number, to: number, damage?: number) {
  for (let step = from; step <= to; step++) {
    for (let b = 0; b < BUCKETS; b++) {
      const bytes = Uint8Array.from([step, b, 7]);
      checks.updateSent(step, b, bytes);
      replicas.forEach((r, i) => {
        const applied = i === damage && step === to && b === 0 ? Uint8Array.from([step, b, 8]) : bytes;
        r.add(step, b, applied);
      });
    }
    for (const r of replicas) r.endStep();
  }
}

function setup() {
  const report: ReplicaReport = { checks: 0, divergences: 0 };
  const onDivergence = vi.fn();
  const checks = new ReplicaChecks(
    report,
    new CoordinatorMetrics(),
    'j',
    createLogger('test').child({ level: 'silent' }),
    onDivergence,
    BUCKETS,
  );
  return { report, onDivergence, checks };
}

describe('ReplicaChecks: majority, update-stream reference, rollback', () => {
  it('waits for every asked member, then counts agreeing replicas as one check', () => {
    const { report, checks } = setup();
    const streams = [new UpdateStreamHash(), new UpdateStreamHash()];
    sendSteps(checks, streams, 0, 9);
    checks.expect(9, ['w1', 'w2']);
    checks.record('w1', 9, 'aaaa', 1.5, streams[0]!.take());
    expect(checks.waitingFor(['w1', 'w2'])).toEqual(['w2']);
    checks.record('w2', 9, 'aaaa', 1.5, streams[1]!.take());
    expect(checks.waitingFor(['w1', 'w2'])).toEqual([]);
    expect(checks.decide(['w1', 'w2'])).toEqual({ resync: [] });
    expect(report).toMatchObject({ checks: 1, divergences: 0, lastStep: 9, lastHash: 'aaaa' });
  });

  it('three replicas: the majority wins even when the outvoted one reported first', () => {
    const { report, checks, onDivergence } = setup();
    const streams = [new UpdateStreamHash(), new UpdateStreamHash(), new UpdateStreamHash()];
    sendSteps(checks, streams, 0, 4);
    checks.expect(4, ['bad', 'w2', 'w3']);
    checks.record('bad', 4, 'cccc', 9, streams[0]!.take());
    checks.record('w2', 4, 'aaaa', 1, streams[1]!.take());
    checks.record('w3', 4, 'aaaa', 1, streams[2]!.take());
    expect(checks.decide(['bad', 'w2', 'w3'])).toEqual({ resync: ['bad'] });
    expect(report.divergences).toBe(1);
    expect(onDivergence).toHaveBeenCalledWith(
      expect.stringMatching(/after step 4: .*majority w2, w3 wins, resynchronising bad/),
    );
  });

  it('two replicas: the one whose update stream differs from the reference is resynced, first or not', () => {
    for (const damaged of [0, 1]) {
      const { checks } = setup();
      const streams = [new UpdateStreamHash(), new UpdateStreamHash()];
      sendSteps(checks, streams, 0, 3);
      checks.expect(3, ['w0', 'w1']);
      checks.record('w0', 3, 'h', 1, streams[0]!.take());
      checks.record('w1', 3, 'h', 1, streams[1]!.take());
      expect(checks.decide(['w0', 'w1'])).toEqual({ resync: [] });
      sendSteps(checks, streams, 4, 7, damaged); // step 7's first bucket damaged on one replica
      checks.expect(7, ['w0', 'w1']);
      checks.record('w0', 7, damaged === 0 ? 'bad' : 'good', 1, streams[0]!.take());
      checks.record('w1', 7, damaged === 1 ? 'bad' : 'good', 1, streams[1]!.take());
      expect(checks.decide(['w0', 'w1'])).toEqual({ resync: [`w${damaged}`] });
    }
  });

  it('two replicas that applied the same bytes but differ: no one is trusted, the job rolls back', () => {
    const { report, checks } = setup();
    const streams = [new UpdateStreamHash(), new UpdateStreamHash()];
    sendSteps(checks, streams, 0, 5);
    checks.expect(5, ['w1', 'w2']);
    checks.record('w1', 5, 'aaaa', 1, streams[0]!.take());
    checks.record('w2', 5, 'bbbb', 2, streams[1]!.take());
    const verdict = checks.decide(['w1', 'w2']);
    expect(verdict.resync).toEqual([]);
    expect(verdict.rollback).toMatch(/no majority .* rolling back to the last checkpoint/);
    expect(report.divergences).toBe(1);
  });

  it('a member that left is not waited for, and reports for unasked steps are ignored', () => {
    const { checks } = setup();
    const streams = [new UpdateStreamHash()];
    sendSteps(checks, streams, 0, 2);
    checks.expect(2, ['w1', 'gone']);
    checks.record('w1', 2, 'aaaa', 1, streams[0]!.take());
    checks.record('w1', 1, 'zzzz', 1); // never asked
    expect(checks.waitingFor(['w1'])).toEqual([]);
    expect(checks.decide(['w1'])).toEqual({ resync: [] });
  });
});
