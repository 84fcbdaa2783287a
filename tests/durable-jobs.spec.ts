import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { JobSpecInput, JobStatus, SamplerState } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';
import { freePort } from './helpers/prometheus.js';

const topology = dropoutFreeMlp;

const popcount = (bytes: Uint8Array) => bytes.reduce((n, b) => n + b.toString(2).replaceAll('0', '').length, 0);

async function until(
  client: TestCluster['client'],
  id: string,
  ok: (j: JobStatus) => boolean,
  timeoutMs = 120_000,
): Promise<JobStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const j = await client.job(id).catch(() => undefined);
    if (j && ok(j)) return j;
    if (Date.now() > deadline)
      throw new Error(`timed out; last status: ${JSON.stringify(j?.state)} step ${j?.progress.step}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('durable jobs', () => {
  let data: SmallMnist;
  let spec: JobSpecInput;
  const clusters: TestCluster[] = [];
  const cluster = () => {
    const c = new TestCluster();
    clusters.push(c);
    return c;
  };

  beforeAll(async () => {
    data = await writeSmallMnist(6000, 1000);
    spec = {
      model: { topology },
      dataset: data.dataset,
      epochs: 2,
      batchSize: 32,
      seed: 3,
      checkpointEverySteps: 40,
      minWorkers: 2,
    };
  });
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.stop()));
  });

  it('survives a coordinator SIGKILL mid-epoch: resumes from its checkpoint with an exact audit and the same accuracy', async () => {
    const plain = cluster();
    await plain.startCoordinator();
    await plain.startWorkers(2);
    const reference = await plain.client.waitForJob((await plain.client.submit(spec)).id);
    expect(reference.state).toBe('SUCCEEDED');

    const c = cluster();
    const port = await freePort();
    // On the data plane: replicas count applied updates from the checkpoint's step after the restart.
    const first = await c.startCoordinator(['--reducer-threads', '1'], port);
    await c.startWorkers(2);
    const job = await c.client.submit(spec);
    const before = await until(
      c.client,
      job.id,
      (j) => (j.checkpoint?.step ?? 0) >= 80 && j.progress.epoch === 0 && j.progress.step > 90,
    );
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    // The checkpoint resumed from records which examples were trained (not just the cursor),
    // so the audit below counts what was really trained before the kill.
    const ckptDir = join(c.dataDir, 'jobs', job.id, 'checkpoints');
    const newest = readdirSync(ckptDir)
      .filter((n) => n.startsWith('step-'))
      .sort()
      .at(-1)!;
    const saved = JSON.parse(readFileSync(join(ckptDir, newest, 'state.json'), 'utf8')) as {
      sampler: SamplerState;
    };
    expect(saved.sampler.epoch).toBe(0);
    expect(popcount(Buffer.from(saved.sampler.used!, 'base64'))).toBe(
      saved.sampler.cursor - saved.sampler.retry.length,
    );
    await c.startCoordinator(['--reducer-threads', '1'], port); // same data dir, same port: the workers reconnect
    const done = await c.client.waitForJob(job.id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.events.map((e) => e.state)).toContain('PAUSED');
    expect(done.events.find((e) => e.state === 'PAUSED')!.reason).toMatch(/coordinator restarted/);
    const logs = (await c.client.logs(job.id)).map((l) => l.line).join('\n');
    expect(logs).toMatch(/resuming from the checkpoint at step (\d+)/);
    expect(Number(/resuming from the checkpoint at step (\d+)/.exec(logs)![1])).toBeLessThanOrEqual(
      before.progress.step,
    );
    // Counted from the checkpoint's bitmap plus the steps after it: a resume that skipped or
    // repeated examples (wrong cursor, lost retry queue) shows up as missing or duplicated.
    expect(done.history.map((h) => h.audit)).toEqual(reference.history.map((h) => h.audit));
    expect(done.history.every((h) => h.audit.ok && h.audit.seen === 5400)).toBe(true);
    expect(Math.abs(done.result!.testAccuracy! - reference.result!.testAccuracy!)).toBeLessThanOrEqual(0.005);
    expect(done.result!.steps).toBe(reference.result!.steps);
  });

  it('cancel stops a running job within one step and frees its workers; two jobs queued behind it both succeed', async () => {
    const c = cluster();
    await c.startCoordinator();
    await c.startWorkers(2);
    const long = await c.client.submit({ ...spec, epochs: 100 });
    const second = await c.client.submit({ ...spec, epochs: 1 });
    const third = await c.client.submit({ ...spec, epochs: 1 });
    const running = await until(c.client, long.id, (j) => j.progress.step >= 20);
    expect((await c.client.job(second.id)).state).toBe('QUEUED');
    const cancelled = await c.client.cancel(long.id);
    const stepAtCancel = cancelled.progress.step;
    const ended = await c.client.waitForJob(long.id, undefined, 20);
    expect(ended.state).toBe('CANCELLED');
    expect(ended.progress.step).toBeLessThanOrEqual(Math.max(stepAtCancel, running.progress.step) + 1);
    const s2 = await c.client.waitForJob(second.id);
    const s3 = await c.client.waitForJob(third.id);
    expect([s2.state, s3.state]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(new Date(s3.startedAt!).getTime()).toBeGreaterThanOrEqual(new Date(s2.finishedAt!).getTime());
  });
});
