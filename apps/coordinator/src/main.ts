#!/usr/bin/env node
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFileSync, statSync } from 'node:fs';
import { Command } from 'commander';
import {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  createLogger,
} from '@gradfleet/core';
import { readApiTokens, type ApiTokenEntry } from './api-tokens.js';
import { resolveToken } from './auth.js';
import { Coordinator } from './coordinator.js';
import { COORDINATOR_DEFAULTS } from './coordinator-options.js';
import { CoordinatorStartError } from './start-error.js';
import { DEFAULT_MAX_DATASET_BYTES } from './dataset-ingest.js';
import { defaultReducerThreads } from './shard-pool.js';
import { DEFAULT_JOB_SERIES_GRACE_MS } from './metrics.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`);
  return n;
};

const program = new Command('gradfleet coordinator')
  .description('Run the gradfleet coordinator: job API, worker endpoint and /metrics on one port.')
  .option('--host <host>', 'address to bind', process.env['GRADFLEET_HOST'] ?? '127.0.0.1')
  .option(
    '-p, --port <port>',
    'port (0 picks a free one)',
    int('--port'),
    Number(process.env['GRADFLEET_PORT'] ?? 7070),
  )
  .option(
    '--max-message-bytes <n>',
    'largest WebSocket message accepted',
    int('--max-message-bytes'),
    DEFAULT_MAX_MESSAGE_BYTES,
  )
  .option(
    '--heartbeat-interval-ms <n>',
    'heartbeat interval',
    int('--heartbeat-interval-ms'),
    DEFAULT_HEARTBEAT_INTERVAL_MS,
  )
  .option(
    '--heartbeat-timeout-ms <n>',
    'declare a silent worker dead after this long',
    int('--heartbeat-timeout-ms'),
    DEFAULT_HEARTBEAT_TIMEOUT_MS,
  )
  .option(
    '--job-metrics-grace-ms <n>',
    'keep a finished job’s metric series this long (Prometheus scrapes the final values), then remove them',
    int('--job-metrics-grace-ms'),
    DEFAULT_JOB_SERIES_GRACE_MS,
  )
  .option(
    '--data-dir <dir>',
    'where jobs, checkpoints, datasets and models are kept',
    process.env['GRADFLEET_DATA_DIR'] ?? '.gradfleet',
  )
  .option(
    '--max-upload-bytes <n>',
    'largest dataset upload or download accepted',
    int('--max-upload-bytes'),
    DEFAULT_MAX_DATASET_BYTES,
  )
  .option(
    '--dataset-root <dir>',
    'directory job specs may name dataset paths under (repeatable; none by default: paths are refused)',
    (v: string, all: string[]) => [...all, v],
    process.env['GRADFLEET_DATASET_ROOT'] ? [process.env['GRADFLEET_DATASET_ROOT']] : [],
  )
  .option(
    '--dataset-url-allow <hosts>',
    'comma-separated hosts dataset URLs may name (none by default: URLs are refused)',
    (v: string, all: string[]) => [
      ...all,
      ...v
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean),
    ],
    [] as string[],
  )
  .option(
    '--dataset-s3-allow <buckets>',
    'comma-separated S3 buckets dataset sources and chunk stores may name (none by default; endpoint and credentials from the AWS environment)',
    (v: string, all: string[]) => [
      ...all,
      ...v
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean),
    ],
    [] as string[],
  )
  .option('--worker-token <token>', 'token workers must present (or GRADFLEET_WORKER_TOKEN)')
  .option('--worker-token-file <file>', 'read the worker token from a file')
  .option('--api-token <token>', 'token API clients must present (or GRADFLEET_API_TOKEN)')
  .option('--api-token-file <file>', 'read the API token from a file')
  .option(
    '--api-tokens <file>',
    'per-user API tokens: one "NAME SHA256 ROLE" per line (role submit or admin; or GRADFLEET_API_TOKENS_FILE)',
    process.env['GRADFLEET_API_TOKENS_FILE'],
  )
  .option('--insecure', 'serve a non-loopback address without tokens or without TLS (trusted networks only)')
  .option(
    '--public-host <names>',
    'comma-separated names clients use for this coordinator besides its address and localhost (others get 421)',
    (v: string, all: string[]) => [
      ...all,
      ...v
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean),
    ],
    [] as string[],
  )
  .option(
    '--allow-origin <origins>',
    'comma-separated browser origins allowed to call the API or connect (none by default: requests with Origin get 403)',
    (v: string, all: string[]) => [
      ...all,
      ...v
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean),
    ],
    [] as string[],
  )
  .option(
    '--max-connections <n>',
    'open worker connections accepted at once',
    int('--max-connections'),
    COORDINATOR_DEFAULTS.maxConnections,
  )
  .option(
    '--max-messages-per-second <n>',
    'messages per second accepted from one connection',
    int('--max-messages-per-second'),
    COORDINATOR_DEFAULTS.maxMessagesPerSecond,
  )
  .option(
    '--max-model-params <n>',
    'trainable parameters a job model may have',
    int('--max-model-params'),
    COORDINATOR_DEFAULTS.maxModelParams,
  )
  .option(
    '--max-concurrent-jobs <n>',
    'jobs running at once',
    int('--max-concurrent-jobs'),
    COORDINATOR_DEFAULTS.maxConcurrentJobs,
  )
  .option(
    '--max-dataset-store-bytes <n>',
    'bytes stored uploads and URL downloads may take together (the oldest go first; an upload that cannot fit gets 507)',
    int('--max-dataset-store-bytes'),
    COORDINATOR_DEFAULTS.maxDatasetStoreBytes,
  )
  .option(
    '--dataset-file-ttl-s <s>',
    'seconds after which a stored upload or URL download is removed',
    int('--dataset-file-ttl-s'),
    COORDINATOR_DEFAULTS.datasetFileTtlS,
  )
  .option(
    '--model-build-heap-mb <n>',
    'JS heap of the thread that builds job models, in MiB (a build that outgrows it refuses the job)',
    int('--model-build-heap-mb'),
    COORDINATOR_DEFAULTS.modelBuildHeapMb,
  )
  .option(
    '--max-queued-jobs <n>',
    'jobs waiting to run, all tokens together (more get 429 QUEUE_FULL)',
    int('--max-queued-jobs'),
    COORDINATOR_DEFAULTS.maxQueuedJobs,
  )
  .option(
    '--max-queued-data-bytes <n>',
    'bytes of dataset shards that jobs waiting to run may hold on disk, all together (more get 429 QUEUE_FULL)',
    int('--max-queued-data-bytes'),
    COORDINATOR_DEFAULTS.maxQueuedDataBytes,
  )
  .option(
    '--dataset-parse-heap-mb <n>',
    "JS heap of the thread that parses one job's dataset files, in MiB (a file that outgrows it refuses the job)",
    int('--dataset-parse-heap-mb'),
    COORDINATOR_DEFAULTS.datasetParseHeapMb,
  )
  .option(
    '--dataset-parse-timeout-s <s>',
    "seconds one job's dataset files may take to read and parse (longer refuses the job)",
    int('--dataset-parse-timeout-s'),
    COORDINATOR_DEFAULTS.datasetParseTimeoutS,
  )
  .option(
    '--max-queued-jobs-per-token <n>',
    'jobs waiting to run per API token (more get 429 QUEUE_FULL)',
    int('--max-queued-jobs-per-token'),
    COORDINATOR_DEFAULTS.maxQueuedJobsPerToken,
  )
  .option(
    '--max-event-streams <n>',
    'open event streams (GET /v1/jobs/:id/events) in all (more get 429 TOO_MANY_STREAMS)',
    int('--max-event-streams'),
    COORDINATOR_DEFAULTS.maxEventStreams,
  )
  .option(
    '--max-event-streams-per-token <n>',
    'open event streams per API token (more get 429 TOO_MANY_STREAMS)',
    int('--max-event-streams-per-token'),
    COORDINATOR_DEFAULTS.maxEventStreamsPerToken,
  )
  .option(
    '--event-stream-stall-ms <ms>',
    'close an event stream whose client leaves the socket buffer full this long',
    int('--event-stream-stall-ms'),
    COORDINATOR_DEFAULTS.eventStreamStallMs,
  )
  .option(
    '--reducer-threads <n>',
    `reducer shard threads of the data plane, each on its own port (--port + 1 + k; any free port with --port 0); 0 (the default for now) averages on the main thread; ${defaultReducerThreads()} would leave one core to the main thread`,
    int('--reducer-threads'),
    Number(process.env['GRADFLEET_REDUCER_THREADS'] ?? 0),
  )
  .option('--tls-cert <file>', 'serve https:// and wss:// with this certificate (PEM)')
  .option('--tls-key <file>', 'private key (PEM) of --tls-cert')
  .option('--announce', 'print "GRADFLEET_LISTENING <url>" on stdout once listening')
  .parse();

type TokenFlags = {
  tlsCert?: string;
  tlsKey?: string;
  workerToken?: string;
  workerTokenFile?: string;
  apiToken?: string;
  apiTokenFile?: string;
  insecure?: boolean;
  maxConnections: number;
  maxMessagesPerSecond: number;
  maxModelParams: number;
  maxConcurrentJobs: number;
  maxQueuedJobs: number;
  maxQueuedJobsPerToken: number;
  maxQueuedDataBytes: number;
  datasetParseHeapMb: number;
  datasetParseTimeoutS: number;
  maxDatasetStoreBytes: number;
  datasetFileTtlS: number;
  modelBuildHeapMb: number;
  maxEventStreams: number;
  maxEventStreamsPerToken: number;
  eventStreamStallMs: number;
};
const opts = program.opts<
  TokenFlags & {
    host: string;
    port: number;
    maxMessageBytes: number;
    heartbeatIntervalMs: number;
    heartbeatTimeoutMs: number;
    jobMetricsGraceMs: number;
    announce?: boolean;
    dataDir: string;
    maxUploadBytes: number;
    reducerThreads: number;
    datasetRoot: string[];
    datasetUrlAllow: string[];
    datasetS3Allow: string[];
    publicHost: string[];
    apiTokens?: string;
    allowOrigin: string[];
  }
>();
const logger = createLogger('coordinator');

function tlsFiles(cert?: string, key?: string): { cert: Buffer; key: Buffer } | undefined {
  if (!cert && !key) return undefined;
  if (!cert || !key) {
    logger.error('--tls-cert and --tls-key go together');
    process.exit(1);
  }
  return { cert: readFileSync(cert), key: readFileSync(key) };
}
// The coordinator only builds models to validate specs and draw initial weights.
tf.env().set('IS_TEST', true);
await tf.setBackend('cpu');

for (const root of opts.datasetRoot) {
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    logger.error({ root }, `--dataset-root ${root} is not a directory`);
    process.exit(1);
  }
}

function apiTokens(file: string | undefined): ApiTokenEntry[] | undefined {
  if (file === undefined) return undefined;
  try {
    return readApiTokens(file);
  } catch (err) {
    logger.error({ file }, `cannot use --api-tokens: ${(err as Error).message}`);
    process.exit(1);
  }
}

// A token given as a flag is readable by every user of the machine (ps, /proc/PID/cmdline).
for (const [flag, given] of [
  ['--worker-token', opts.workerToken],
  ['--api-token', opts.apiToken],
] as const) {
  if (given)
    logger.warn(
      { flag },
      `${flag} on the command line is visible to every user of this machine (ps); use ${flag}-file or ${flag === '--worker-token' ? 'GRADFLEET_WORKER_TOKEN' : 'GRADFLEET_API_TOKEN'}`,
    );
}

const coordinator = new Coordinator({
  ...opts,
  apiTokens: apiTokens(opts.apiTokens),
  datasetRoots: opts.datasetRoot,
  datasetUrlAllow: opts.datasetUrlAllow,
  datasetS3Allow: opts.datasetS3Allow,
  publicHosts: opts.publicHost,
  allowOrigins: opts.allowOrigin,
  jobSeriesGraceMs: opts.jobMetricsGraceMs,
  workerToken: resolveToken(opts.workerToken, opts.workerTokenFile, process.env['GRADFLEET_WORKER_TOKEN']),
  apiToken: resolveToken(opts.apiToken, opts.apiTokenFile, process.env['GRADFLEET_API_TOKEN']),
  tls: tlsFiles(opts.tlsCert, opts.tlsKey),
  logger,
});
try {
  const url = await coordinator.listen();
  logger.info({ url: url.href }, 'coordinator listening');
  if (opts.announce) process.stdout.write(`GRADFLEET_LISTENING ${url.href}\n`);
} catch (err) {
  if (err instanceof CoordinatorStartError) logger.error({ code: err.code }, err.message);
  else logger.error({ err: (err as Error).message }, 'the coordinator could not start');
  process.exit(1);
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    logger.info({ signal: sig }, 'shutting down');
    void coordinator.close().then(() => process.exit(0));
  });
}
