/**
 * Wire protocol version. Both sides send it in the handshake (`hello` / `welcome`);
 * a peer speaking another version is closed with `UNSUPPORTED_PROTOCOL_VERSION`.
 * Bump it whenever a message's shape or meaning changes.
 */
export const PROTOCOL_VERSION = 3;

/**
 * Largest WebSocket message accepted, in bytes. Enforced by the frame parser of `ws`
 * (`maxPayload`) from the frame header, before any allocation. No message of the protocol
 * needs more than a bucket (at most 64 MiB): gradients, updates and whole-model state
 * (`state-chunk`) all travel in pieces of `bucketBytes`; 256 MiB leaves room for a
 * non-bucketed legacy peer to be refused with a clear code rather than a cut socket.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/**
 * Largest message that carries no tensor payload (handshake, control, results), in bytes.
 * A job spec with a Layers topology rides in `job-start`, so 4 MiB leaves room for big
 * topologies while a flood of oversized control frames is refused early.
 */
export const MAX_CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Most chunk indices one `prefetch` hint names: two steps of the largest global batch
 * (65,536 examples each) touch at most 131,072 chunks, but a worker's cache holds far fewer
 * (4,096 chunks of the default 4 MiB is 16 GiB), so hinting more would only churn it.
 */
export const MAX_PREFETCH_CHUNKS = 4096;

/**
 * Largest chunk of a whole-model state transfer (`state-chunk` payload), in bytes: the
 * largest `bucketBytes` a job spec accepts. Checked against the chunk size a transfer
 * declares before anything is allocated.
 */
export const MAX_STATE_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * Largest whole-model state (weights, then optimizer state) one transfer may declare, in
 * bytes. The receiver allocates (worker) or writes to disk (coordinator) this much, so the
 * declared size is checked against it, and against the size the model implies, first.
 * 4 GiB: 1 G float32 values, a ~330M-parameter model with Adam's two moment vectors; also
 * the largest typed array Node 20 allocates in one piece.
 */
export const MAX_STATE_BYTES = 4 * 1024 * 1024 * 1024;

/**
 * Optimizer state values per model weight a replica may report (Adam: 2, plus two scalars).
 * A worker declaring more is refused before its transfer is written anywhere.
 */
export const MAX_OPTIMIZER_VALUES_PER_WEIGHT = 4;

/**
 * State chunks a sender keeps queued in its socket before it waits for them to be written.
 * Two: the socket always has the next chunk ready while a heartbeat queued behind them
 * waits for at most two chunks, whatever the model's size.
 */
export const STATE_SEND_WINDOW = 2;

/** Largest msgpack header inside a frame, in bytes (same reason as above). */
export const MAX_HEADER_BYTES = MAX_CONTROL_MESSAGE_BYTES;

/**
 * Interval between application heartbeats, in ms, both ways. 2 s keeps the cost
 * negligible (a few bytes) while a dead peer is found well inside the timeout.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 2_000;

/**
 * A peer that sent nothing (heartbeat or any message) for this long is declared dead,
 * in ms. Five missed heartbeats: tolerant of GC pauses, still under 10 s.
 */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 10_000;

/** A connection that has not completed the handshake after this long is closed, in ms. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** WebSocket path workers connect to. */
export const WORKER_WS_PATH = '/v1/workers/ws';

/**
 * glibc allocator settings for coordinator and worker processes (read by glibc at process
 * start, so launchers set them: the CLI, the GPU supervisor, the images, the test cluster).
 * `ws` allocates a fresh buffer for every received message; by default glibc serves
 * multi-megabyte ones with mmap and returns them on free, so every bucket pays page faults
 * on fresh memory. Keeping them in the heap (mmap only from 64 MiB, trim only past 1 GiB
 * free) cut the coordinator's step at 16 workers x 10 MB from ~500 ms to ~350 ms here
 * (docs/benchmarks.md). The price: up to 1 GiB of freed memory may stay with the process.
 */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(64 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(1024 * 1024 * 1024),
};
