import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ALLOCATOR_ENV } from '@gradfleet/core/client';

export type AppName = 'coordinator' | 'worker';

/**
 * The CLI runs the coordinator and worker apps as their own processes (apps never import
 * each other; a worker needs its own core anyway). Their entry points sit beside this
 * app's build output in the workspace.
 */
export function appEntry(app: AppName): string {
  const entry = fileURLToPath(new URL(`../../${app}/dist/main.js`, import.meta.url));
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build the workspace first (npm run build)`);
  return entry;
}

export function spawnApp(
  app: AppName,
  args: string[],
  stdio: StdioOptions,
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess {
  return spawn(process.execPath, [appEntry(app), ...args], { stdio, env: { ...ALLOCATOR_ENV, ...env } });
}

/** Runs an app in the foreground with this terminal, forwarding signals; resolves with its exit code. */
export function runForeground(app: AppName, args: string[]): Promise<number> {
  const child = spawnApp(app, args, 'inherit');
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  });
}

/** Stops children with SIGTERM, then SIGKILL after `graceMs`. */
export async function stopAll(children: ChildProcess[], graceMs = 5_000): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
          c.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}
