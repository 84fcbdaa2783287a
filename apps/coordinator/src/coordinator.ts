import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import {
  CLOSE_CODES,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  WORKER_WS_PATH,
  type Logger,
} from '@gradfleet/core';
import { Authenticator, isLoopback } from './auth.js';
import { DatasetIngest } from './dataset-ingest.js';
import { createApiHandler } from './http-api.js';
import { JobManager } from './job-manager.js';
import { JobStore } from './job-store.js';
import { CoordinatorMetrics } from './metrics.js';
import { CoordinatorStartError, listenError } from './start-error.js';
import { WorkerConnection } from './worker-connection.js';

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
  /** Token workers must present; required (with `apiToken`) off loopback unless `insecure`. */
  workerToken?: string | undefined;
  /** Token API clients must present to submit and manage jobs. */
  apiToken?: string | undefined;
  /** Serve a non-loopback address without tokens (warned at every start). @defaultValue false */
  insecure?: boolean;
  /** Open worker connections accepted at once. @defaultValue 1024 */
  maxConnections?: number;
  /** Messages per second accepted from one connection (burst: twice that). @defaultValue 5000 */
  maxMessagesPerSecond?: number;
  /** Trainable parameters a job's model may have. @defaultValue 200_000_000 */
  maxModelParams?: number;
  /** Jobs running at once. @defaultValue 64 */
  maxConcurrentJobs?: number;
  /** Serve https:// and wss:// with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
  logger: Logger;
}

/** The coordinator process: job API, worker WebSocket endpoint and metrics on one port. */
export class Coordinator {
  readonly metrics = new CoordinatorMetrics();
  readonly jobs: JobManager;
  readonly store: JobStore;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<WorkerConnection>();
  private readonly auth: Authenticator;
  private draining = false;

  constructor(private readonly options: CoordinatorOptions) {
    const log = options.logger;
    if (options.jobSeriesGraceMs !== undefined) this.metrics.jobSeriesGraceMs = options.jobSeriesGraceMs;
    const dataDir = options.dataDir ?? '.gradfleet';
    this.store = new JobStore(dataDir);
    const ingest = new DatasetIngest(dataDir, options.maxUploadBytes);
    this.auth = new Authenticator({ workerToken: options.workerToken, apiToken: options.apiToken });
    this.jobs = new JobManager(this.metrics, log, this.store, ingest, dataDir, {
      maxModelParams: options.maxModelParams ?? 200_000_000,
      maxConcurrentJobs: options.maxConcurrentJobs ?? 64,
    });
    this.jobs.models.warm();
    const api = createApiHandler({
      jobs: this.jobs,
      store: this.store,
      ingest,
      metrics: this.metrics,
      log,
      auth: this.auth,
      draining: () => this.draining,
    });
    this.server = options.tls
      ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, api)
      : createServer(api);
    const maxConnections = options.maxConnections ?? 1024;
    this.wss = new WebSocketServer({
      server: this.server,
      path: WORKER_WS_PATH,
      maxPayload: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      verifyClient: ({ req }, done) => {
        if (this.connections.size >= maxConnections) {
          log.warn(
            { remote: req.socket.remoteAddress, maxConnections },
            'connection refused: --max-connections reached',
          );
          return done(false, 503, `at most ${maxConnections} connections`);
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
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      maxMessagesPerSecond: options.maxMessagesPerSecond ?? 5_000,
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
    const { host = '127.0.0.1', port = 7070 } = this.options;
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
    await this.jobs.restore();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, host, port)));
      this.server.listen(port, host, () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return new URL(`${this.options.tls ? 'https' : 'http'}://${h}:${addr.port}`);
  }

  /** Stops serving. Running jobs are left to resume from their checkpoints after a restart. */
  async close(): Promise<void> {
    this.draining = true;
    this.jobs.stop();
    for (const c of this.connections) c.close(CLOSE_CODES.SHUTTING_DOWN, 'SHUTTING_DOWN: coordinator stopping');
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise((r) => setTimeout(r, 100)); // runners record PAUSED
    this.store.close();
  }
}
