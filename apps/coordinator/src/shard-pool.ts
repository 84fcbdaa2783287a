import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '@gradfleet/core';
import type { ShardCommand, ShardEvent, ShardHostOptions } from '@gradfleet/core/dataplane';

type FromThread =
  | { t: 'listening'; port: number }
  | { t: 'event'; jobId: string; ev: ShardEvent }
  | { t: 'error'; jobId?: string; message: string };

/** The thread's module: beside this one once built; from sources (unit tests), the built copy. */
function threadEntry(): URL {
  const sibling = new URL('./shard-thread.js', import.meta.url);
  return existsSync(fileURLToPath(sibling)) ? sibling : new URL('../dist/shard-thread.js', import.meta.url);
}

/** Default reducer threads: every core but the one the main event loop needs, at least one. */
export function defaultReducerThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

/**
 * The coordinator's reducer shards, one worker thread each (`--reducer-threads`), each
 * listening on its own port for workers' data connections. Job runners attach to receive
 * their job's events; a thread that dies fails the jobs it served (listeners get an
 * error), since the sums it held are gone.
 */
export class ShardPool {
  private readonly listeners = new Map<
    string,
    (shard: number, ev: ShardEvent | { t: 'error'; message: string }) => void
  >();

  private constructor(
    private readonly threads: Worker[],
    readonly ports: number[],
  ) {}

  /** Starts `count` shard threads; shard k listens on `basePort + k` (any free port when `basePort` is 0). */
  static async start(
    count: number,
    options: Omit<ShardHostOptions, 'port'> & { basePort: number },
    log: Logger,
  ): Promise<ShardPool> {
    const url = threadEntry();
    const threads: Worker[] = [];
    const ports = await Promise.all(
      Array.from({ length: count }, (_, k) => {
        const { basePort, ...host } = options;
        const workerData: ShardHostOptions = { ...host, port: basePort === 0 ? 0 : basePort + k };
        const w = new Worker(url, { workerData, name: `reducer-shard-${k}` });
        threads.push(w);
        return new Promise<number>((resolve, reject) => {
          w.once('error', reject);
          w.once('message', (m: FromThread) =>
            m.t === 'listening' ? resolve(m.port) : reject(new Error('shard did not start')),
          );
        });
      }),
    );
    const pool = new ShardPool(threads, ports);
    threads.forEach((w, k) => {
      w.on('message', (m: FromThread) => {
        if (m.t === 'event') pool.listeners.get(m.jobId)?.(k, m.ev);
        else if (m.t === 'error') {
          log.error({ shard: k, jobId: m.jobId, err: m.message }, 'reducer shard command failed');
          if (m.jobId) pool.listeners.get(m.jobId)?.(k, { t: 'error', message: m.message });
        }
      });
      w.on('error', (err) => {
        log.error({ shard: k, err: err.message }, 'reducer shard thread died');
        for (const l of pool.listeners.values())
          l(k, { t: 'error', message: `reducer shard ${k} died: ${err.message}` });
      });
    });
    log.info({ threads: count, ports }, 'reducer shards listening');
    return pool;
  }

  get size(): number {
    return this.threads.length;
  }

  post(shard: number, c: ShardCommand): void {
    this.threads[shard]!.postMessage(c);
  }

  attach(jobId: string, listener: (shard: number, ev: ShardEvent | { t: 'error'; message: string }) => void): void {
    this.listeners.set(jobId, listener);
  }

  detach(jobId: string): void {
    this.listeners.delete(jobId);
    for (let k = 0; k < this.size; k++) this.post(k, { t: 'end-job', jobId });
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((w) => w.terminate()));
  }
}
