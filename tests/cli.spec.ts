import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpecInput, JobStatus, WorkerInfo } from '@gradfleet/core';
import { ROOT, TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

const CLI = join(ROOT, 'apps', 'cli', 'dist', 'main.js');

/** Runs `gradfleet <args> --coordinator <url>` as a real process; never throws on a non-zero exit. */
async function gradfleet(url: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args, '--coordinator', url], {
      timeout: 60_000,
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout, err: err.stderr };
  }
}

async function until(c: TestCluster, id: string, ok: (j: JobStatus) => boolean): Promise<JobStatus> {
  for (let i = 0; i < 3000; i++) {
    const j = await c.client.job(id);
    if (ok(j)) return j;
    await new Promise((r) => setTimeout(r, 30));
  }
  throw new Error(`job ${id} never got there`);
}

describe('the gradfleet CLI against a real coordinator', () => {
  const cluster = new TestCluster();
  let spec: JobSpecInput;
  let finished: JobStatus;

  beforeAll(async () => {
    const data = await writeSmallMnist(1000, 200);
    spec = {
      name: 'cli-small',
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 1,
      batchSize: 32,
      seed: 4,
      minWorkers: 2,
      maxWorkers: 2,
      checkpointEverySteps: 0,
    };
    await cluster.startCoordinator();
    await cluster.startWorkers(2);
    finished = await cluster.client.waitForJob((await cluster.client.submit(spec)).id);
    expect(finished.state, finished.reason).toBe('SUCCEEDED');
  });
  afterAll(() => cluster.stop());

  it('jobs: one line per job with id, state and name; --state filters; --json parses to the API list', async () => {
    const text = await gradfleet(cluster.url, 'jobs');
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(new RegExp(`^${finished.id}  SUCCEEDED  \\S+  cli-small  test_acc \\d+\\.\\d\\d%$`, 'm'));
    const json = await gradfleet(cluster.url, 'jobs', '--json');
    const list = JSON.parse(json.out) as JobStatus[];
    expect(list.map((j) => [j.id, j.state])).toEqual([[finished.id, 'SUCCEEDED']]);
    expect(list[0]!.history[0]!.audit).toEqual(finished.history[0]!.audit);
    const none = await gradfleet(cluster.url, 'jobs', '--state', 'running');
    expect(none.out.trim()).toBe('no jobs');
    expect(JSON.parse((await gradfleet(cluster.url, 'jobs', '--state', 'failed', '--json')).out)).toEqual([]);
  });

  it('status: the cluster at a glance, one job in detail, and both as --json', async () => {
    const text = await gradfleet(cluster.url, 'status');
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/^cluster {2}\d+ samples\/s {2}workers: 2 \(2 idle\) {2}jobs: 1 succeeded$/m);
    expect(text.out).toMatch(/^ {2}w\d+ {2}test-1 {2}IDLE {2}wasm/m);
    expect(text.out).toMatch(/^ {2}w\d+ {2}test-2 {2}IDLE {2}wasm/m);
    const all = JSON.parse((await gradfleet(cluster.url, 'status', '--json')).out) as {
      workers: WorkerInfo[];
      jobs: JobStatus[];
    };
    expect(all.workers.map((w) => w.name).sort()).toEqual(['test-1', 'test-2']);
    expect(all.jobs.map((j) => j.id)).toEqual([finished.id]);

    const one = await gradfleet(cluster.url, 'status', finished.id);
    expect(one.out).toContain(`job ${finished.id}: SUCCEEDED`);
    expect(one.out).toMatch(/sample audit {4}every example exactly once per epoch/);
    expect(one.out).toMatch(new RegExp(`training time {3}\\d+\\.\\d s \\(${finished.result!.steps} steps\\)`));
    const detail = JSON.parse((await gradfleet(cluster.url, 'status', finished.id, '--json')).out) as JobStatus;
    expect(detail).toMatchObject({ id: finished.id, state: 'SUCCEEDED', result: { steps: finished.result!.steps } });

    const missing = await gradfleet(cluster.url, 'status', 'no-such-job');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^gradfleet status failed: /);
  });

  it('logs: the job log as text lines and as JSON lines', async () => {
    const lines = (await cluster.client.logs(finished.id)).map((l) => l.line);
    const text = await gradfleet(cluster.url, 'logs', finished.id);
    expect(text.code, text.err).toBe(0);
    const printed = text.out.trimEnd().split('\n');
    expect(printed.map((l) => l.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}/, ''))).toEqual(lines);
    expect(text.out).toMatch(/epoch 1\/1: loss \d\.\d{4} accuracy \d\.\d{4} .*audit ok/);
    const json = (await gradfleet(cluster.url, 'logs', finished.id, '--json')).out.trimEnd().split('\n');
    expect(json.map((l) => (JSON.parse(l) as { line: string }).line)).toEqual(lines);
  });

  it('cancel: a queued job at once, a running one within a step (text and --json)', async () => {
    const long = await cluster.client.submit({ ...spec, name: 'cli-long', epochs: 100 });
    const queued = await cluster.client.submit({ ...spec, name: 'cli-queued' });
    await until(cluster, long.id, (j) => j.progress.step >= 5);
    const running = await gradfleet(cluster.url, 'jobs', '--state', 'running');
    expect(running.out).toMatch(new RegExp(`^${long.id}  RUNNING {4}\\S+  cli-long$`, 'm'));

    const q = await gradfleet(cluster.url, 'cancel', queued.id);
    expect(q.code, q.err).toBe(0);
    expect(q.out.trim()).toBe(`job ${queued.id} CANCELLED`);
    const r = await gradfleet(cluster.url, 'cancel', long.id, '--json');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ id: long.id });
    const ended = await cluster.client.waitForJob(long.id);
    expect(ended.state).toBe('CANCELLED');
    expect((await cluster.client.job(queued.id)).state).toBe('CANCELLED');
    const cancelled = JSON.parse((await gradfleet(cluster.url, 'jobs', '--state', 'cancelled', '--json')).out) as {
      id: string;
    }[];
    expect(cancelled.map((j) => j.id).sort()).toEqual([long.id, queued.id].sort());
  });
});
