/**
 * The data plane (docs/architecture.md): reducer shards and the framing of the dedicated
 * gradient connections. A separate entry point (`@gradfleet/core/dataplane`) that loads no
 * TensorFlow.js, for shard threads and processes.
 */
export * from './data-frame.js';
export * from './data-frame-reader.js';
export * from './reducer-shard.js';
export * from './shard-assignment.js';
export * from './shard-host.js';
