import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, TestCluster } from './helpers/cluster.js';
import { fakeNvidiaSmi } from './helpers/fake-nvidia-smi.js';
import { freePort } from './helpers/prometheus.js';

const CLI = join(ROOT, 'apps', 'cli', 'dist', 'main.js');

const childrenOf = (pid: number): number[] => {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
};
const envOf = (pid: number): Record<string, string> =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function runCli(args: string[], path: string): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: path, GRADFLEET_LOG_LEVEL: 'info' },
  });
}

const exitOf = (c: ChildProcess) =>
  new Promise<number>((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code ?? 128))));

describe('gradfleet worker --gpus (fake nvidia-smi on PATH)', () => {
  const cluster = new TestCluster();
  const fakeDir = fakeNvidiaSmi(3);
  const path = `${fakeDir}:${process.env['PATH']}`;
  beforeAll(() => cluster.startCoordinator().then(() => undefined));
  afterAll(() => cluster.stop());

  it('starts one pinned worker per GPU, restarts a killed one, serves DCGM-named GPU metrics, and stops all on SIGTERM', async () => {
    const port = await freePort();
    const cli = runCli(
      [
        'worker',
        '--gpus',
        'all',
        '--coordinator',
        cluster.wsUrl,
        '--backend',
        'wasm',
        '--name',
        'fleet',
        '--restart-delay-ms',
        '200',
        '--metrics-port',
        String(port),
      ],
      path,
    );
    let log = '';
    cli.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const workers = await cluster.client.waitForWorkers(3, 60_000);
      expect(workers.map((w) => w.name).sort()).toEqual(['fleet-gpu0', 'fleet-gpu1', 'fleet-gpu2']);

      const supervisor = await until('the supervisor process', () => childrenOf(cli.pid!)[0]);
      const pids = await until('three worker processes', () =>
        childrenOf(supervisor).length === 3 ? childrenOf(supervisor) : undefined,
      );
      const pinned = pids.map((p) => envOf(p)).map((e) => [e['CUDA_VISIBLE_DEVICES'], e['TF_FORCE_GPU_ALLOW_GROWTH']]);
      expect(pinned.sort()).toEqual([
        ['0', 'true'],
        ['1', 'true'],
        ['2', 'true'],
      ]);

      // Per-GPU metrics under the DCGM exporter's names, each worker on base port + ordinal.
      const text = await until('GPU metrics', async () => {
        const t = await fetch(`http://127.0.0.1:${port + 1}/metrics`).then(
          (r) => r.text(),
          () => '',
        );
        return t.includes('DCGM_FI_DEV_GPU_UTIL') ? t : undefined;
      });
      expect(text).toContain('DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-fake-1",modelName="NVIDIA Fake H200"} 41');
      expect(text).toContain('DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-fake-1",modelName="NVIDIA Fake H200"} 1001');

      // SIGKILL the worker of GPU 1: it comes back, pinned to the same GPU, and re-registers.
      const victim = pids.find((p) => envOf(p)['CUDA_VISIBLE_DEVICES'] === '1')!;
      process.kill(victim, 'SIGKILL');
      const replacement = await until('a restarted worker for GPU 1', () =>
        childrenOf(supervisor).find((p) => !pids.includes(p) && envOf(p)['CUDA_VISIBLE_DEVICES'] === '1'),
      );
      expect(replacement).not.toBe(victim);
      await until(
        'GPU 1 registered again',
        async () =>
          (await cluster.client.workers()).some(
            (w) => w.name === 'fleet-gpu1' && w.id !== workers.find((x) => x.name === 'fleet-gpu1')!.id,
          ) || undefined,
      );
      expect(log).toMatch(/worker for GPU 1 exited; restarting/);

      // SIGTERM: every worker stops, then the supervisor and the CLI exit 0.
      const all = [supervisor, ...childrenOf(supervisor)];
      cli.kill('SIGTERM');
      expect(await exitOf(cli)).toBe(0);
      for (const p of all) expect(() => process.kill(p, 0), `process ${p} still alive`).toThrow();
    } finally {
      cli.kill('SIGKILL');
    }
  });

  it('refuses GPUs that do not exist and a machine without nvidia-smi, with exit code 2', async () => {
    const bad = runCli(['worker', '--gpus', '0,5', '--coordinator', cluster.wsUrl], path);
    let err = '';
    bad.stdout!.on('data', (d: Buffer) => (err += d.toString()));
    bad.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    expect(await exitOf(bad)).toBe(2);
    expect(err).toMatch(/no GPU 5 \(installed: 0, 1, 2\)/);

    const none = runCli(['worker', '--gpus', 'all', '--coordinator', cluster.wsUrl], '/usr/bin:/bin');
    let err2 = '';
    none.stdout!.on('data', (d: Buffer) => (err2 += d.toString()));
    none.stderr!.on('data', (d: Buffer) => (err2 += d.toString()));
    expect(await exitOf(none)).toBe(2);
    expect(err2).toMatch(/nvidia-smi not found on PATH/);
  });
});
