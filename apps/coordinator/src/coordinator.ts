import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import {
  CLOSE_CODES, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES, WORKER_WS_PATH, type Logger,
} from '@gradfleet/core';
import { DatasetIngest } from './dataset-ingest.js';
import { createApiHandler } from './http-api.js';
import { JobManager } from './job-manager.js';
import { JobStore } from './job-store.js';
import { CoordinatorMetrics } from './metrics.js';
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
  /** @defaultValue DEFAULT_HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** Where jobs, checkpoints, datasets and models are kept. @defaultValue './.gradfleet' */
  dataDir?: string;
  /** Largest dataset upload or URL download, in bytes. @defaultValue DEFAULT_MAX_DATASET_BYTES */
  maxUploadBytes?: number;
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

  constructor(private readonly options: CoordinatorOptions) {
    const log = options.logger;
    const dataDir = options.dataDir ?? '.gradfleet';
    this.store = new JobStore(dataDir);
    const ingest = new DatasetIngest(dataDir, options.maxUploadBytes);
    this.jobs = new JobManager(this.metrics, log, this.store, ingest, dataDir);
    this.server = createServer(createApiHandler({ jobs: this.jobs, store: this.store, ingest, metrics: this.metrics, log }));
    this.wss = new WebSocketServer({
      server: this.server,
      path: WORKER_WS_PATH,
      maxPayload: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
    });
    const connOptions = {
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    };
    this.wss.on('connection', (ws, req) => {
      const conn = new WorkerConnection(ws, req, connOptions, this.metrics, log);
      this.connections.add(conn);
      conn.once('registered', () => this.jobs.addWorker(conn));
      conn.once('closed', () => this.connections.delete(conn));
    });
  }

  /** Restores the job store (interrupted jobs resume), then listens. */
  async listen(): Promise<URL> {
    await this.jobs.restore();
    const { host = '127.0.0.1', port = 7070 } = this.options;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return new URL(`http://${h}:${addr.port}`);
  }

  /** Stops serving. Running jobs are left to resume from their checkpoints after a restart. */
  async close(): Promise<void> {
    this.jobs.stop();
    for (const c of this.connections) c.close(CLOSE_CODES.SHUTTING_DOWN, 'SHUTTING_DOWN: coordinator stopping');
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise((r) => setTimeout(r, 100)); // runners record PAUSED
    this.store.close();
  }
}
