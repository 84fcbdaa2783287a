#!/usr/bin/env node
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Command } from 'commander';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_MAX_MESSAGE_BYTES, createLogger } from '@gradfleet/core';
import { Coordinator } from './coordinator.js';
import { DEFAULT_MAX_DATASET_BYTES } from './dataset-ingest.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`);
  return n;
};

const program = new Command('gradfleet coordinator')
  .description('Run the gradfleet coordinator: job API, worker endpoint and /metrics on one port.')
  .option('--host <host>', 'address to bind', process.env['GRADFLEET_HOST'] ?? '127.0.0.1')
  .option('-p, --port <port>', 'port (0 picks a free one)', int('--port'), Number(process.env['GRADFLEET_PORT'] ?? 7070))
  .option('--max-message-bytes <n>', 'largest WebSocket message accepted', int('--max-message-bytes'), DEFAULT_MAX_MESSAGE_BYTES)
  .option('--heartbeat-interval-ms <n>', 'heartbeat interval', int('--heartbeat-interval-ms'), DEFAULT_HEARTBEAT_INTERVAL_MS)
  .option('--heartbeat-timeout-ms <n>', 'declare a silent worker dead after this long', int('--heartbeat-timeout-ms'), DEFAULT_HEARTBEAT_TIMEOUT_MS)
  .option('--data-dir <dir>', 'where jobs, checkpoints, datasets and models are kept', process.env['GRADFLEET_DATA_DIR'] ?? '.gradfleet')
  .option('--max-upload-bytes <n>', 'largest dataset upload or download accepted', int('--max-upload-bytes'), DEFAULT_MAX_DATASET_BYTES)
  .option('--announce', 'print "GRADFLEET_LISTENING <url>" on stdout once listening')
  .parse();

const opts = program.opts<{ host: string; port: number; maxMessageBytes: number; heartbeatIntervalMs: number; heartbeatTimeoutMs: number; announce?: boolean; dataDir: string; maxUploadBytes: number }>();
const logger = createLogger('coordinator');
// The coordinator only builds models to validate specs and draw initial weights.
tf.env().set('IS_TEST', true);
await tf.setBackend('cpu');

const coordinator = new Coordinator({ ...opts, logger });
try {
  const url = await coordinator.listen();
  logger.info({ url: url.href }, 'coordinator listening');
  if (opts.announce) process.stdout.write(`GRADFLEET_LISTENING ${url.href}\n`);
} catch (err) {
  logger.error({ err: (err as Error).message }, `cannot listen on ${opts.host}:${opts.port}; is another coordinator running? Use --port`);
  process.exit(1);
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    logger.info({ signal: sig }, 'shutting down');
    void coordinator.close().then(() => process.exit(0));
  });
}
