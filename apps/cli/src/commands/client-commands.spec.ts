import { parseJobSpec, type JobStatus } from '@gradfleet/core/client';
import { describe, expect, it } from 'vitest';
import { line, timing, workerFigures } from './client-commands.js';

const running: JobStatus = {
  id: 'job-1',
  state: 'RUNNING',
  spec: parseJobSpec({}),
  createdAt: new Date(0).toISOString(),
  workers: ['w1'],
  progress: {
    epoch: 1,
    epochs: 5,
    step: 40,
    samplesInEpoch: 500,
    epochSize: 1000,
    samplesPerSecond: 1234.4,
    learningRate: 0.000125,
    phase: 'training',
  },
  history: [],
  replicas: { checks: 0, divergences: 0 },
  events: [],
};

describe('gradfleet status: a job in one line', () => {
  it('shows the learning rate of a running job', () => {
    expect(line(running)).toBe('job-1  RUNNING    epoch 2/5 50%  1234 samples/s  lr 0.000125');
  });

  it("shows the job's metrics: the last epoch's on validation data, and on the test split once done", () => {
    const done: JobStatus = {
      ...running,
      state: 'SUCCEEDED',
      history: [
        {
          epoch: 0,
          loss: 0.3,
          accuracy: 0.9,
          valLoss: 0.2,
          valAccuracy: 0.91,
          valMetrics: { recall: 0.75 },
          samples: 10,
          steps: 1,
          durationMs: 1,
          audit: { epoch: 0, ok: true, seen: 10, missing: 0, duplicated: 0 },
        },
      ],
      result: { testAccuracy: 0.5, testMetrics: { recall: 0.625 }, wallTimeMs: 1, samplesPerSecond: 1, steps: 1 },
    };
    expect(line(done)).toBe('job-1  SUCCEEDED  val_acc 91.00%  val_recall 0.7500  test_recall 0.6250  test_acc 50.00%');
  });
});

describe('gradfleet status: step phases and worker figures', () => {
  const phases = {
    stepMs: 30,
    computeMs: 12,
    applyMs: 1,
    uploadMs: 2,
    stragglerWaitMs: 3,
    aggregateMs: 0.5,
    broadcastMs: 0.25,
  };

  it('shows the data wait next to the other phases', () => {
    expect(timing({ ...running, timing: { ...phases, dataWaitMs: 9.96 } })).toBe(
      '      step 30.0 ms: data wait 10.0, compute 12.0, apply 1.0, upload 2.0, straggler wait 3.0, aggregate 0.5, broadcast 0.3',
    );
  });

  it('leaves the data wait out of a status recorded before it was measured', () => {
    expect(timing({ ...running, timing: phases })).toBe(
      '      step 30.0 ms: compute 12.0, apply 1.0, upload 2.0, straggler wait 3.0, aggregate 0.5, broadcast 0.3',
    );
  });

  it('shows a worker’s chunk-cache hit ratio once it has one', () => {
    const stats = {
      samplesPerSecond: 99.6,
      steps: 10,
      samples: 320,
      meanComputeMs: 4.25,
      stragglerEvents: 1,
      excusedSlices: 0,
    };
    expect(workerFigures(stats)).toBe('  100 samples/s  compute 4.3 ms/step  straggler in 1 of 10 steps');
    expect(workerFigures({ ...stats, chunkCacheHitRatio: 0.8125 })).toBe(
      '  100 samples/s  compute 4.3 ms/step  straggler in 1 of 10 steps  chunk cache 81.3% hits',
    );
    expect(workerFigures(undefined)).toBe('');
  });
});
