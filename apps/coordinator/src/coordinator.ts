import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { CLOSE_CODES, WORKER_WS_PATH } from '@gradfleet/core';
import { Authenticator, isLoopback, tokenProblem } from './auth.js';
import { BrowserGuard } from './browser-guard.js';
import { DatasetCatalog } from './dataset-catalog.js';
import { DatasetFiles } from './dataset-files.js';
import { DatasetIngest } from './dataset-ingest.js';
import { DatasetSources } from './dataset-sources.js';
import { EventStreams } from './event-streams.js';
import { s3ClientFromEnv } from './s3-access.js';
import { createApiHandler } from './http-api.js';
import { JobManager } from './job-manager.js';
import { JobStore } from './job-store.js';
import { CoordinatorMetrics } from './metrics.js';
import { ShardPool } from './shard-pool.js';
import {
  compileCoordinatorOptions,
  type CompiledCoordinatorOptions,
  type CoordinatorOptions,
} from './coordinator-options.js';
import { CoordinatorStartError, listenError } from './start-error.js';
import { WorkerConnection } from './worker-connection.js';

export type { CoordinatorOptions } from './coordinator-options.js';

/** The coordinator process: job API, worker WebSocket endpoint and metrics on one port. */
export class Coordinator {
  readonly metrics = new CoordinatorMetrics();
  readonly jobs: JobManager;
  readonly store: JobStore;
  /** Named chunked datasets (`docs/datasets.md`). */
  readonly datasets: DatasetCatalog;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<WorkerConnection>();
  private readonly auth: Authenticator;
  private draining = false;
  private shardPool: ShardPool | undefined;
  private readonly options: CompiledCoordinatorOptions;
  private readonly datasetFiles: DatasetFiles;

  constructor(input: CoordinatorOptions) {
    const options = (this.options = compileCoordinatorOptions(input));
    const log = options.logger;
    this.metrics.jobSeriesGraceMs = options.jobSeriesGraceMs;
    const dataDir = options.dataDir;
    this.store = new JobStore(dataDir);
    const ingest = new DatasetIngest(dataDir, {
      maxBytes: options.maxUploadBytes,
      roots: options.datasetRoots,
      urlAllow: options.datasetUrlAllow,
      parseHeapMb: options.datasetParseHeapMb,
      parseTimeoutMs: options.datasetParseTimeoutS * 1000,
      log,
    });
    this.datasetFiles = new DatasetFiles({
      dataDir,
      maxBytes: options.maxDatasetStoreBytes,
      ttlMs: options.datasetFileTtlS * 1000,
      log,
    });
    this.auth = new Authenticator({
      workerToken: options.workerToken,
      apiToken: options.apiToken,
      apiTokens: options.apiTokens,
    });
    const sourceOptions = {
      dataDir,
      roots: options.datasetRoots,
      urlAllow: options.datasetUrlAllow,
      s3Allow: options.datasetS3Allow,
      maxBytes: options.maxUploadBytes,
    };
    const sources = new DatasetSources({ ...sourceOptions, s3: () => s3ClientFromEnv() });
    this.datasets = new DatasetCatalog(dataDir, sourceOptions, sources, {}, log);
    this.datasets.metrics = this.metrics;
    this.metrics.ingestionsRunning = () => this.datasets.running();
    this.jobs = new JobManager(
      this.metrics,
      log,
      this.store,
      ingest,
      this.datasets,
      dataDir,
      {
        maxModelParams: options.maxModelParams,
        maxConcurrentJobs: options.maxConcurrentJobs,
        maxQueuedJobs: options.maxQueuedJobs,
        maxQueuedJobsPerToken: options.maxQueuedJobsPerToken,
        maxQueuedDataBytes: options.maxQueuedDataBytes,
      },
      options.modelBuildHeapMb,
    );
    this.jobs.models.warm();
    const guard = new BrowserGuard({
      listenHost: options.host,
      publicHosts: options.publicHosts,
      allowOrigins: options.allowOrigins,
    });
    const api = createApiHandler({
      guard,
      datasetFiles: this.datasetFiles,
      streams: new EventStreams(
        {
          maxStreams: options.maxEventStreams,
          maxPerToken: options.maxEventStreamsPerToken,
          stallMs: options.eventStreamStallMs,
        },
        this.store,
        this.metrics,
        log,
      ),
      jobs: this.jobs,
      store: this.store,
      ingest,
      datasets: this.datasets,
      metrics: this.metrics,
      log,
      auth: this.auth,
      draining: () => this.draining,
    });
    this.server = options.tls
      ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, api)
      : createServer(api);
    const maxConnections = options.maxConnections;
    this.wss = new WebSocketServer({
      server: this.server,
      path: WORKER_WS_PATH,
      maxPayload: options.maxMessageBytes,
      perMessageDeflate: false,
      verifyClient: ({ req }, done) => {
        if (this.connections.size >= maxConnections) {
          log.warn(
            { remote: req.socket.remoteAddress, maxConnections },
            'connection refused: --max-connections reached',
          );
          return done(false, 503, `at most ${maxConnections} connections`);
        }
        if (!guard.allowsOrigin(req.headers.origin)) {
          log.warn(
            { remote: req.socket.remoteAddress },
            'connection refused: a browser Origin not named by --allow-origin',
          );
          return done(false, 403, 'browser origins are refused');
        }
        if (!this.auth.allowsWorker(req)) {
          this.metrics.authFailures.inc({ kind: 'worker' });
          log.warn({ remote: req.socket.remoteAddress }, 'worker refused: missing or wrong worker token');
          return done(false, 401, 'worker token required');
        }
        done(true);
      },
    });
    const connOptions = {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      maxMessagesPerSecond: options.maxMessagesPerSecond,
    };
    // The WebSocket server re-emits the HTTP server's errors; `listen()` reports those (a
    // listener here keeps an EADDRINUSE from becoming an uncaught exception first).
    this.wss.on('error', (err) => log.debug({ err: err.message }, 'server error (reported by listen)'));
    this.wss.on('connection', (ws, req) => {
      const conn = new WorkerConnection(ws, req, connOptions, this.metrics, log);
      this.connections.add(conn);
      conn.once('registered', () => this.jobs.addWorker(conn));
      conn.once('closed', () => this.connections.delete(conn));
    });
  }

  /** Restores the job store (interrupted jobs resume), then listens. */
  async listen(): Promise<URL> {
    const { host, port } = this.options;
    const problem = tokenProblem({ workerToken: this.options.workerToken, apiToken: this.options.apiToken });
    if (problem) throw new Error(problem);
    if (!isLoopback(host) && !this.auth.secured) {
      if (!this.options.insecure) {
        throw new CoordinatorStartError(
          'INSECURE_WITHOUT_TOKENS',
          `refusing to serve ${host} without tokens: set --worker-token and --api-token (or GRADFLEET_WORKER_TOKEN / GRADFLEET_API_TOKEN), or pass --insecure on a trusted network`,
        );
      }
      this.options.logger.warn(
        { host },
        'INSECURE: serving a non-loopback address without tokens; anyone who reaches it can run jobs and join as a worker',
      );
    }
    if (!isLoopback(host) && !this.options.tls) {
      if (!this.options.insecure) {
        throw new CoordinatorStartError(
          'INSECURE_PLAINTEXT',
          `refusing to serve ${host} over plaintext: tokens and job data would cross the network readable; give --tls-cert and --tls-key, or pass --insecure on a trusted network (or behind a TLS proxy)`,
        );
      }
      this.options.logger.warn(
        { host },
        'INSECURE: serving a non-loopback address without TLS; tokens and data cross the network in cleartext',
      );
    }
    const threads = this.options.reducerThreads;
    if (threads > 0) {
      this.shardPool = await ShardPool.start(
        threads,
        {
          host,
          basePort: port === 0 ? 0 : port + 1, // shard k: --port + 1 + k
          workerToken: this.options.workerToken,
          tls: this.options.tls,
          helloTimeoutMs: this.options.handshakeTimeoutMs,
        },
        this.options.logger,
      ).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EADDRINUSE') throw err;
        throw new CoordinatorStartError(
          'SHARD_ADDRESS_IN_USE',
          `cannot listen on ${host}:${port + 1}-${port + threads} for the ${threads} reducer shard(s): a port is in use; choose another --port or fewer --reducer-threads`,
        );
      });
      this.jobs.shardPool = this.shardPool;
    }
    // Jobs are restored (records only; models are built when each starts) before any worker can connect.
    try {
      await this.datasets.load();
      await this.jobs.restore();
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, host, port)));
        this.server.listen(port, host, () => resolve());
      });
    } catch (err) {
      await this.shardPool?.close();
      throw err;
    }
    this.datasetFiles.start();
    const addr = this.server.address() as AddressInfo;
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return new URL(`${this.options.tls ? 'https' : 'http'}://${h}:${addr.port}`);
  }

  /** Stops serving. Running jobs are left to resume from their checkpoints after a restart. */
  async close(): Promise<void> {
    this.draining = true;
    this.datasetFiles.stop();
    this.jobs.stop();
    for (const c of this.connections) c.close(CLOSE_CODES.SHUTTING_DOWN, 'SHUTTING_DOWN: coordinator stopping');
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise((r) => setTimeout(r, 100)); // runners record PAUSED
    await this.shardPool?.close();
    this.store.close();
  }
}
