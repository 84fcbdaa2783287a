/**
 * Reference recipe, measured side by side in one run: single-process `model.fit` and
 * `gradfleet up --workers 2` (wasm backend, 5 epochs, global batch 32), one after the
 * other on the same machine. Writes tests/bench/results/reference-recipe.json and prints
 * a markdown table for docs/benchmarks.md.
 *
 *   npm run bench:reference            (about 4 minutes on 2 cores)
 *   npm run bench:reference -- --epochs 1
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const epochsArg = process.argv.indexOf('--epochs');
const epochs = epochsArg > 0 ? Number(process.argv[epochsArg + 1]) : 5;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024 });
}

console.error(`single-process model.fit, ${epochs} epochs (wasm)...`);
const single = JSON.parse(run(process.execPath, ['--import', 'tsx', 'tests/bench/single-process-fit.ts', 'wasm', String(epochs)]).trim().split('\n').at(-1)!) as {
  wallTimeMs: number; samplesPerSecond: number; testAccuracy: number;
};

console.error(`gradfleet up --workers 2, ${epochs} epochs (wasm)...`);
const t0 = performance.now();
const out = run(process.execPath, ['apps/cli/dist/main.js', 'up', '--workers', '2', '--backend', 'wasm', '--epochs', String(epochs)]);
const totalMs = performance.now() - t0;
const num = (re: RegExp) => Number(re.exec(out)?.[1]);
const cluster = {
  testAccuracy: num(/test accuracy\s+([\d.]+)%/) / 100,
  wallTimeMs: num(/training time\s+([\d.]+) s/) * 1000,
  samplesPerSecond: num(/throughput\s+(\d+) samples\/s/),
  commandWallTimeMs: totalMs,
};

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const result = { date: new Date().toISOString(), machine, epochs, single, cluster, speedup: single.wallTimeMs / cluster.wallTimeMs };
mkdirSync(join(ROOT, 'tests/bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'tests/bench/results/reference-recipe.json'), JSON.stringify(result, null, 2) + '\n');

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
console.log(`Reference recipe (${epochs} epochs, batch 32, Adam, wasm) on ${machine}, ${result.date.slice(0, 10)}\n`);
console.log('| run | test accuracy | training wall time | samples/s | vs single process |');
console.log('|---|---|---|---|---|');
console.log(`| single-process \`model.fit\` | ${pct(single.testAccuracy)} | ${(single.wallTimeMs / 1000).toFixed(1)} s | ${Math.round(single.samplesPerSecond)} | 1.00× |`);
console.log(`| \`gradfleet up --workers 2\` | ${pct(cluster.testAccuracy)} | ${(cluster.wallTimeMs / 1000).toFixed(1)} s | ${Math.round(cluster.samplesPerSecond)} | ${result.speedup.toFixed(2)}× |`);
