import { z } from 'zod';
import { MAX_CONTROL_MESSAGE_BYTES, MAX_PREFETCH_CHUNKS } from './constants.js';
import { decodeFrame, encodeFrame } from './frame.js';
import { printable } from './printable.js';
import { ProtocolError } from './protocol-error.js';
import { StateHeaderSchema } from './state-transfer.js';

const id = z.string().min(1).max(128);
/** Free text a worker supplies (names, reasons, messages): decoded printable, since it reaches terminals and logs. */
const text = (max: number) => z.string().max(max).transform(printable);
const count = z.number().int().nonnegative();
const finite = z.number().finite();
/** Correct predictions: a count, or with multilabel targets a sum of per-example fractions. */
const correct = z.number().finite().nonnegative();

/** Name, shape and dtype of one tensor in a payload made of several. */
export const TensorSpecSchema = z.object({
  name: z.string().max(256),
  shape: z.array(count).max(8),
  dtype: z.enum(['float32', 'int32']),
});
export type TensorSpec = z.infer<typeof TensorSpecSchema>;

/** A dataset split the coordinator serves over HTTP (`data-shard` format), with its integrity data. */
export const RemoteSplitSchema = z.object({ path: z.string().max(512), bytes: count, sha256: z.string().length(64) });
export type RemoteSplit = z.infer<typeof RemoteSplitSchema>;

/**
 * Where a named dataset's chunks lie in S3 (`dataStore: 's3'`): chunk keys are `prefix` +
 * `chunkName(split, index)`, derived on the worker. A location only: the worker reads it
 * with its own AWS environment (`s3ConfigFromEnv`); no credentials travel.
 */
export const S3LocationSchema = z.object({
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,62}$/),
  prefix: z.string().max(1024),
});
export type S3Location = z.infer<typeof S3LocationSchema>;

/**
 * Payload: chunk `index` of whole-model state transfer `transfer` (`state-transfer.ts`): the
 * bytes `[index * chunkBytes, ...)` of the state its begin message declared. Both directions.
 */
const StateChunkSchema = z.object({ t: z.literal('state-chunk'), transfer: count, index: count });

/** Messages a worker sends to the coordinator, keyed by `t`. */
export const WorkerMessageSchema = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('hello'),
    v: z.number().int(),
    name: text(256),
    host: text(256),
    pid: count,
    backend: text(64),
    device: text(256).optional(),
    backendReason: text(2048).optional(),
  }),
  /** Sent once the model is built and the data loaded; reports the dataset sizes it found. */
  z.object({
    t: z.literal('ready'),
    jobId: id,
    trainCount: count,
    testCount: count,
    validationCount: count.optional(),
  }),
  /**
   * Payload: bucket `bucket` of the gradient of the mean loss over `samples` examples (all
   * trainable weights concatenated, cut by the job's `bucketBytes`), encoded with the job's
   * `compression`. Buckets go in order 0, 1, ...; the step's numbers repeat in each.
   */
  z.object({
    t: z.literal('gradient'),
    jobId: id,
    step: count,
    bucket: count,
    samples: count,
    lossSum: finite,
    correct,
    /** Forward + backward time of this slice, in ms (the wait for its examples not included: `dataWaitMs`). */
    computeMs: finite,
    /** Time spent applying the previous step's update, in ms (0 for the first). */
    applyMs: finite.default(0),
    /** Time this slice's compute waited for its examples (chunks of a chunked dataset fetched), in ms; 0 for in-memory data and older workers. */
    dataWaitMs: finite.default(0),
  }),
  /**
   * Data-plane jobs: the worker's gradient for `round` goes to the reducer shards over its
   * data connections; this carries what the coordinator needs of it (no payload). Sent
   * before the buckets.
   */
  z.object({
    t: z.literal('gradient-sent'),
    jobId: id,
    step: count,
    round: count,
    samples: count,
    lossSum: finite,
    correct,
    computeMs: finite,
    applyMs: finite.default(0),
    dataWaitMs: finite.default(0),
  }),
  z.object({
    t: z.literal('eval-result'),
    jobId: id,
    requestId: count,
    lossSum: finite,
    correct,
    count,
    /** The sums of the job's `metrics` over the range (`metricSums`), when it lists any. */
    metrics: z.array(finite).max(1024).optional(),
  }),
  z.object({
    t: z.literal('checksum'),
    jobId: id,
    step: count,
    hash: z.string().max(64),
    sum: z.number(),
    /** Chain of SHA-256 digests of the update bytes applied in steps `from..step` (`UpdateStreamHash`). */
    stream: z.object({ from: count, hash: z.string().max(64) }).optional(),
  }),
  /**
   * Begins a state transfer (`state`; the `state-chunk`s follow): Float32 values of every
   * model weight (`model.getWeights()` order), then the optimizer state described by `optimizer`.
   */
  z.object({
    t: z.literal('weights'),
    jobId: id,
    requestId: count,
    optimizer: z.array(TensorSpecSchema).max(100_000).default([]),
    state: StateHeaderSchema,
  }),
  StateChunkSchema,
  /**
   * Heartbeats carry the backend's memory use (TF.js engine), for the metrics, and the
   * worker's chunk-cache lookups so far (hits, misses; chunked datasets), for its status.
   */
  z.object({
    t: z.literal('heartbeat'),
    numTensors: count.optional(),
    numBytes: count.optional(),
    chunkHits: count.optional(),
    chunkMisses: count.optional(),
  }),
  z.object({ t: z.literal('failure'), jobId: id.optional(), message: text(4096) }),
]);

/** Messages the coordinator sends to a worker, keyed by `t`. */
export const CoordinatorMessageSchema = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('welcome'),
    v: z.number().int(),
    workerId: id,
    heartbeatIntervalMs: count,
    heartbeatTimeoutMs: count,
  }),
  /**
   * Begins a state transfer (`state`; the `state-chunk`s follow): Float32 initial values of
   * every model weight, in `layout` order, then (when resuming from a checkpoint) the
   * optimizer state described by `optimizer`. `data`, when present, says where to fetch the
   * dataset from the coordinator.
   */
  z.object({
    t: z.literal('job-start'),
    jobId: id,
    spec: z.record(z.string(), z.unknown()),
    rank: count,
    worldSize: count,
    layout: z.array(z.array(count).max(8)).max(100_000),
    optimizer: z.array(TensorSpecSchema).max(100_000).default([]),
    state: StateHeaderSchema,
    /** `format: 'chunked'`: `train` (and `test`) name the manifest of a chunked dataset, its chunks next to it (or in `s3`). */
    data: z
      .object({
        train: RemoteSplitSchema,
        validation: RemoteSplitSchema.optional(),
        test: RemoteSplitSchema.optional(),
        format: z.literal('chunked').optional(),
        /** `dataStore: 's3'`: the chunks are read from this S3 location, the manifest still from the coordinator. */
        s3: S3LocationSchema.optional(),
      })
      .optional(),
    /**
     * Present when gradients travel on the data plane: the reducer shards (ports on the
     * coordinator's host) and the buckets `[start, end)` each owns, and the committed steps
     * the weights in the payload have seen.
     */
    dataPlane: z
      .object({
        step: count,
        shards: z.array(z.object({ port: z.number().int().min(1).max(65_535), start: count, end: count })).max(1024),
      })
      .optional(),
  }),
  /**
   * Payload: Uint32 example indices of this worker's slice of the global batch. On the data
   * plane, `round` names the attempt (a retried step gets a new one) and the replica
   * computes only once it has applied `step` updates.
   */
  z.object({ t: z.literal('train'), jobId: id, step: count, epoch: count, round: count.optional() }),
  /**
   * Chunked datasets: chunks of the training split this worker will probably train on in the
   * next steps (the sampler's plan with today's members), not hinted before; the worker
   * fetches those it lacks into its cache while it computes. A hint only: a step trains on
   * its `train` slice, whatever was hinted.
   */
  z.object({ t: z.literal('prefetch'), jobId: id, chunks: z.array(count).max(MAX_PREFETCH_CHUNKS) }),
  /**
   * Payload: bucket `bucket` of the sample-weighted mean gradient of the step, encoded with
   * the job's `compression`; every replica applies the whole once the last bucket is in.
   */
  z.object({ t: z.literal('update'), jobId: id, step: count, bucket: count, checksum: z.boolean() }),
  z.object({
    t: z.literal('evaluate'),
    jobId: id,
    requestId: count,
    split: z.enum(['validation', 'test']),
    start: count,
    end: count,
    /** Data plane: committed steps the replica must have applied first. */
    step: count.optional(),
  }),
  z.object({
    t: z.literal('fetch-weights'),
    jobId: id,
    requestId: count,
    withOptimizer: z.boolean().default(false),
    /** Data plane: committed steps the replica must have applied first. */
    step: count.optional(),
  }),
  /**
   * Begins a state transfer (`state`; the `state-chunk`s follow): Float32 weights then
   * optimizer state (`optimizer` describes it) of a live replica after `step`: a joining or
   * diverged worker takes them at a step boundary.
   */
  z.object({
    t: z.literal('load-state'),
    jobId: id,
    step: count,
    optimizer: z.array(TensorSpecSchema).max(100_000),
    state: StateHeaderSchema,
  }),
  StateChunkSchema,
  z.object({ t: z.literal('job-end'), jobId: id, state: z.string().max(32) }),
  z.object({ t: z.literal('heartbeat') }),
]);

export type WorkerMessage = z.infer<typeof WorkerMessageSchema>;
export type CoordinatorMessage = z.infer<typeof CoordinatorMessageSchema>;
/** What a sender writes: fields with defaults may be left out. */
export type WorkerMessageInput = z.input<typeof WorkerMessageSchema>;
export type CoordinatorMessageInput = z.input<typeof CoordinatorMessageSchema>;
export type WorkerMessageType = WorkerMessage['t'];
export type CoordinatorMessageType = CoordinatorMessage['t'];

/** Message types that carry a payload; every other type must have an empty one. */
const PAYLOAD_TYPES = new Set(['gradient', 'train', 'update', 'state-chunk']);

export interface Received<M> {
  message: M;
  /** Raw payload bytes, a view into the received buffer. */
  payload: Uint8Array;
}

function decodeWith<M>(schema: z.ZodType<M>, data: Uint8Array): Received<M> {
  const { header, payload } = decodeFrame(data);
  const parsed = schema.safeParse(header);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 't';
    throw new ProtocolError('MALFORMED_FRAME', `invalid message field ${where}: ${issue?.message ?? 'unknown'}`);
  }
  const type = (parsed.data as { t: string }).t;
  if (!PAYLOAD_TYPES.has(type)) {
    if (payload.byteLength > 0) throw new ProtocolError('MALFORMED_FRAME', `message ${type} carries no payload`);
    if (data.byteLength > MAX_CONTROL_MESSAGE_BYTES) {
      throw new ProtocolError(
        'MESSAGE_TOO_LARGE',
        `control message of ${data.byteLength} bytes exceeds ${MAX_CONTROL_MESSAGE_BYTES}`,
      );
    }
  }
  return { message: parsed.data, payload };
}

/** Decodes and validates a frame sent by a worker. Throws ProtocolError. */
export function decodeWorkerMessage(data: Uint8Array): Received<WorkerMessage> {
  return decodeWith(WorkerMessageSchema, data);
}

/** Decodes and validates a frame sent by the coordinator. Throws ProtocolError. */
export function decodeCoordinatorMessage(data: Uint8Array): Received<CoordinatorMessage> {
  return decodeWith(CoordinatorMessageSchema, data);
}

/** Encodes a message (and optional payload) into one frame. */
export function encodeMessage(
  message: WorkerMessageInput | CoordinatorMessageInput,
  payload?: ArrayBufferView,
): Buffer {
  return encodeFrame(message, payload);
}
