import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './cluster.js';

/** Runs the built `gradfleet` CLI; `out` is its stdout and stderr together, as a user sees them. */
export function runCli(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'apps/cli/dist/main.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
}
