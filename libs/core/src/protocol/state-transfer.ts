import { z } from 'zod';
import { MAX_STATE_BYTES, MAX_STATE_CHUNK_BYTES, STATE_SEND_WINDOW } from './constants.js';
import { ProtocolError } from './protocol-error.js';

/**
 * Whole-model state transfers (initial weights, a replica's weights and optimizer state)
 * travel as a sequence of bounded messages, so no message grows with the model:
 *
 *   begin   `job-start` / `load-state` (coordinator) or `weights` (worker), no payload,
 *           with `state: { transfer, bytes, chunkBytes }`
 *   chunks  `state-chunk { transfer, index }` for index = 0 .. ceil(bytes / chunkBytes) - 1,
 *           payload = bytes [index * chunkBytes, min(bytes, (index + 1) * chunkBytes))
 *
 * The state is the float32 weights (`model.getWeights()` order) followed by the optimizer
 * state the begin message describes. Chunks follow their begin on the same connection, in
 * order, each of exactly its length; other messages (heartbeats, control) may come in
 * between. `chunkBytes` is the job's `bucketBytes` (at most `MAX_STATE_CHUNK_BYTES`, a
 * multiple of 4). A transfer of 0 bytes has no chunks. The receiver checks the declared
 * size against its limit and against the size the model implies before it allocates or
 * writes anything, and every chunk against the declaration (`TRANSFER_MISMATCH`).
 */
export const StateHeaderSchema = z.object({
  /** Sender-chosen number naming the transfer; its chunks repeat it. */
  transfer: z.number().int().nonnegative(),
  /** Total bytes of the state. */
  bytes: z.number().int().nonnegative(),
  /** Bytes of every chunk but the last. */
  chunkBytes: z
    .number()
    .int()
    .min(4)
    .max(MAX_STATE_CHUNK_BYTES)
    .refine((n) => n % 4 === 0, 'must be a multiple of 4'),
});
export type StateHeader = z.infer<typeof StateHeaderSchema>;

/** The chunk size of a job's transfers: its `bucketBytes`, rounded down to whole float32 values. */
export function stateChunkBytes(bucketBytes: number): number {
  return Math.max(4, bucketBytes - (bucketBytes % 4));
}

/** How many chunks a transfer of `bytes` in chunks of `chunkBytes` has. */
export function chunkCount(bytes: number, chunkBytes: number): number {
  return Math.ceil(bytes / chunkBytes);
}

/** Byte range `[start, end)` of chunk `index`. */
export function chunkRange(index: number, bytes: number, chunkBytes: number): [number, number] {
  const start = index * chunkBytes;
  return [start, Math.min(bytes, start + chunkBytes)];
}

/**
 * Number of float32 values of a state: the weights of `layout` (one shape per weight)
 * plus the optimizer tensors `specs`. Infinity when it would not be a safe integer, so a
 * hostile shape can never wrap around into a small, accepted size.
 */
export function stateValues(layout: readonly (readonly number[])[], specs: readonly { shape: number[] }[]): number {
  let n = 0;
  for (const shape of [...layout, ...specs.map((s) => s.shape)]) {
    let size = 1;
    for (const d of shape) size *= d;
    n += size;
    if (!Number.isSafeInteger(n)) return Infinity;
  }
  return n;
}

/** Where received chunks go: memory (worker) or files (coordinator). Writes come in order. */
export interface StateSink {
  /** Takes the bytes at `offset` (a view into the received message: copy or write it before resolving). */
  write(offset: number, bytes: Uint8Array): void | Promise<void>;
}

/** A float32 state received into memory, allocated once the declaration checked out. */
export class MemoryStateSink implements StateSink {
  readonly values: Float32Array;
  private readonly bytes: Uint8Array;

  constructor(byteLength: number) {
    this.values = new Float32Array(byteLength / 4);
    this.bytes = new Uint8Array(this.values.buffer);
  }

  write(offset: number, bytes: Uint8Array): void {
    this.bytes.set(bytes, offset);
  }
}

export interface StateReceiverOptions {
  /** Largest state accepted, in bytes. @defaultValue MAX_STATE_BYTES */
  maxBytes?: number;
  /** What the transfer is, for error messages. @defaultValue 'state' */
  what?: string;
}

/**
 * The receiving end of one transfer: checks the begin message's declaration (`expectedBytes`
 * is what the model implies), then each chunk (transfer, index, length) before handing it
 * to the sink. Out-of-order, duplicate, foreign, short or oversized chunks throw
 * `ProtocolError` (`TRANSFER_MISMATCH`); a declaration over the limit throws `MESSAGE_TOO_LARGE`.
 * Nothing is allocated before the declaration is checked: the sink is made by `makeSink`.
 */
export class StateReceiver<S extends StateSink = StateSink> {
  readonly header: StateHeader;
  readonly sink: S;
  readonly chunks: number;
  private next = 0;
  private writes: Promise<void> = Promise.resolve();
  private inFlightWrites = 0;
  private failed: Error | undefined;
  private readonly what: string;
  private resolveDone!: () => void;
  private rejectDone!: (err: Error) => void;
  /** Resolves once every chunk arrived and the sink took it; rejects on a sink error or `abort`. */
  readonly done: Promise<void>;

  constructor(
    header: StateHeader,
    expectedBytes: number,
    makeSink: (bytes: number) => S,
    options: StateReceiverOptions = {},
  ) {
    this.what = options.what ?? 'state';
    const max = options.maxBytes ?? MAX_STATE_BYTES;
    if (header.bytes > max)
      throw new ProtocolError('MESSAGE_TOO_LARGE', `${this.what} of ${header.bytes} bytes exceeds the limit of ${max}`);
    if (header.bytes !== expectedBytes)
      throw new ProtocolError(
        'TRANSFER_MISMATCH',
        `${this.what} declares ${header.bytes} bytes, the model implies ${expectedBytes}`,
      );
    if (header.chunkBytes > MAX_STATE_CHUNK_BYTES || header.chunkBytes < 4 || header.chunkBytes % 4 !== 0)
      throw new ProtocolError('TRANSFER_MISMATCH', `${this.what} chunk size ${header.chunkBytes} is not allowed`);
    this.header = header;
    this.chunks = chunkCount(header.bytes, header.chunkBytes);
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined); // observed through `done` by whoever awaits it
    this.sink = makeSink(header.bytes);
    if (this.chunks === 0) this.resolveDone();
  }

  /** Chunks received so far. */
  get received(): number {
    return this.next;
  }

  get complete(): boolean {
    return this.next === this.chunks;
  }

  /** Settles once the sink took every chunk accepted so far. */
  get flushed(): Promise<void> {
    return this.writes;
  }

  /** Sink writes not finished yet (the receiver's backpressure signal). */
  get pendingWrites(): number {
    return this.inFlightWrites;
  }

  /**
   * Takes chunk `index` of transfer `transfer`. Throws ProtocolError for anything the
   * declaration does not allow; the sink never sees such a chunk.
   */
  accept(transfer: number, index: number, payload: Uint8Array): void {
    const h = this.header;
    if (transfer !== h.transfer)
      throw new ProtocolError(
        'TRANSFER_MISMATCH',
        `chunk of transfer ${transfer}, ${this.what} is transfer ${h.transfer}`,
      );
    if (index >= this.chunks)
      throw new ProtocolError(
        'TRANSFER_MISMATCH',
        `${this.what} chunk ${index} past the last (${this.chunks} chunks of ${h.chunkBytes} bytes)`,
      );
    if (index < this.next) throw new ProtocolError('TRANSFER_MISMATCH', `${this.what} chunk ${index} arrived twice`);
    if (index > this.next)
      throw new ProtocolError('TRANSFER_MISMATCH', `${this.what} chunk ${index} arrived before chunk ${this.next}`);
    const [start, end] = chunkRange(index, h.bytes, h.chunkBytes);
    if (payload.byteLength !== end - start)
      throw new ProtocolError(
        'TRANSFER_MISMATCH',
        `${this.what} chunk ${index} of ${payload.byteLength} bytes, expected ${end - start}`,
      );
    this.next++;
    const last = this.complete;
    this.inFlightWrites++;
    this.writes = this.writes
      .then(() => (this.failed ? undefined : this.sink.write(start, payload)))
      .then(
        () => {
          this.inFlightWrites--;
          if (last && !this.failed) this.resolveDone();
        },
        (err: unknown) => {
          this.inFlightWrites--;
          this.abort(err instanceof Error ? err : new Error(String(err)));
        },
      );
  }

  /** Throws if chunks are still missing (the sender moved on to another message that needs them). */
  assertComplete(): void {
    if (!this.complete)
      throw new ProtocolError('TRANSFER_MISMATCH', `${this.what} ended after ${this.next} of ${this.chunks} chunks`);
  }

  /** Gives the transfer up (the sender is gone): `done` rejects with `err`, later chunks are not written. */
  abort(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.rejectDone(err);
  }
}

/** The bytes a sender sends: read in order, chunk by chunk. */
export interface StateSource {
  readonly bytes: number;
  /** Bytes `[offset, offset + length)`; the result must stay untouched until the chunk is written. */
  read(offset: number, length: number): Uint8Array | Promise<Uint8Array>;
}

/**
 * A state held as float32 arrays (weights, then optimizer state) sent without joining
 * them: a chunk is a view into one array, and only a chunk straddling two is copied.
 */
export class ArrayStateSource implements StateSource {
  readonly bytes: number;
  private readonly parts: Uint8Array[];

  constructor(parts: readonly Float32Array[]) {
    this.parts = parts.map((p) => new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    this.bytes = this.parts.reduce((n, p) => n + p.byteLength, 0);
  }

  read(offset: number, length: number): Uint8Array {
    let at = 0;
    for (const [i, p] of this.parts.entries()) {
      if (offset < at + p.byteLength) {
        const start = offset - at;
        if (start + length <= p.byteLength) return p.subarray(start, start + length);
        const out = new Uint8Array(length);
        let filled = 0;
        for (const q of [p.subarray(start), ...this.parts.slice(i + 1)]) {
          const take = Math.min(q.byteLength, length - filled);
          out.set(q.subarray(0, take), filled);
          filled += take;
          if (filled === length) break;
        }
        return out;
      }
      at += p.byteLength;
    }
    throw new RangeError(`read of ${length} bytes at ${offset} past the end (${this.bytes})`);
  }
}

/**
 * Sends `source` as the chunks of transfer `header`: `sendChunk` sends one chunk and
 * resolves once the socket wrote it. At most `window` chunks are queued at a time, so a
 * heartbeat queued behind them waits for at most `window` chunks.
 */
export async function sendStateChunks(
  source: StateSource,
  header: StateHeader,
  sendChunk: (index: number, payload: Uint8Array) => Promise<void>,
  window = STATE_SEND_WINDOW,
): Promise<void> {
  const queued: Promise<void>[] = [];
  const n = chunkCount(header.bytes, header.chunkBytes);
  for (let i = 0; i < n; i++) {
    const [start, end] = chunkRange(i, header.bytes, header.chunkBytes);
    const payload = await source.read(start, end - start);
    queued.push(sendChunk(i, payload));
    if (queued.length >= window) await queued.shift();
  }
  await Promise.all(queued);
}
