/**
 * `npm run bench [-- --quick]`: every benchmark, one after the other, each in its own
 * process; writes bench/results/<name>.json and bench/results/summary.md (the tables
 * pasted into docs/benchmarks.md). --quick runs small sizes only (CI runs it for breakage;
 * its timings mean nothing).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QUICK, RESULTS, machine, markdown, runScript, type BenchResult } from './bench-lib.js';

const suites = ['aggregation', 'coordinator-overhead', 'e2e-overhead', 'scaling', 'wire', 'reference-recipe'];
const only = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const t0 = performance.now();
const sections: string[] = [];
for (const name of suites) {
  if (only && !only.includes(name)) continue;
  const s0 = performance.now();
  console.error(`\n== ${name} ==`);
  runScript(`${name}.ts`, QUICK ? ['--quick'] : []);
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
