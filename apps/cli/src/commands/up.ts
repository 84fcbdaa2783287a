import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { GradfleetClient, type JobSpecInput, type JobStatus } from '@gradfleet/core/client';
import { spawnApp, stopAll } from '../app-process.js';
import { JobProgressView, formatReport } from '../progress.js';
import { print, printError } from '../terminal.js';

export interface UpOptions {
  workers: number;
  job?: string;
  epochs?: number;
  batchSize?: number;
  /** A reproducible run: sets the job's `seed` and turns `seededDropout` on. */
  seed?: number;
  backend: string;
  port: number;
  dataDir: string;
  verbose?: boolean;
}

/** Waits for the coordinator's `GRADFLEET_LISTENING <url>` line. */
function waitForListening(child: ChildProcess, logFile: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`coordinator did not start within 60 s; see ${logFile}`)), 60_000);
    lines.on('line', (line) => {
      const m = /^GRADFLEET_LISTENING (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`coordinator exited with code ${code} before listening; see ${logFile}`)),
    );
  });
}

/**
 * `gradfleet up`: a local cluster (one coordinator, N worker processes) training a job,
 * the reference MNIST recipe by default, with live progress and a final report.
 */
export async function up(opts: UpOptions): Promise<number> {
  // A fresh directory per run: jobs of an earlier local cluster must not resume here.
  const runDir = join(opts.dataDir, `up-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const logDir = join(runDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const children: ChildProcess[] = [];
  const logTo = (name: string) => {
    const file = join(logDir, `${name}.log`);
    return { file, stream: createWriteStream(file) };
  };
  const coordLog = logTo('coordinator');
  // Fresh random tokens for this local cluster, passed through the environment (never argv).
  const workerToken = randomBytes(24).toString('base64url');
  const apiToken = randomBytes(24).toString('base64url');
  const env = { ...process.env, GRADFLEET_WORKER_TOKEN: workerToken, GRADFLEET_API_TOKEN: apiToken };
  let finished = false;
  const shutdown = async () => {
    if (finished) return;
    finished = true;
    await stopAll(children);
  };
  process.once('SIGINT', () => void shutdown().then(() => process.exit(130)));
  try {
    const coordinator = spawnApp(
      'coordinator',
      [
        '--port',
        String(opts.port),
        '--announce',
        '--data-dir',
        runDir,
        // A local user's job may name dataset files in the current directory or the temp dir.
        '--dataset-root',
        process.cwd(),
        '--dataset-root',
        tmpdir(),
      ],
      ['ignore', 'pipe', opts.verbose ? 'inherit' : 'pipe'],
      env,
    );
    children.push(coordinator);
    coordinator.stderr?.pipe(coordLog.stream);
    const url = await waitForListening(coordinator, coordLog.file);
    const wsUrl = url.replace(/^http/, 'ws');
    print(`coordinator listening on ${url} (data and logs in ${runDir})`);
    for (let i = 1; i <= opts.workers; i++) {
      const log = logTo(`worker-${i}`);
      const w = spawnApp(
        'worker',
        ['--coordinator', wsUrl, '--backend', opts.backend, '--name', `local-${i}`],
        ['ignore', 'ignore', opts.verbose ? 'inherit' : 'pipe'],
        env,
      );
      w.stderr?.pipe(log.stream);
      children.push(w);
    }
    const client = new GradfleetClient({ url, token: apiToken });
    const workers = await client.waitForWorkers(opts.workers, 120_000);
    print(
      `${workers.length} workers ready: ${workers.map((w) => `${w.name} (${w.backend}${w.device ? `, ${w.device}` : ''})`).join(', ')}`,
    );
    const spec: JobSpecInput = opts.job ? (JSON.parse(await readFile(opts.job, 'utf8')) as JobSpecInput) : {};
    if (opts.epochs !== undefined) spec.epochs = opts.epochs;
    if (opts.batchSize !== undefined) spec.batchSize = opts.batchSize;
    if (opts.seed !== undefined) {
      spec.seed = opts.seed;
      spec.seededDropout = true;
    }
    spec.minWorkers ??= opts.workers;
    const submitted = await client.submit(spec);
    const s = submitted.spec;
    print(
      `job ${submitted.id}: ${typeof s.model === 'string' ? s.model : 'custom model'} on ${typeof s.dataset === 'string' ? s.dataset : 'idx files'}, ${s.epochs} epochs, global batch ${s.batchSize}, ${s.optimizer} lr ${s.learningRate}`,
    );
    const view = new JobProgressView();
    const done: JobStatus = await client.waitForJob(submitted.id, (job) => view.update(job));
    view.stopBar();
    print(formatReport(done, workers));
    return done.state === 'SUCCEEDED' ? 0 : 1;
  } catch (err) {
    printError(`gradfleet up failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await shutdown();
  }
}
