import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { ProtocolError } from '@gradfleet/core';
import {
  DATA_FRAME_TYPES,
  DataFrameReader,
  MAX_HELLO_BYTES,
  dataFrame,
  type DataFrameHeader,
} from '@gradfleet/core/dataplane';

/** One reducer shard as `job-start` announces it: a port on the coordinator's host and its buckets. */
export interface ShardEndpoint {
  port: number;
  start: number;
  end: number;
}

export interface DataPlaneClientOptions {
  /** The coordinator's host name or address (shards listen beside it). */
  host: string;
  /** Verify the shards' TLS certificates against this CA; plain TCP when `tls` is false. */
  tls: boolean;
  ca?: Buffer | undefined;
  token?: string | undefined;
  jobId: string;
  workerId: string;
  shards: ShardEndpoint[];
  /** Most payload bytes an update frame for bucket `b` may carry. */
  maxUpdateBytes(b: number): number;
  /** One update bucket arrived (the payload view is valid only during the call). */
  onUpdate(h: DataFrameHeader, payload: Uint8Array): void;
  /** A data connection failed or a shard refused us: the job cannot go on here. */
  onError(err: Error): void;
}

/** How long to wait for a shard to accept the connection, in ms. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * A worker's data connections: one to each reducer shard of its job, over which it sends
 * the buckets the shard owns and receives the averaged buckets back. Frames are read into
 * one reusable staging area per connection (`DataFrameReader`); every header is checked
 * against the job's plan before its payload is stored.
 */
export class DataPlaneClient {
  private closed = false;

  private constructor(
    private readonly sockets: Socket[],
    private readonly owner: Int32Array,
  ) {}

  static async connect(o: DataPlaneClientOptions, buckets: number): Promise<DataPlaneClient> {
    const owner = new Int32Array(buckets).fill(-1);
    o.shards.forEach((s, k) => {
      if (s.start > s.end || s.end > buckets)
        throw new ProtocolError('MALFORMED_FRAME', `shard ${k} owns buckets [${s.start}, ${s.end}) of ${buckets}`);
      for (let b = s.start; b < s.end; b++) owner[b] = k;
    });
    if (owner.includes(-1)) throw new ProtocolError('MALFORMED_FRAME', 'the shards do not cover every bucket');
    const sockets = await Promise.all(o.shards.map((s) => DataPlaneClient.open(o, s)));
    const client = new DataPlaneClient(sockets, owner);
    sockets.forEach((socket, k) => client.read(o, socket, o.shards[k]!));
    return client;
  }

  private static open(o: DataPlaneClientOptions, s: ShardEndpoint): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = o.tls
        ? connectTls({ host: o.host, port: s.port, ...(o.ca ? { ca: o.ca } : {}), servername: o.host })
        : connectTcp({ host: o.host, port: s.port });
      const timer = setTimeout(
        () => socket.destroy(new Error(`no answer from shard port ${s.port}`)),
        CONNECT_TIMEOUT_MS,
      );
      socket.once(o.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.setNoDelay(true);
        const hello = Buffer.from(JSON.stringify({ jobId: o.jobId, workerId: o.workerId, token: o.token ?? '' }));
        socket.write(
          dataFrame({ type: DATA_FRAME_TYPES.HELLO, flags: 0, round: 0, step: 0, bucket: 0, samples: 0 }, hello),
        );
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot reach reducer shard ${o.host}:${s.port}: ${err.message}`));
      });
    });
  }

  private read(o: DataPlaneClientOptions, socket: Socket, s: ShardEndpoint): void {
    const limit = (h: DataFrameHeader): number => {
      if (h.type === DATA_FRAME_TYPES.REFUSE) return MAX_HELLO_BYTES;
      if (h.type !== DATA_FRAME_TYPES.UPDATE)
        throw new ProtocolError('UNEXPECTED_MESSAGE', `data frame of type ${h.type} from a shard`);
      if (h.bucket < s.start || h.bucket >= s.end)
        throw new ProtocolError(
          'MALFORMED_FRAME',
          `update bucket ${h.bucket} from the shard of [${s.start}, ${s.end})`,
        );
      return o.maxUpdateBytes(h.bucket);
    };
    const reader = new DataFrameReader(o.maxUpdateBytes(s.start), limit, (h, payload) => {
      if (h.type === DATA_FRAME_TYPES.REFUSE)
        throw new Error(`reducer shard refused this worker: ${Buffer.from(payload).toString('utf8').slice(0, 200)}`);
      o.onUpdate(h, payload);
    });
    const fail = (err: Error) => {
      if (this.closed) return;
      this.close();
      o.onError(err);
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        fail(err as Error);
      }
    });
    socket.on('error', (err) => fail(new Error(`data connection to port ${s.port}: ${err.message}`)));
    socket.on('close', () => fail(new Error(`data connection to port ${s.port} closed`)));
  }

  /** Sends bucket `b` to the shard that owns it; `done` runs once the socket wrote it. */
  send(b: number, frame: Buffer, done: () => void): void {
    const socket = this.sockets[this.owner[b]!]!;
    if (socket.destroyed) return done();
    socket.write(frame, () => done());
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
  }
}
