import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ALLOCATOR_ENV, GradfleetClient, loadDataset } from '@gradfleet/core';

export const ROOT = resolve(import.meta.dirname, '..', '..');
const entry = (app: string) => join(ROOT, 'apps', app, 'dist', 'main.js');

/** Real processes of a test cluster; `stop()` kills whatever is left (SIGKILL). */
export class TestCluster {
  readonly processes: ChildProcess[] = [];
  url = '';
  client!: GradfleetClient;
  private readonly logs: string[] = [];

  get wsUrl(): string {
    return this.url.replace(/^http/, 'ws');
  }

  private spawn(app: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    // GRADFLEET_NODE_ARGS: extra node flags for the cluster's processes (e.g. --cpu-prof for profiling a benchmark).
    const nodeArgs = process.env['GRADFLEET_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
    const child = spawn(process.execPath, [...nodeArgs, entry(app), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...ALLOCATOR_ENV, ...process.env, GRADFLEET_LOG_LEVEL: 'warn', ...env },
    });
    child.stderr!.on('data', (d: Buffer) => this.logs.push(`[${app} ${child.pid}] ${d.toString()}`));
    this.processes.push(child);
    return child;
  }

  /** The coordinator's data dir (a fresh temp dir unless given). */
  dataDir = mkdtempSync(join(tmpdir(), 'gradfleet-coord-'));
  /** `--dataset-root` directories: the OS temp dir, where tests write their dataset files. */
  datasetRoots: string[] = [tmpdir()];
  /** Extra environment of the coordinator process. */
  coordinatorEnv: NodeJS.ProcessEnv = {};
  /** How long a coordinator may take to listen, in ms (restoring a large model's job takes longer). */
  startTimeoutMs = 30_000;

  async startCoordinator(args: string[] = [], port = 0, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
    const child = this.spawn(
      'coordinator',
      [
        '--port',
        String(port),
        '--announce',
        '--data-dir',
        this.dataDir,
        ...this.datasetRoots.flatMap((d) => ['--dataset-root', d]),
        ...args,
      ],
      { ...this.coordinatorEnv, ...env },
    );
    this.url = await new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`coordinator did not start:\n${this.logs.join('')}`)),
        this.startTimeoutMs,
      );
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = /^GRADFLEET_LISTENING (\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolveUrl(m[1]!.replace(/\/$/, ''));
        }
      });
      child.once('exit', (code) => reject(new Error(`coordinator exited (${code}):\n${this.logs.join('')}`)));
    });
    this.client = new GradfleetClient({ url: this.url });
    return child;
  }

  startWorker(args: string[] = [], env: NodeJS.ProcessEnv = {}): ChildProcess {
    return this.spawn('worker', ['--coordinator', this.wsUrl, '--backend', 'wasm', ...args], env);
  }

  /** Starts `n` workers and waits until the coordinator has registered `total` workers. */
  async startWorkers(n: number, total = n): Promise<void> {
    for (let i = 0; i < n; i++) this.startWorker(['--name', `test-${i + 1}`]);
    await this.client.waitForWorkers(total, 60_000);
  }

  get log(): string {
    return this.logs.join('');
  }

  /**
   * Waits until the processes' output contains `text`: a line logged while answering a request
   * reaches this process through a pipe, possibly after the answer does.
   */
  async waitForLog(text: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.log.includes(text)) {
      if (Date.now() > deadline)
        throw new Error(`no log line containing ${JSON.stringify(text)} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    // Profiled processes stop politely so they can write their profiles.
    const signal = process.env['GRADFLEET_NODE_ARGS'] ? 'SIGTERM' : 'SIGKILL';
    for (const p of this.processes) if (p.exitCode === null && p.signalCode === null) p.kill(signal);
    await Promise.all(
      this.processes.map((p) =>
        p.exitCode !== null || p.signalCode !== null ? undefined : new Promise((r) => p.once('exit', r)),
      ),
    );
  }
}

function idxFile(type: 'images' | 'labels', data: Uint8Array, dims: number[]): Buffer {
  const head = Buffer.alloc(4 + dims.length * 4);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + i * 4));
  void type;
  return Buffer.concat([head, data]);
}

export interface SmallMnist {
  dir: string;
  dataset: { idx: { trainImages: string; trainLabels: string; testImages: string; testLabels: string } };
  trainCount: number;
  testCount: number;
}

/** Writes the first `trainCount`/`testCount` MNIST examples as IDX files in a temp dir. */
export async function writeSmallMnist(trainCount: number, testCount: number): Promise<SmallMnist> {
  const mnist = await loadDataset('mnist');
  const dir = mkdtempSync(join(tmpdir(), 'gradfleet-data-'));
  const files = {
    trainImages: join(dir, 'train-images.idx'),
    trainLabels: join(dir, 'train-labels.idx'),
    testImages: join(dir, 'test-images.idx'),
    testLabels: join(dir, 'test-labels.idx'),
  };
  const write = (split: typeof mnist.train, n: number, images: string, labels: string) => {
    writeFileSync(images, idxFile('images', (split.x as Uint8Array).subarray(0, n * 784), [n, 28, 28]));
    writeFileSync(labels, idxFile('labels', Uint8Array.from(split.y.subarray(0, n)), [n]));
  };
  write(mnist.train, trainCount, files.trainImages, files.trainLabels);
  write(mnist.test!, testCount, files.testImages, files.testLabels);
  return { dir, dataset: { idx: files }, trainCount, testCount };
}
