import { parseJobSpec, type EpochResult, type JobStatus } from '@gradfleet/core/client';
import { describe, expect, it } from 'vitest';
import { formatEpoch, formatReport } from './progress.js';

const epoch = (over: Partial<EpochResult> = {}): EpochResult => ({
  epoch: 0,
  loss: 0.25,
  accuracy: 0.925,
  samples: 54_000,
  steps: 1688,
  durationMs: 12_345,
  audit: { epoch: 0, ok: true, seen: 54_000, missing: 0, duplicated: 0 },
  ...over,
});

function job(over: Partial<JobStatus> = {}): JobStatus {
  return {
    id: 'job-1',
    state: 'SUCCEEDED',
    spec: parseJobSpec({}),
    createdAt: new Date(0).toISOString(),
    workers: ['w1', 'w2'],
    progress: { epoch: 0, epochs: 5, step: 0, samplesInEpoch: 0, epochSize: 0, samplesPerSecond: 0, phase: 'done' },
    history: [epoch()],
    replicas: { checks: 3, divergences: 0 },
    events: [],
    ...over,
  };
}

describe('formatEpoch', () => {
  it('prints the epoch as model.fit does, with validation figures and the audit verdict', () => {
    expect(formatEpoch(epoch({ valLoss: 0.1, valAccuracy: 0.97 }), 5)).toBe(
      'epoch 1/5  loss 0.2500  acc 92.50%  val_loss 0.1000  val_acc 97.00%  12.3s  audit ok',
    );
  });

  it("adds the job's metrics on the validation data after the accuracy", () => {
    const e = epoch({ valLoss: 0.1, valAccuracy: 0.97, valMetrics: { precision: 0.8125, mse: 0.03125 } });
    expect(formatEpoch(e, 5)).toBe(
      'epoch 1/5  loss 0.2500  acc 92.50%  val_loss 0.1000  val_acc 97.00%  val_precision 0.8125  val_mse 0.0313  12.3s  audit ok',
    );
  });

  it('names what a failed audit found', () => {
    const failed = epoch({ audit: { epoch: 0, ok: false, seen: 9, missing: 2, duplicated: 1 } });
    expect(formatEpoch(failed, 1)).toMatch(/AUDIT FAILED \(missing 2, repeated 1\)$/);
  });
});

describe('formatReport', () => {
  it('says why early stopping ended a job and where it stood', () => {
    const text = formatReport(
      job({
        spec: parseJobSpec({ earlyStopping: { monitor: 'val_acc', patience: 2 } }),
        reason: 'early stopping after epoch 5: val_acc did not improve by more than 0 for 2 epoch(s)',
        earlyStopping: { best: 0.73333, wait: 2, bestEpoch: 2, stoppedEpoch: 4 },
      }),
      [],
    );
    expect(text.split('\n').slice(0, 2)).toEqual([
      'job job-1: SUCCEEDED (early stopping after epoch 5: val_acc did not improve by more than 0 for 2 epoch(s))',
      '  early stopping  val_acc best 0.7333 at epoch 3, 2/2 epoch(s) without improvement, stopped after epoch 5',
    ]);
  });

  it('reports accuracy, time, throughput, workers, replica checks and the audit', () => {
    const text = formatReport(
      job({
        result: { testAccuracy: 0.9778, testLoss: 0.07, wallTimeMs: 61_000, samplesPerSecond: 4321.4, steps: 8440 },
      }),
      [{ name: 'w1', backend: 'wasm' }],
    );
    expect(text.split('\n')).toEqual([
      'job job-1: SUCCEEDED',
      '  test accuracy   97.78%  (loss 0.0700)',
      '  training time   61.0 s (8440 steps)',
      '  throughput      4321 samples/s',
      '  workers         w1 (wasm)',
      '  replica checks  3 checks, 0 divergences',
      '  sample audit    every example exactly once per epoch',
    ]);
  });

  it('says FAILED when any epoch audit failed, and gives the reason of a failed job', () => {
    const bad = epoch({ epoch: 1, audit: { epoch: 0, ok: false, seen: 9, missing: 1, duplicated: 0 } });
    const text = formatReport(job({ state: 'FAILED', reason: 'no workers', history: [epoch(), bad] }), []);
    expect(text).toMatch(/^job job-1: FAILED \(no workers\)$/m);
    expect(text).toMatch(/sample audit {4}FAILED$/m);
  });
});
