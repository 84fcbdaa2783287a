#!/usr/bin/env node
import { Command, Option } from 'commander';
import { BackendUnavailableError, createLogger, selectBackend, type BackendPreference } from '@gradfleet/core';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { registerGpuMetrics } from './gpu-metrics.js';
import { EXIT_CODES } from './exit-codes.js';
import { GpuSupervisor } from './gpu-supervisor.js';
import { GpuDiscoveryError, queryGpus, selectGpus } from './nvidia-smi.js';
import { WorkerMetrics } from './worker-metrics.js';
import { DEFAULT_WORKER_MAX_MESSAGE_BYTES, WorkerSession } from './worker-session.js';

const program = new Command('gradfleet worker')
  .description('Run a gradfleet worker: computes gradients for the jobs the coordinator assigns.')
  .option(
    '-c, --coordinator <url>',
    'coordinator WebSocket URL',
    process.env['GRADFLEET_COORDINATOR'] ?? 'ws://127.0.0.1:7070',
  )
  .addOption(
    new Option('-b, --backend <name>', 'TensorFlow.js backend')
      .choices(['auto', 'tensorflow', 'wasm', 'cpu'])
      .default('auto'),
  )
  .option('--gpu <index>', 'pin to one GPU (sets CUDA_VISIBLE_DEVICES; tensorflow backend)', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--gpu must be a GPU index, got ${v}`);
    return n;
  })
  .option('-n, --name <name>', 'worker name shown in status and metrics')
  .option('-t, --token <token>', 'worker token the coordinator requires (or GRADFLEET_WORKER_TOKEN)')
  .option('--token-file <file>', 'read the worker token from a file')
  .option('--ca <file>', 'CA certificate (PEM) that signed a wss:// coordinator’s certificate')
  .option('--gpus <list>', 'one supervised worker process per GPU: "all" or indices like 0,1,3 (needs nvidia-smi)')
  .option(
    '--restart-delay-ms <n>',
    'with --gpus: first restart delay of a crashed worker (doubles per crash, up to 30 s)',
    (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`--restart-delay-ms must be a whole number of ms, got ${v}`);
      return n;
    },
    1000,
  )
  .option(
    '--metrics-port <port>',
    'serve this worker’s own Prometheus metrics on this port (0: any free port)',
    (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--metrics-port must be a port number, got ${v}`);
      return n;
    },
  )
  .option('--metrics-host <host>', 'address --metrics-port binds (0.0.0.0 for a Prometheus elsewhere)', '127.0.0.1')
  .option(
    '--cache-bytes <n>',
    'bytes of chunked-dataset chunks this worker keeps in memory (least recently used dropped first)',
    (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--cache-bytes must be a positive integer, got ${v}`);
      return n;
    },
  )
  .option(
    '--max-message-bytes <n>',
    'largest message accepted from the coordinator (whole-model state arrives in chunks of a bucket)',
    (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--max-message-bytes must be a positive integer, got ${v}`);
      return n;
    },
    DEFAULT_WORKER_MAX_MESSAGE_BYTES,
  )
  .parse();

const opts = program.opts<{
  coordinator: string;
  backend: BackendPreference;
  gpu?: number;
  gpus?: string;
  restartDelayMs: number;
  name?: string;
  metricsPort?: number;
  metricsHost: string;
  maxMessageBytes: number;
  cacheBytes?: number;
  token?: string;
  tokenFile?: string;
  ca?: string;
}>();
const logger = createLogger('worker');

/** Reads a file named by an option; a failure exits with `EXIT_CODES.CONFIG` (a restart cannot fix it). */
function readOptionFile(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    logger.error(
      { code: (err as NodeJS.ErrnoException).code },
      `${option} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the path and its permissions`,
    );
    process.exit(EXIT_CODES.CONFIG);
  }
}

const token =
  opts.token ??
  (opts.tokenFile
    ? readOptionFile('--token-file', opts.tokenFile).toString('utf8').trim()
    : process.env['GRADFLEET_WORKER_TOKEN']?.trim() || undefined);
warnIfPlaintext(opts.coordinator);
if (opts.token)
  logger.warn(
    { flag: '--token' },
    '--token on the command line is visible to every user of this machine (ps); use --token-file or GRADFLEET_WORKER_TOKEN',
  );

/** Tokens and gradients cross the network readable over `ws://` to another machine: say so. */
function warnIfPlaintext(coordinator: string): void {
  let url: URL;
  try {
    url = new URL(coordinator);
  } catch {
    return; // the session reports a bad URL
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const loopback = host === 'localhost' || host === '::1' || /^127\./.test(host);
  if (url.protocol === 'ws:' && !loopback)
    logger.warn(
      { coordinator: url.origin },
      'INSECURE: ws:// to a non-loopback coordinator; the worker token and training data cross the network in cleartext (use wss:// and --ca)',
    );
}

const ca = opts.ca ? readOptionFile('--ca', opts.ca) : undefined;

if (opts.gpus !== undefined) process.exit(await superviseGpus(opts.gpus));

/** `--gpus`: discover the GPUs and run one pinned worker process per GPU until SIGTERM. */
async function superviseGpus(spec: string): Promise<number> {
  try {
    const gpus = selectGpus(spec, await queryGpus());
    const supervisor = new GpuSupervisor({
      gpus,
      entry: process.argv[1]!,
      name: opts.name ?? hostname(),
      metricsPort: opts.metricsPort,
      logger,
      restartDelayMs: opts.restartDelayMs,
      args: [
        '--coordinator',
        opts.coordinator,
        '--backend',
        opts.backend,
        '--metrics-host',
        opts.metricsHost,
        '--max-message-bytes',
        String(opts.maxMessageBytes),
        ...(opts.ca ? ['--ca', opts.ca] : []),
      ],
      env: token ? { GRADFLEET_WORKER_TOKEN: token } : {},
    });
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void supervisor.stop());
    supervisor.start();
    logger.info({ gpus: gpus.map((g) => `${g.index}: ${g.name}`) }, `supervising ${gpus.length} GPU worker(s)`);
    return await supervisor.done;
  } catch (err) {
    if (!(err instanceof GpuDiscoveryError)) throw err;
    logger.error({ code: err.code }, err.message);
    return EXIT_CODES.REFUSED;
  }
}

try {
  const backend = await selectBackend(opts.backend, opts.gpu === undefined ? {} : { gpu: opts.gpu });
  logger.info(
    { backend: backend.backend, provider: backend.provider, device: backend.device, reason: backend.reason },
    `using the ${backend.backend} backend`,
  );
  const name = opts.name ?? `${hostname()}-${process.pid}`;
  const metrics = new WorkerMetrics(name, backend);
  const gpuIndex = process.env['GRADFLEET_GPU_INDEX'];
  if (gpuIndex !== undefined) {
    if (backend.backend !== 'tensorflow')
      logger.warn(
        { gpu: gpuIndex, reason: backend.reason },
        `pinned to GPU ${gpuIndex} but running on ${backend.backend}: ${backend.reason}`,
      );
    registerGpuMetrics(metrics.registry, Number(gpuIndex));
  }
  if (opts.metricsPort !== undefined) {
    const port = await metrics.serve(opts.metricsPort, opts.metricsHost);
    logger.info({ port, host: opts.metricsHost }, `serving metrics on ${opts.metricsHost}:${port}/metrics`);
  }
  const session = new WorkerSession({
    coordinator: opts.coordinator,
    backend,
    logger,
    metrics,
    name,
    token,
    maxMessageBytes: opts.maxMessageBytes,
    cacheBytes: opts.cacheBytes,
    ...(ca ? { ca } : {}),
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => session.stop());
  session.start();
  process.exitCode = await session.done;
  metrics.close();
} catch (err) {
  if (err instanceof BackendUnavailableError) {
    logger.error({ code: err.code }, err.message);
    process.exitCode = EXIT_CODES.BACKEND_UNAVAILABLE;
  } else {
    logger.error({ err }, 'worker failed');
    process.exitCode = EXIT_CODES.CRASHED;
  }
}
