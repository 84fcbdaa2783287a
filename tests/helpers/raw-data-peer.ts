import { connect, type Socket } from 'node:net';
import {
  DATA_FRAME_HEADER_BYTES,
  DATA_FRAME_TYPES,
  dataFrame,
  readDataHeader,
  type DataFrameHeader,
} from '@gradfleet/core/dataplane';

/**
 * A hand-driven data-plane connection to a reducer shard (layout: libs/core/src/dataplane/data-frame.ts),
 * to send what no real worker would. `closed` resolves when the shard closes it, with any
 * REFUSE reason it sent first.
 */
export class RawDataPeer {
  readonly socket: Socket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ refused?: string }>;
  private received = Buffer.alloc(0);

  constructor(port: number, host = '127.0.0.1') {
    this.socket = connect({ port, host });
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (d: Buffer) => (this.received = Buffer.concat([this.received, d])));
    this.socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve(this.refusal())));
  }

  hello(jobId: string, workerId: string, token = ''): void {
    this.frame({ type: DATA_FRAME_TYPES.HELLO }, Buffer.from(JSON.stringify({ jobId, workerId, token })));
  }

  frame(h: Partial<Omit<DataFrameHeader, 'payloadBytes' | 'type'>> & { type: number }, payload: Uint8Array): void {
    const header = { flags: 0, round: 0, step: 0, bucket: 0, samples: 0, ...h } as Omit<
      DataFrameHeader,
      'payloadBytes'
    >;
    this.socket.write(dataFrame(header, payload));
  }

  /** The REFUSE reason in what the shard sent, if any. */
  private refusal(): { refused?: string } {
    let at = 0;
    while (at + DATA_FRAME_HEADER_BYTES <= this.received.length) {
      const h = readDataHeader(this.received.subarray(at));
      const body = this.received.subarray(at + DATA_FRAME_HEADER_BYTES, at + DATA_FRAME_HEADER_BYTES + h.payloadBytes);
      if (h.type === DATA_FRAME_TYPES.REFUSE) return { refused: body.toString('utf8') };
      at += DATA_FRAME_HEADER_BYTES + h.payloadBytes;
    }
    return {};
  }
}
