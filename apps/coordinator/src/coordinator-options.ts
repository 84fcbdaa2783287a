import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  type Logger,
} from '@gradfleet/core';
import type { ApiTokenEntry } from './api-tokens.js';
import {
  DEFAULT_DATASET_PARSE_HEAP_MB,
  DEFAULT_DATASET_PARSE_TIMEOUT_MS,
  DEFAULT_MAX_DATASET_BYTES,
} from './dataset-ingest.js';
import { DEFAULT_JOB_SERIES_GRACE_MS } from './metrics.js';

/** What a `Coordinator` is started with; every field but `logger` has a default (`COORDINATOR_DEFAULTS`). */
export interface CoordinatorOptions {
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @defaultValue 7070 */
  port?: number;
  /** Transport-wide message cap, in bytes (closes with 1009 from the frame header). @defaultValue DEFAULT_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
  /** @defaultValue DEFAULT_HEARTBEAT_INTERVAL_MS */
  heartbeatIntervalMs?: number;
  /** @defaultValue DEFAULT_HEARTBEAT_TIMEOUT_MS */
  heartbeatTimeoutMs?: number;
  /** How long a finished job's metric series stay on `/metrics`, in ms. @defaultValue DEFAULT_JOB_SERIES_GRACE_MS */
  jobSeriesGraceMs?: number;
  /** @defaultValue DEFAULT_HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** Where jobs, checkpoints, datasets and models are kept. @defaultValue './.gradfleet' */
  dataDir?: string;
  /** Largest dataset upload or URL download, in bytes. @defaultValue DEFAULT_MAX_DATASET_BYTES */
  maxUploadBytes?: number;
  /** Bytes stored uploads and URL downloads may take together (`dataset-files.ts`). @defaultValue 16 GiB */
  maxDatasetStoreBytes?: number;
  /** Age after which a stored upload or download is removed, in seconds. @defaultValue 86400 (24 h) */
  datasetFileTtlS?: number;
  /** Directories job specs may name dataset paths under (`--dataset-root`). @defaultValue none: paths refused */
  datasetRoots?: readonly string[];
  /** Hosts dataset URLs may name (`--dataset-url-allow`). @defaultValue none: URLs refused */
  datasetUrlAllow?: readonly string[];
  /** S3 buckets named by `s3://` dataset sources and chunk stores (`--dataset-s3-allow`). @defaultValue none: S3 refused */
  datasetS3Allow?: readonly string[];
  /** Token workers must present; required (with `apiToken`) off loopback unless `insecure`. */
  workerToken?: string | undefined;
  /** Token API clients must present to submit and manage jobs (one admin token, named `admin`). */
  apiToken?: string | undefined;
  /** Per-user API tokens (`--api-tokens FILE`, `api-tokens.ts`). */
  apiTokens?: readonly ApiTokenEntry[] | undefined;
  /** Serve a non-loopback address without tokens or without TLS (warned at every start). @defaultValue false */
  insecure?: boolean;
  /** Names clients use for this coordinator besides its address and localhost (`--public-host`); other Host headers get 421. */
  publicHosts?: readonly string[];
  /** Browser origins allowed to call the API or open a worker connection (`--allow-origin`). @defaultValue none */
  allowOrigins?: readonly string[];
  /** Open worker connections accepted at once. @defaultValue 1024 */
  maxConnections?: number;
  /** Messages per second accepted from one connection (burst: twice that). @defaultValue 5000 */
  maxMessagesPerSecond?: number;
  /** Trainable parameters a job's model may have. @defaultValue 200_000_000 */
  maxModelParams?: number;
  /** JS heap of the model builder thread, in MiB (`model-builder.ts`). @defaultValue 2048 */
  modelBuildHeapMb?: number;
  /** Jobs running at once. @defaultValue 64 */
  maxConcurrentJobs?: number;
  /** Jobs waiting to run (queued or paused without workers), all tokens together; more get 429 `QUEUE_FULL`. @defaultValue 1000 */
  maxQueuedJobs?: number;
  /** Jobs waiting to run per API token (`anonymous` without tokens); more get 429 `QUEUE_FULL`. @defaultValue 100 */
  maxQueuedJobsPerToken?: number;
  /** Bytes of dataset shards (`<dataDir>/jobs/<id>/data`) that jobs waiting to run hold, all together; more get 429 `QUEUE_FULL`. @defaultValue 32 GiB */
  maxQueuedDataBytes?: number;
  /** JS heap of the thread that parses one job's dataset files, in MiB (`dataset-ingest.ts`). @defaultValue DEFAULT_DATASET_PARSE_HEAP_MB */
  datasetParseHeapMb?: number;
  /** Time one job's dataset files may take to read and parse, in seconds. @defaultValue 600 */
  datasetParseTimeoutS?: number;
  /** Open event streams (`GET /v1/jobs/:id/events`) in all; more get 429 `TOO_MANY_STREAMS`. @defaultValue 256 */
  maxEventStreams?: number;
  /** Open event streams per API token; more get 429 `TOO_MANY_STREAMS`. @defaultValue 16 */
  maxEventStreamsPerToken?: number;
  /** How long an event stream may leave its socket buffer full before it is closed, in ms. @defaultValue 10000 */
  eventStreamStallMs?: number;
  /** Serve https:// and wss:// with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
  /**
   * Reducer shard threads of the data plane, each with its own port (the API port + 1 + k
   * when `port` is fixed, any free port otherwise); 0 averages gradients on the main thread.
   * @defaultValue 0 for now (opt in; `defaultReducerThreads()` suggests usable cores − 1): docs/architecture.md
   */
  reducerThreads?: number;
  logger: Logger;
}

/**
 * Every default of `CoordinatorOptions`, in one place (the CLI's flags show the same values).
 * Limits come with their reason in the constants they name.
 */
export const COORDINATOR_DEFAULTS = {
  host: '127.0.0.1',
  port: 7070,
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
  heartbeatTimeoutMs: DEFAULT_HEARTBEAT_TIMEOUT_MS,
  jobSeriesGraceMs: DEFAULT_JOB_SERIES_GRACE_MS,
  handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
  dataDir: '.gradfleet',
  maxUploadBytes: DEFAULT_MAX_DATASET_BYTES,
  /** Sixteen uploads at the 1 GiB upload limit; uploads are needed only until the job naming them is submitted. */
  maxDatasetStoreBytes: 16 * 1024 ** 3,
  /** A day: time to upload and then submit, without keeping every upload forever. */
  datasetFileTtlS: 86_400,
  datasetRoots: [] as readonly string[],
  datasetUrlAllow: [] as readonly string[],
  datasetS3Allow: [] as readonly string[],
  insecure: false,
  publicHosts: [] as readonly string[],
  allowOrigins: [] as readonly string[],
  /** Open worker connections at once: far above any fleet, far below the file-descriptor limit. */
  maxConnections: 1024,
  /** Per connection; a worker sends a few messages per step, so only a runaway peer reaches it. */
  maxMessagesPerSecond: 5_000,
  /** 200M fp32 parameters: 800 MB of weights, about 2.4 GB with Adam's moments on every replica. */
  maxModelParams: 200_000_000,
  maxConcurrentJobs: 64,
  /** TF.js and a topology's config need tens of MiB; the weights (bounded by maxModelParams) live outside the heap. */
  modelBuildHeapMb: 2048,
  /** A waiting job holds its status (spec ≤ 4 MiB) and dataset shards on disk, never a model: 1,000 × 4 MiB bounds the first. */
  maxQueuedJobs: 1_000,
  /** So one token cannot fill the whole queue. */
  maxQueuedJobsPerToken: 100,
  /** Thirty-two datasets at the 1 GiB upload limit, encoded; named datasets' chunks are the catalog's, not counted here. */
  maxQueuedDataBytes: 32 * 1024 ** 3,
  datasetParseHeapMb: DEFAULT_DATASET_PARSE_HEAP_MB,
  datasetParseTimeoutS: DEFAULT_DATASET_PARSE_TIMEOUT_MS / 1000,
  /** Each stream costs a socket and a 250 ms timer; a dashboard needs a handful. */
  maxEventStreams: 256,
  maxEventStreamsPerToken: 16,
  /** A reading client drains a full buffer in milliseconds; 10 s is a client that stopped reading. */
  eventStreamStallMs: 10_000,
} as const;

/** `CoordinatorOptions` with every default filled in: compiled once, read everywhere. */
export type CompiledCoordinatorOptions = Readonly<
  Omit<Required<CoordinatorOptions>, 'workerToken' | 'apiToken' | 'apiTokens' | 'tls'> &
    Pick<CoordinatorOptions, 'workerToken' | 'apiToken' | 'apiTokens' | 'tls'>
>;

export function compileCoordinatorOptions(o: CoordinatorOptions): CompiledCoordinatorOptions {
  const defined = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as CoordinatorOptions;
  return Object.freeze({
    ...COORDINATOR_DEFAULTS,
    reducerThreads: 0,
    ...defined,
  });
}
