import { parseJobSpec, type JobStatus } from '@gradfleet/core/client';
import { describe, expect, it } from 'vitest';
import { line } from './client-commands.js';

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
});
