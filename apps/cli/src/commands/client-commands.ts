import { readFileSync } from 'node:fs';
import { GradfleetClient, type JobStatus, type JobSummary, type WorkerStats } from '@gradfleet/core/client';
import { formatMetrics, formatReport } from '../progress.js';
import { describeError } from './job-commands.js';
import { print, printError } from '../terminal.js';

/** One job in one line: state, progress while running (with the current learning rate), results, reason. */
export function line(j: JobStatus | JobSummary): string {
  const p = j.progress;
  const h = j.history.at(-1);
  const acc = j.result?.testAccuracy === undefined ? '' : `  test_acc ${(j.result.testAccuracy * 100).toFixed(2)}%`;
  const pct = p.epochSize ? ` ${Math.round((p.samplesInEpoch / p.epochSize) * 100)}%` : '';
  const where =
    j.state === 'RUNNING'
      ? `  epoch ${p.epoch + 1}/${p.epochs}${pct}  ${Math.round(p.samplesPerSecond)} samples/s${p.learningRate === undefined ? '' : `  lr ${p.learningRate.toPrecision(3)}`}`
      : '';
  const val =
    (h?.valAccuracy === undefined ? '' : `  val_acc ${(h.valAccuracy * 100).toFixed(2)}%`) +
    formatMetrics('val_', h?.valMetrics) +
    formatMetrics('test_', j.result?.testMetrics);
  return `${j.id}  ${j.state.padEnd(9)}${where}${val}${acc}${j.reason ? `  (${j.reason})` : ''}`;
}

/** The step's phases (moving averages, ms); data wait once the coordinator measures it. */
export function timing(j: JobStatus | JobSummary): string {
  const t = j.timing;
  if (!t) return '';
  const f = (x: number) => x.toFixed(1);
  const wait = t.dataWaitMs === undefined ? '' : `data wait ${f(t.dataWaitMs)}, `;
  return `      step ${f(t.stepMs)} ms: ${wait}compute ${f(t.computeMs)}, apply ${f(t.applyMs)}, upload ${f(t.uploadMs)}, straggler wait ${f(t.stragglerWaitMs)}, aggregate ${f(t.aggregateMs)}, broadcast ${f(t.broadcastMs)}`;
}

/** A worker's live figures for `gradfleet status`, led by two spaces; '' before it reported any. */
export function workerFigures(s: WorkerStats | undefined): string {
  if (!s) return '';
  const cache =
    s.chunkCacheHitRatio === undefined ? '' : `  chunk cache ${(s.chunkCacheHitRatio * 100).toFixed(1)}% hits`;
  return `  ${Math.round(s.samplesPerSecond)} samples/s  compute ${s.meanComputeMs.toFixed(1)} ms/step  straggler in ${s.stragglerEvents} of ${s.steps} steps${cache}`;
}

function countBy<T extends string>(items: { state: T }[]): string {
  const counts = new Map<string, number>();
  for (const i of items) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${v} ${k.toLowerCase()}`).join(', ') || 'none';
}

/** `gradfleet status [job]`: the headline numbers of the cluster, or one job in detail. */
export async function status(
  jobId: string | undefined,
  opts: { coordinator: string; token?: string; ca?: string; json?: boolean },
): Promise<number> {
  const client = new GradfleetClient({
    url: opts.coordinator,
    token: opts.token,
    ca: opts.ca ? readFileSync(opts.ca) : undefined,
  });
  try {
    if (jobId) {
      const job = await client.job(jobId);
      print(
        opts.json
          ? JSON.stringify(job, null, 2)
          : [line(job), timing(job), formatReport(job, [])].filter(Boolean).join('\n'),
      );
      return 0;
    }
    const [workers, jobs] = await Promise.all([client.workers(), client.jobs()]);
    if (opts.json) {
      print(JSON.stringify({ workers, jobs }, null, 2));
      return 0;
    }
    const rate = workers.reduce((n, w) => n + (w.stats?.samplesPerSecond ?? 0), 0);
    print(
      `cluster  ${Math.round(rate)} samples/s  workers: ${workers.length} (${countBy(workers)})  jobs: ${countBy(jobs)}`,
    );
    print('workers');
    for (const w of workers) {
      const live = workerFigures(w.stats);
      print(
        `  ${w.id}  ${w.name}  ${w.state}  ${w.backend}${w.device ? ` (${w.device})` : ''}${live}${w.jobId ? `  job ${w.jobId}` : ''}`,
      );
    }
    print('jobs');
    for (const j of jobs) {
      print(`  ${line(j)}`);
      if (j.state === 'RUNNING' && j.timing) print(timing(j));
    }
    return 0;
  } catch (err) {
    printError(`gradfleet status failed: ${describeError(err)}`);
    return 1;
  }
}
