import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cluster.js';
import { fakeNvidiaSmi } from './helpers/fake-nvidia-smi.js';

const CLI = join(ROOT, 'apps', 'cli', 'dist', 'main.js');
/** Nothing listens here: the workers must fail before they ever connect. */
const NOWHERE = 'ws://127.0.0.1:9';

function runCli(args: string[], path: string): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: path, GRADFLEET_LOG_LEVEL: 'info' },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

/** The exit code, or a failure naming what ran past `timeoutMs` (a supervisor restarting forever). */
function exitOf(c: ChildProcess, output: () => string, timeoutMs = 90_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`still running after ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    c.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? 128);
    });
  });
}

describe('gradfleet worker --gpus: configuration failures are fatal, not restarted (fake nvidia-smi)', () => {
  const path = `${fakeNvidiaSmi(3)}:${process.env['PATH']}`;

  it('--backend tensorflow without a TensorFlow binding: each GPU worker starts once, the supervisor exits 3 with the reason', async () => {
    const require = createRequire(import.meta.url);
    // Precondition: the test relies on the repository's dependencies not including a TensorFlow binding.
    expect(() => require.resolve('@tensorflow/tfjs-node-gpu'), 'tfjs-node-gpu is installed here').toThrow();
    expect(() => require.resolve('@tensorflow/tfjs-node'), 'tfjs-node is installed here').toThrow();
    const { child, output } = runCli(
      ['worker', '--gpus', 'all', '--backend', 'tensorflow', '--restart-delay-ms', '50', '--coordinator', NOWHERE],
      path,
    );
    expect(await exitOf(child, output, 45_000)).toBe(3);
    const log = output();
    expect(log.match(/worker for GPU \d started/g)?.sort()).toEqual([
      'worker for GPU 0 started',
      'worker for GPU 1 started',
      'worker for GPU 2 started',
    ]);
    expect(log).not.toMatch(/exited; restarting/);
    expect(log).toMatch(/no TensorFlow binding could be loaded/);
    expect(log).toMatch(/worker for GPU 0 cannot load the requested backend \(exit 3\); not restarting it/);
    expect(log).toMatch(/no GPU worker left to run: every one cannot load the requested backend; exiting with code 3/);
  }, 120_000);

  it('an unreadable --token-file exits 4 and names the file, before any GPU worker starts', async () => {
    const missing = join(ROOT, 'no-such-dir', 'worker-token');
    const { child, output } = runCli(
      ['worker', '--gpus', 'all', '--token-file', missing, '--coordinator', NOWHERE],
      path,
    );
    expect(await exitOf(child, output)).toBe(4);
    expect(output()).toContain(`--token-file ${missing} cannot be read (ENOENT)`);
    expect(output()).not.toMatch(/worker for GPU \d started/);
  }, 60_000);
});
