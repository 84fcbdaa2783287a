import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '@gradfleet/core';
import { TestCluster } from './helpers/cluster.js';

async function expectApiError(p: Promise<unknown>, status: number, code: string, path?: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect({ status: e.status, code: e.code }).toEqual({ status, code });
    if (path !== undefined) expect(e.issues.map((i) => i.path)).toContain(path);
    return;
  }
  throw new Error('expected an API error');
}

describe('job API', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.startCoordinator());
  afterAll(() => cluster.stop());

  it('refuses invalid specs with 400, the error code and the field path', async () => {
    const c = cluster.client;
    await expectApiError(c.submit({ epochs: 0 }), 400, 'INVALID_JOB_SPEC', 'epochs');
    await expectApiError(c.submit({ batchSize: 'big' } as never), 400, 'INVALID_JOB_SPEC', 'batchSize');
    await expectApiError(c.submit({ model: 'resnet' } as never), 400, 'INVALID_JOB_SPEC', 'model');
    await expectApiError(c.submit({ model: { topology: { class_name: 'Sequential', config: { layers: [{ class_name: 'NoSuchLayer', config: {} }] } } } }), 400, 'INVALID_MODEL', 'model');
    await expectApiError(c.submit({ model: { topology: { class_name: 'Sequential', config: { layers: [{ class_name: 'Dense', config: { units: 10, batch_input_shape: [null, 5] } }] } } } }), 400, 'INVALID_JOB_SPEC', 'model');
    const res = await fetch(`${cluster.url}/v1/jobs`, { method: 'POST', body: '{not json' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INVALID_JSON');
  });

  it('queues a valid job, reports it, cancels it, and 404s unknown ids', async () => {
    const c = cluster.client;
    const job = await c.submit({ epochs: 1, minWorkers: 3 });
    expect(job.state).toBe('QUEUED');
    expect((await c.jobs()).map((j) => j.id)).toContain(job.id);
    await expectApiError(c.model(job.id), 409, 'MODEL_NOT_READY');
    expect((await c.cancel(job.id)).state).toBe('CANCELLED');
    await expectApiError(c.job('nope'), 404, 'JOB_NOT_FOUND');
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    for (const name of ['gradfleet_samples_total', 'gradfleet_steps_total', 'gradfleet_step_duration_seconds', 'gradfleet_workers_connected']) {
      expect(metrics).toContain(`# TYPE ${name}`);
    }
  });
});
