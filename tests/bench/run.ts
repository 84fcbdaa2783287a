/**
 * `npm run bench [-- --quick] [--only=a,b] [--gpu]`: every benchmark, one after the other,
 * each in its own process; writes bench/results/<name>.json and bench/results/summary.md
 * (the tables pasted into docs/benchmarks.md). --quick runs small sizes only (CI runs it
 * for breakage; its timings mean nothing). The `gpu` suite runs where `nvidia-smi` lists a
 * GPU, or with --gpu / --only=gpu (it then says why it skipped, if it cannot run). A
 * suite that runs past its deadline is killed and reported, so a hang cannot stall the run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QUICK, RESULTS, machine, markdown, runScript, type BenchResult } from './bench-lib.js';

const suites = [
  'aggregation',
  'coordinator-overhead',
  'data-plane',
  'e2e-overhead',
  'scaling',
  'wire',
  'data',
  'reference-recipe',
  'reference-seeds',
  'gpu',
];
const only = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
/** Whether `nvidia-smi` lists a GPU here. */
const hasGpu = () => {
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes(
      'GPU',
    );
  } catch {
    return false;
  }
};
const wanted = (name: string) =>
  only ? only.includes(name) : name !== 'gpu' || process.argv.includes('--gpu') || hasGpu();
/** Longest a suite may run, in ms (the slowest full suite takes about 20 minutes on 2 cores). */
const SUITE_DEADLINE_MS = (QUICK ? 5 : 60) * 60_000;
const failed: string[] = [];
const t0 = performance.now();
const sections: string[] = [];
for (const name of suites) {
  if (!wanted(name)) continue;
  const s0 = performance.now();
  console.error(`\n== ${name} ==`);
  try {
    runScript(`${name}.ts`, QUICK ? ['--quick'] : [], {}, SUITE_DEADLINE_MS);
  } catch (err) {
    const timedOut = (err as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    console.error(
      `== ${name} FAILED: ${timedOut ? `still running after ${SUITE_DEADLINE_MS / 60_000} min: killed (watchdog)` : (err as Error).message.split('\n')[0]}`,
    );
    failed.push(name);
    continue;
  }
  console.error(`== ${name}: ${((performance.now() - s0) / 1000).toFixed(0)} s`);
}
// The summary covers every suite's latest result (a run with --only refreshes just those).
for (const name of suites) {
  const file = join(RESULTS, `${name}${QUICK ? '.quick' : ''}.json`);
  if (existsSync(file)) sections.push(markdown(JSON.parse(readFileSync(file, 'utf8')) as BenchResult));
}
const summary = `Machine: ${machine()}. ${new Date().toISOString().slice(0, 10)}. This run: ${((performance.now() - t0) / 1000).toFixed(0)} s.\n\n${sections.join('\n')}`;
writeFileSync(join(RESULTS, `summary${QUICK ? '.quick' : ''}.md`), summary);
console.log(summary);
if (failed.length) {
  console.error(`failed suites: ${failed.join(', ')}`);
  process.exit(1);
}
