/**
 * `npm run bench [-- --quick]`: every benchmark, one after the other, each in its own
 * process; writes bench/results/<name>.json and bench/results/summary.md (the tables
 * pasted into docs/benchmarks.md). --quick runs small sizes only (CI runs it for breakage;
 * its timings mean nothing).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QUICK, RESULTS, machine, markdown, runScript, type BenchResult } from './bench-lib.js';

const suites = ['aggregation', 'coordinator-overhead', 'e2e-overhead', 'scaling', 'wire', 'reference-recipe'];
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const t0 = performance.now();
const sections: string[] = [];
for (const name of suites) {
  if (only && !only.includes(name)) continue;
  const s0 = performance.now();
  console.error(`\n== ${name} ==`);
  runScript(`${name}.ts`, QUICK ? ['--quick'] : []);
  const result = JSON.parse(readFileSync(join(RESULTS, `${name}${QUICK ? '.quick' : ''}.json`), 'utf8')) as BenchResult;
  sections.push(markdown(result));
  console.error(`== ${name}: ${((performance.now() - s0) / 1000).toFixed(0)} s`);
}
const summary = `Machine: ${machine()}. ${new Date().toISOString().slice(0, 10)}. Total ${((performance.now() - t0) / 1000).toFixed(0)} s.\n\n${sections.join('\n')}`;
writeFileSync(join(RESULTS, `summary${QUICK ? '.quick' : ''}.md`), summary);
console.log(summary);
