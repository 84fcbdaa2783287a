import type { JobSpec, JobState, JobStatus } from '@gradfleet/core';
import type { ModelInfo } from './model-info.js';

/** A job as the coordinator keeps it: the status the API shows plus its model and results. */
export class JobRecord {
  readonly status: JobStatus;
  finalWeights: Float32Array | undefined;
  cancelRequested: string | undefined;

  constructor(id: string, spec: JobSpec, readonly model: ModelInfo) {
    const now = new Date().toISOString();
    this.status = {
      id, state: 'QUEUED', spec, createdAt: now, workers: [], history: [],
      progress: { epoch: 0, epochs: spec.epochs, step: 0, samplesInEpoch: 0, epochSize: 0, samplesPerSecond: 0, phase: 'waiting' },
      replicas: { checks: 0, divergences: 0 },
      events: [{ time: now, state: 'QUEUED', reason: 'submitted' }],
    };
  }

  get id(): string {
    return this.status.id;
  }

  get spec(): JobSpec {
    return this.status.spec;
  }

  get state(): JobState {
    return this.status.state;
  }

  transition(state: JobState, reason: string): void {
    const time = new Date().toISOString();
    this.status.state = state;
    this.status.events.push({ time, state, reason });
    if (state === 'RUNNING') this.status.startedAt = time;
    if (state === 'SUCCEEDED' || state === 'FAILED' || state === 'CANCELLED') {
      this.status.finishedAt = time;
      this.status.progress.phase = 'done';
      if (state !== 'SUCCEEDED') this.status.reason = reason;
    }
  }
}
