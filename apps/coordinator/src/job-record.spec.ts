import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IllegalTransitionError, parseJobSpec } from '@gradfleet/core';
import { JobRecord } from './job-record.js';
import { JobStore } from './job-store.js';

function record(): { job: JobRecord; store: JobStore } {
  const dir = mkdtempSync(join(tmpdir(), 'gradfleet-record-'));
  const store = new JobStore(dir);
  const spec = parseJobSpec({ model: 'mnist-mlp', dataset: 'mnist' });
  const job = JobRecord.create('job-1', 1, spec, undefined, dir, store);
  return { job, store };
}

describe('JobRecord.transition follows the lifecycle table', () => {
  it('records legal transitions (state, events, store) and refuses an illegal one, changing nothing', () => {
    const { job, store } = record();
    job.transition('RUNNING', 'workers assigned');
    job.transition('PAUSED', 'lost its workers');
    job.transition('RUNNING', 'resuming');
    job.transition('SUCCEEDED', 'all epochs done');
    expect(job.status.events.map((e) => e.state)).toEqual(['QUEUED', 'RUNNING', 'PAUSED', 'RUNNING', 'SUCCEEDED']);
    const events = job.status.events.length;
    expect(() => job.transition('RUNNING', 'resumed after the end')).toThrow(IllegalTransitionError);
    expect(job.state).toBe('SUCCEEDED');
    expect(job.status.events).toHaveLength(events);
    expect(store.events('job-1').map((e) => e.state)).toEqual(['QUEUED', 'RUNNING', 'PAUSED', 'RUNNING', 'SUCCEEDED']);
  });
});
