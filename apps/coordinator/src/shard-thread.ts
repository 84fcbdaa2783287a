/**
 * A reducer shard thread of the coordinator: its own event loop and its own listening
 * socket for workers' data connections, so gradient bytes never pass through the main
 * thread (a worker thread cannot take over a socket the main thread accepted).
 * Commands arrive from `ShardPool` on the parent port; events go back the same way.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ShardHost, type ShardCommand, type ShardHostOptions } from '@gradfleet/core/dataplane';

const port = parentPort!;
const host = new ShardHost(workerData as ShardHostOptions, (jobId, ev) => port.postMessage({ t: 'event', jobId, ev }));
port.on('message', (c: ShardCommand) => {
  try {
    host.command(c);
  } catch (err) {
    port.postMessage({ t: 'error', jobId: 'jobId' in c ? c.jobId : undefined, message: (err as Error).message });
  }
});
port.postMessage({ t: 'listening', port: await host.listen() });
