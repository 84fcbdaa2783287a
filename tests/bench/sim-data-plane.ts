/**
 * A simulated worker's data connections for the data-plane benchmark: one plain TCP
 * connection to each reducer shard `job-start` names, speaking the real data-frame
 * protocol (`@gradfleet/core/dataplane`): HELLO first, then GRADIENT frames for the
 * buckets each shard owns, and every UPDATE frame read through a `DataFrameReader` whose
 * header checks run as in a real worker. Payload bytes are not looked at (the simulated
 * worker applies nothing), only counted: `updates(round)` tells when a round is whole.
 */
import { connect, type Socket } from 'node:net';
import { DATA_FRAME_TYPES, DataFrameReader, MAX_HELLO_BYTES, dataFrame } from '@gradfleet/core/dataplane';

export interface SimShard {
  port: number;
  start: number;
  end: number;
}

export class SimDataPlane {
  private readonly sockets: Socket[] = [];
  private readonly owner: Int32Array;
  /** Update frames received per round. */
  private readonly received = new Map<number, number>();

  private constructor(
    readonly shards: SimShard[],
    buckets: number,
  ) {
    this.owner = new Int32Array(buckets).fill(-1);
    shards.forEach((s, k) => this.owner.fill(k, s.start, s.end));
    if (this.owner.includes(-1)) throw new Error('the shards do not cover every bucket');
  }

  /**
   * Opens one connection per shard and sends HELLO on each. `onRound(round, step)` runs
   * once every bucket of a round has arrived; `maxPayload(b)` bounds each update frame.
   */
  static async open(
    host: string,
    hello: { jobId: string; workerId: string },
    shards: SimShard[],
    buckets: number,
    maxPayload: (bucket: number) => number,
    onRound: (round: number, step: number) => void,
  ): Promise<SimDataPlane> {
    const dp = new SimDataPlane(shards, buckets);
    for (const s of shards) {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const c = connect({ host, port: s.port }, () => resolve(c));
        c.once('error', reject);
      });
      socket.setNoDelay(true);
      socket.on('error', (err) => {
        throw new Error(`simulated worker ${hello.workerId}: data connection to ${s.port}: ${err.message}`);
      });
      const reader = new DataFrameReader(
        maxPayload(s.start),
        (h) => {
          if (h.type === DATA_FRAME_TYPES.REFUSE) return MAX_HELLO_BYTES;
          if (h.type !== DATA_FRAME_TYPES.UPDATE || h.bucket < s.start || h.bucket >= s.end)
            throw new Error(`unexpected data frame type ${h.type} bucket ${h.bucket} from shard port ${s.port}`);
          return maxPayload(h.bucket);
        },
        (h, payload) => {
          if (h.type === DATA_FRAME_TYPES.REFUSE)
            throw new Error(`shard refused ${hello.workerId}: ${Buffer.from(payload).toString('utf8')}`);
          const n = (dp.received.get(h.round) ?? 0) + 1;
          if (n < buckets) return void dp.received.set(h.round, n);
          dp.received.delete(h.round);
          onRound(h.round, h.step);
        },
      );
      socket.on('data', (chunk: Buffer) => reader.push(chunk));
      socket.write(
        dataFrame(
          { type: DATA_FRAME_TYPES.HELLO, flags: 0, round: 0, step: 0, bucket: 0, samples: 0 },
          Buffer.from(JSON.stringify({ ...hello, token: '' })),
        ),
      );
      dp.sockets.push(socket);
    }
    return dp;
  }

  /** Sends a gradient frame for bucket `b` to the shard that owns it. */
  send(b: number, frame: Buffer): void {
    this.sockets[this.owner[b]!]!.write(frame);
  }

  /** Bytes read plus written on each shard's connection, in shard order (socket counters). */
  bytes(): number[] {
    return this.sockets.map((s) => s.bytesRead + s.bytesWritten);
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
  }
}
