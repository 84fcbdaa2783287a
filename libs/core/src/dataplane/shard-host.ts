import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { bucketCodec, type Compression } from '../compression/codec.js';
import { BucketPlan } from '../math/bucket-plan.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from '../protocol/constants.js';
import { ProtocolError } from '../protocol/protocol-error.js';
import { DATA_FRAME_TYPES, MAX_HELLO_BYTES, dataFrame, type DataFrameHeader } from './data-frame.js';
import { DataFrameReader } from './data-frame-reader.js';
import { ReducerShard, type ShardEvent, type ShardRoundPlan } from './reducer-shard.js';
import type { BucketRange } from './shard-assignment.js';

export interface ShardHostOptions {
  /** Address to listen on. @defaultValue '127.0.0.1' */
  host?: string;
  /** Port; 0 picks a free one. @defaultValue 0 */
  port?: number;
  /** Worker token every data connection must present; none on a loopback-only cluster. */
  workerToken?: string | undefined;
  /** TLS key pair, when the coordinator serves TLS. */
  tls?: { cert: Buffer | string; key: Buffer | string } | undefined;
  /** How long a connection may take to send its HELLO, in ms. @defaultValue DEFAULT_HANDSHAKE_TIMEOUT_MS */
  helloTimeoutMs?: number;
}

/** A job as a shard host needs it. */
export interface ShardJob {
  jobId: string;
  params: number;
  bucketBytes: number;
  compression: Compression;
  topkRatio: number;
  range: BucketRange;
  /** Hash each update bucket for the replica check (the job checks replicas). */
  hashUpdates: boolean;
}

/** Controller → host commands (the coordinator's job runner, through a thread port or a socket). */
export type ShardCommand =
  | ({ t: 'job' } & ShardJob)
  | { t: 'allow'; jobId: string; workers: string[] }
  | { t: 'begin'; jobId: string; plan: ShardRoundPlan }
  | { t: 'excuse'; jobId: string; round: number; worker: string }
  | { t: 'drop'; jobId: string; worker: string }
  | { t: 'abort'; jobId: string; round: number }
  | { t: 'end-job'; jobId: string };

interface Peer {
  socket: Socket;
  jobId?: string;
  worker?: string;
}

/** How long a finished job's data connections may stay open for their workers to close them, in ms. */
const END_JOB_GRACE_MS = 10_000;

const key = (jobId: string, worker: string) => `${jobId}\u0000${worker}`;
const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * A reducer shard's process side: one listening socket (its own, never the coordinator's
 * event loop) carrying every job's data connections, and one `ReducerShard` per job.
 * Runs as a coordinator thread today (`apps/coordinator/src/shard-pool.ts`); nothing in
 * it is tied to threads, so a shard process on another host can run the same class.
 *
 * Each connection first sends HELLO `{ jobId, workerId, token }`: the token is checked in
 * constant time, the worker must be one the controller allowed for that job, and a
 * connection that says nothing within the handshake timeout is closed. Every later frame
 * is checked against the job's plan from its header alone before its payload is stored.
 */
export class ShardHost {
  private readonly server: Server;
  private readonly jobs = new Map<string, { shard: ReducerShard; allowed: Set<string> }>();
  private readonly peers = new Map<string, Peer>();
  private readonly token: Buffer | undefined;

  constructor(
    private readonly options: ShardHostOptions,
    private readonly emit: (jobId: string, ev: ShardEvent) => void,
  ) {
    this.token = options.workerToken ? digest(options.workerToken) : undefined;
    const onConnection = (socket: Socket) => this.accept(socket);
    this.server = options.tls
      ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, onConnection)
      : createTcpServer(onConnection);
    this.server.on('error', () => undefined);
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  command(c: ShardCommand): void {
    switch (c.t) {
      case 'job': {
        const plan = new BucketPlan(c.params, c.bucketBytes);
        const link = {
          send: (worker: string, frame: Buffer, done: () => void) => {
            const p = this.peers.get(key(c.jobId, worker));
            if (!p || p.socket.destroyed) return false;
            p.socket.write(frame, () => done());
            return true;
          },
          queued: (worker: string) => this.peers.get(key(c.jobId, worker))?.socket.writableLength ?? 0,
        };
        const shard = new ReducerShard(
          c.jobId,
          plan,
          bucketCodec(c.compression, c.topkRatio),
          c.range,
          link,
          (ev) => this.onShardEvent(c.jobId, ev),
          c.hashUpdates,
        );
        this.jobs.set(c.jobId, { shard, allowed: new Set() });
        return;
      }
      case 'allow':
        for (const w of c.workers) this.jobs.get(c.jobId)?.allowed.add(w);
        return;
      case 'begin':
        return this.jobs.get(c.jobId)?.shard.begin(c.plan);
      case 'excuse':
        return this.jobs.get(c.jobId)?.shard.excuse(c.round, c.worker);
      case 'drop': {
        this.jobs.get(c.jobId)?.allowed.delete(c.worker);
        this.jobs.get(c.jobId)?.shard.lost(c.worker);
        this.peers.get(key(c.jobId, c.worker))?.socket.destroy();
        return;
      }
      case 'abort': {
        const job = this.jobs.get(c.jobId);
        if (job) job.shard.abort(c.round);
        else this.emit(c.jobId, { t: 'aborted', round: c.round });
        return;
      }
      case 'end-job': {
        this.jobs.delete(c.jobId);
        // Workers close their data connections when `job-end` reaches them; closing them here
        // first would look like a failure to a worker that has not read it yet.
        const leftovers = [...this.peers].filter(([, p]) => p.jobId === c.jobId);
        setTimeout(() => {
          for (const [k, p] of leftovers) {
            p.socket.destroy();
            if (this.peers.get(k) === p) this.peers.delete(k);
          }
        }, END_JOB_GRACE_MS).unref();
        return;
      }
    }
  }

  private onShardEvent(jobId: string, ev: ShardEvent): void {
    if (ev.t === 'failed') this.peers.get(key(jobId, ev.worker))?.socket.destroy();
    this.emit(jobId, ev);
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const peer: Peer = { socket };
    const timer = setTimeout(() => socket.destroy(), this.options.helloTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
    const refuse = (err: ProtocolError) => {
      if (!socket.destroyed)
        socket.end(
          dataFrame(
            { type: DATA_FRAME_TYPES.REFUSE, flags: 0, round: 0, step: 0, bucket: 0, samples: 0 },
            Buffer.from(err.closeReason),
          ),
        );
      socket.destroySoon?.();
      if (peer.jobId && peer.worker)
        this.emit(peer.jobId, { t: 'failed', worker: peer.worker, code: err.code, reason: err.message });
    };
    const limit = (h: DataFrameHeader): number => {
      if (!peer.worker) {
        if (h.type !== DATA_FRAME_TYPES.HELLO) throw new ProtocolError('UNEXPECTED_MESSAGE', 'data frame before HELLO');
        return MAX_HELLO_BYTES;
      }
      if (h.type !== DATA_FRAME_TYPES.GRADIENT)
        throw new ProtocolError('UNEXPECTED_MESSAGE', `data frame of type ${h.type} from a worker`);
      const job = this.jobs.get(peer.jobId!);
      if (!job) throw new ProtocolError('UNKNOWN_STEP', `job ${peer.jobId} is not running here`);
      return job.shard.maxPayload(h);
    };
    const reader = new DataFrameReader(MAX_HELLO_BYTES, limit, (h, payload) => {
      if (!peer.worker) {
        clearTimeout(timer);
        this.hello(peer, payload);
        return;
      }
      this.jobs.get(peer.jobId!)?.shard.gradient(peer.worker, h, payload);
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        socket.pause();
        refuse(err instanceof ProtocolError ? err : new ProtocolError('MALFORMED_FRAME', 'internal error'));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      if (!peer.jobId || !peer.worker) return;
      const k = key(peer.jobId, peer.worker);
      if (this.peers.get(k) !== peer) return;
      this.peers.delete(k);
      this.jobs.get(peer.jobId)?.shard.lost(peer.worker);
    });
  }

  private hello(peer: Peer, payload: Uint8Array): void {
    let hello: unknown;
    try {
      hello = JSON.parse(Buffer.from(payload).toString('utf8'));
    } catch {
      throw new ProtocolError('MALFORMED_FRAME', 'HELLO is not JSON');
    }
    const h = hello as { jobId?: unknown; workerId?: unknown; token?: unknown };
    if (typeof h.jobId !== 'string' || typeof h.workerId !== 'string')
      throw new ProtocolError('MALFORMED_FRAME', 'HELLO needs jobId and workerId strings');
    if (this.token) {
      const given = typeof h.token === 'string' ? digest(h.token) : Buffer.alloc(32);
      if (!timingSafeEqual(given, this.token))
        throw new ProtocolError('UNEXPECTED_MESSAGE', 'wrong or missing worker token');
    }
    const job = this.jobs.get(h.jobId);
    if (!job || !job.allowed.has(h.workerId))
      throw new ProtocolError('UNKNOWN_STEP', `worker ${h.workerId} is not in job ${h.jobId} on this shard`);
    peer.jobId = h.jobId;
    peer.worker = h.workerId;
    const k = key(h.jobId, h.workerId);
    this.peers.get(k)?.socket.destroy(); // a reconnecting worker replaces its old connection
    this.peers.set(k, peer);
    peer.socket.setTimeout(0);
  }

  async close(): Promise<void> {
    for (const p of this.peers.values()) p.socket.destroy();
    this.peers.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
