import { readFile } from 'node:fs/promises';
import { ApiError, GradfleetClient, type JobSpecInput, type JobStatus } from '@gradfleet/core';
import { JobProgressView, formatReport } from '../progress.js';

function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const issues = err.issues.map((i) => `\n  - ${i.path || '(root)'}: ${i.message}`).join('');
    return `${err.code}: ${err.message}${issues}`;
  }
  return (err as Error).message;
}

/** `gradfleet submit <job.json>`: queues a job, optionally following it to the end. */
export async function submit(file: string, opts: { coordinator: string; wait?: boolean }): Promise<number> {
  const client = new GradfleetClient({ url: opts.coordinator });
  try {
    let spec: JobSpecInput;
    try {
      spec = JSON.parse(await readFile(file, 'utf8')) as JobSpecInput;
    } catch (err) {
      throw new Error(`cannot read job spec ${file}: ${(err as Error).message}`);
    }
    const job = await client.submit(spec);
    console.log(`job ${job.id} ${job.state}`);
    if (!opts.wait) return 0;
    const view = new JobProgressView();
    const done = await client.waitForJob(job.id, (j) => view.update(j));
    view.stopBar();
    console.log(formatReport(done, []));
    return done.state === 'SUCCEEDED' ? 0 : 1;
  } catch (err) {
    console.error(`gradfleet submit failed: ${describeError(err)}`);
    return 1;
  }
}

function line(j: JobStatus): string {
  const p = j.progress;
  const acc = j.result?.testAccuracy === undefined ? '' : `  test_acc ${(j.result.testAccuracy * 100).toFixed(2)}%`;
  const where = j.state === 'RUNNING' ? `  epoch ${p.epoch + 1}/${p.epochs}  ${p.samplesInEpoch}/${p.epochSize}  ${Math.round(p.samplesPerSecond)} samples/s` : '';
  return `${j.id}  ${j.state.padEnd(9)}${where}${acc}${j.reason ? `  (${j.reason})` : ''}`;
}

/** `gradfleet status [job]`: workers and jobs, or one job in detail. */
export async function status(jobId: string | undefined, opts: { coordinator: string; json?: boolean }): Promise<number> {
  const client = new GradfleetClient({ url: opts.coordinator });
  try {
    if (jobId) {
      const job = await client.job(jobId);
      console.log(opts.json ? JSON.stringify(job, null, 2) : `${line(job)}\n${formatReport(job, [])}`);
      return 0;
    }
    const [workers, jobs] = await Promise.all([client.workers(), client.jobs()]);
    if (opts.json) {
      console.log(JSON.stringify({ workers, jobs }, null, 2));
      return 0;
    }
    console.log(`workers (${workers.length}):`);
    for (const w of workers) console.log(`  ${w.id}  ${w.name}  ${w.state}  ${w.backend}${w.device ? ` ${w.device}` : ''}${w.jobId ? `  job ${w.jobId}` : ''}`);
    console.log(`jobs (${jobs.length}):`);
    for (const j of jobs) console.log(`  ${line(j)}`);
    return 0;
  } catch (err) {
    console.error(`gradfleet status failed: ${describeError(err)}`);
    return 1;
  }
}
