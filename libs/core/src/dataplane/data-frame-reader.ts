import { ProtocolError } from '../protocol/protocol-error.js';
import { DATA_FRAME_HEADER_BYTES, readDataHeader, type DataFrameHeader } from './data-frame.js';

/**
 * Streaming parser of data-plane frames (layout in `data-frame.ts`). Socket chunks are
 * copied once into a staging area that is allocated when the connection starts and reused
 * for every frame, so a bucket costs no allocation and nothing for the GC; the payload is
 * handed out as a view of that area, valid only until `onFrame` returns.
 *
 * `limit(header)` returns the most payload bytes a frame of that header may carry (or
 * throws): it runs on the header alone, before any payload byte is stored, so a peer can
 * never make the reader allocate or copy more than the job's largest bucket. Exact sizes
 * are the consumer's check (codecs refuse a bucket of the wrong size).
 */
export class DataFrameReader {
  private readonly head = new Uint8Array(DATA_FRAME_HEADER_BYTES);
  private headFill = 0;
  private header: DataFrameHeader | undefined;
  private staging: Uint8Array;
  private fill = 0;

  constructor(
    stagingBytes: number,
    private readonly limit: (h: DataFrameHeader) => number,
    private readonly onFrame: (h: DataFrameHeader, payload: Uint8Array) => void,
  ) {
    this.staging = new Uint8Array(new ArrayBuffer(Math.max(8, stagingBytes)));
  }

  /** Makes room for frames of up to `bytes` of payload (only ever up to what `limit` allowed). */
  reserve(bytes: number): void {
    if (bytes > this.staging.byteLength) this.staging = new Uint8Array(new ArrayBuffer(bytes));
  }

  /** Feeds the bytes of one socket read; throws ProtocolError on a bad frame. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.byteLength) {
      if (!this.header) {
        const n = Math.min(DATA_FRAME_HEADER_BYTES - this.headFill, chunk.byteLength - at);
        this.head.set(chunk.subarray(at, at + n), this.headFill);
        this.headFill += n;
        at += n;
        if (this.headFill < DATA_FRAME_HEADER_BYTES) return;
        const h = readDataHeader(this.head);
        const max = this.limit(h);
        if (h.payloadBytes > max)
          throw new ProtocolError(
            'MESSAGE_TOO_LARGE',
            `data frame of type ${h.type} declares ${h.payloadBytes} payload bytes, at most ${max} allowed`,
          );
        this.reserve(h.payloadBytes);
        this.header = h;
        this.fill = 0;
      }
      const h = this.header;
      const n = Math.min(h.payloadBytes - this.fill, chunk.byteLength - at);
      if (n > 0) this.staging.set(chunk.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === h.payloadBytes) {
        this.header = undefined;
        this.headFill = 0;
        this.onFrame(h, this.staging.subarray(0, h.payloadBytes));
      }
    }
  }
}
