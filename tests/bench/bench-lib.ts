/**
 * Shared pieces of the benchmark suite (`npm run bench`): results are written to
 * bench/results/<name>.json, each row a figure measured side by side with its baseline
 * in the same run, reported as a ratio against its target.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const RESULTS = join(ROOT, 'bench', 'results');
export const QUICK = process.argv.includes('--quick');

export interface Row {
  /** What was measured, e.g. "N=8, 25M floats". */
  case: string;
  /** The measured figure and its baseline, in `unit`. */
  value: number;
  baseline: number;
  unit: string;
  /** value / baseline (or baseline / value where smaller is better: see `lowerIsBetter`). */
  ratio: number;
  /** The target for `ratio`, when the issue sets one. */
  target?: number;
  /** True when a smaller ratio is better (wire bytes). */
  lowerIsBetter?: boolean;
  note?: string;
}

export interface BenchResult {
  name: string;
  title: string;
  baselineName: string;
  quick: boolean;
  date: string;
  machine: string;
  rows: Row[];
  notes?: string[];
  /** Raw measurements behind the rows, for whoever reads the JSON. */
  data?: unknown;
}

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

export function verdict(r: Row): string {
  if (r.target === undefined) return '';
  const met = r.lowerIsBetter ? r.ratio <= r.target : r.ratio >= r.target;
  if (met) return 'met';
  const missPct = r.lowerIsBetter ? (r.ratio / r.target - 1) * 100 : (1 - r.ratio / r.target) * 100;
  return `missed by ${missPct.toFixed(0)} %`;
}

export function saveResult(result: Omit<BenchResult, 'date' | 'machine' | 'quick'>): BenchResult {
  const full: BenchResult = { ...result, quick: QUICK, date: new Date().toISOString(), machine: machine() };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, `${result.name}${QUICK ? '.quick' : ''}.json`), JSON.stringify(full, null, 2) + '\n');
  console.log(markdown(full));
  return full;
}

const fmt = (x: number | null) =>
  x === null || Number.isNaN(x)
    ? '–'
    : Math.abs(x) >= 100
      ? x.toFixed(0)
      : Math.abs(x) >= 1
        ? x.toFixed(2)
        : x.toPrecision(3);

export function markdown(r: BenchResult): string {
  const lines = [
    `### ${r.title}${r.quick ? ' (quick)' : ''}`,
    '',
    `| case | measured | ${r.baselineName} | ratio | target | |`,
    '|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    const target = row.target === undefined ? '' : `${row.lowerIsBetter ? '≤' : '≥'} ${row.target}`;
    lines.push(
      `| ${row.case} | ${fmt(row.value)} ${row.unit} | ${fmt(row.baseline)} ${row.unit} | ${row.ratio.toFixed(3)} | ${target} | ${verdict(row)}${row.note ? ` ${row.note}` : ''} |`,
    );
  }
  for (const n of r.notes ?? []) lines.push('', n);
  return lines.join('\n') + '\n';
}

/** Runs a bench script in its own process (`node --import tsx`), returning its stdout; SIGTERM after `timeoutMs`. */
export function runScript(script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, timeoutMs = 0): string {
  return execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'tests', 'bench', script), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, ...env },
    timeout: timeoutMs,
  });
}

/**
 * Starts a bench helper process; resolves once it prints its first line (e.g. a port).
 * `onLine` sees every later line as it comes; `signal` sends the helper a signal.
 */
export function startHelper(
  script: string,
  args: string[],
  onLine: (line: string) => void = () => undefined,
): Promise<{ line: string; done: Promise<string>; kill: () => void; signal: (s: NodeJS.Signals) => void }> {
  const nodeArgs = process.env['GRADFLEET_NODE_ARGS']?.split(' ').filter(Boolean) ?? []; // e.g. --cpu-prof
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', join(ROOT, 'tests', 'bench', script), ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  let seen = 0;
  let exited = false;
  const done = new Promise<string>((res, rej) =>
    child.on('exit', (code) => {
      exited = true;
      return code === 0 ? res(out) : rej(new Error(`${script} exited with ${code}`));
    }),
  );
  return new Promise((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      const first = out.length === 0 || !out.includes('\n');
      out += d.toString();
      if (first && out.includes('\n'))
        res({
          line: out.split('\n')[0]!,
          done,
          kill: () => {
            if (!exited) child.kill('SIGKILL');
          },
          signal: (s) => {
            if (!exited) child.kill(s);
          },
        });
      const lines = out.split('\n');
      for (let i = Math.max(1, seen); i < lines.length - 1; i++) onLine(lines[i]!);
      seen = Math.max(seen, lines.length - 1);
    });
    done.catch(rej);
  });
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
};
