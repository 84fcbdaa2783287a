import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts the worker thread whose module is `./<name>.js` beside this file (the build). When
 * the coordinator runs from its sources (the unit tests), there is no `.js`: the thread loads
 * `./<name>.ts` through tsx's loader instead.
 */
export function startThread(name: string, options: WorkerOptions): Worker {
  const url = new URL(`./${name}.js`, import.meta.url);
  if (existsSync(fileURLToPath(url))) return new Worker(url, options);
  const tsEntry = new URL(`./${name}.ts`, import.meta.url).href;
  return new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(tsEntry)}); })`, {
    ...options,
    eval: true,
  });
}
