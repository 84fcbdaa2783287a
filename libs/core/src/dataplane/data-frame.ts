import { ProtocolError } from '../protocol/protocol-error.js';

/**
 * Frames of the data plane: the dedicated TCP (or TLS) connections that carry gradient and
 * update buckets between workers and reducer shards, beside the WebSocket control plane.
 * `ws` only ever emits whole messages, each in a fresh Buffer; this framing is read
 * straight into a reusable staging area instead (`DataFrameReader`), so a bucket costs no
 * allocation on either side.
 *
 * Layout (little-endian), a fixed 32-byte header then the payload:
 *
 *   offset  size  field
 *        0     1  type          DATA_FRAME_TYPES
 *        1     1  version       DATA_PLANE_VERSION
 *        2     2  flags         bit 0: the replica reports its checksum after this update
 *        4     4  round         the coordinator's attempt number (a retried step gets a new round)
 *        8     4  step          the step this round computes (committed steps before it)
 *       12     4  bucket        bucket index in the job's BucketPlan
 *       16     4  samples       examples behind a gradient bucket (0 otherwise)
 *       20     4  payloadBytes  bytes that follow the header
 *       24     8  reserved      zero
 *
 * The header is a multiple of 8 bytes, so a payload read into an aligned staging area is
 * itself aligned and viewed as Float32 in place. `payloadBytes` is checked against the
 * limit for its type (`DataFrameReader`) before any byte of the payload is stored.
 */
export const DATA_FRAME_HEADER_BYTES = 32;
export const DATA_PLANE_VERSION = 1;

export const DATA_FRAME_TYPES = {
  /** Worker → shard, first frame: JSON `{ jobId, workerId, token }` (at most `MAX_HELLO_BYTES`). */
  HELLO: 1,
  /** Worker → shard: one encoded bucket of the worker's gradient. */
  GRADIENT: 2,
  /** Shard → worker: one encoded bucket of the averaged gradient. */
  UPDATE: 3,
  /** Either way, last frame: UTF-8 reason (at most `MAX_HELLO_BYTES`); the sender then closes. */
  REFUSE: 4,
} as const;
export type DataFrameType = (typeof DATA_FRAME_TYPES)[keyof typeof DATA_FRAME_TYPES];

/** Largest HELLO or REFUSE payload, in bytes: a job id, a worker id and a token fit many times over. */
export const MAX_HELLO_BYTES = 4096;

export const DATA_FLAG_CHECKSUM = 1;

export interface DataFrameHeader {
  type: DataFrameType;
  flags: number;
  round: number;
  step: number;
  bucket: number;
  samples: number;
  payloadBytes: number;
}

/** Writes `h` into the first 32 bytes of `out`. */
export function writeDataHeader(out: Uint8Array, h: DataFrameHeader): void {
  const v = new DataView(out.buffer, out.byteOffset, DATA_FRAME_HEADER_BYTES);
  v.setUint8(0, h.type);
  v.setUint8(1, DATA_PLANE_VERSION);
  v.setUint16(2, h.flags, true);
  v.setUint32(4, h.round, true);
  v.setUint32(8, h.step, true);
  v.setUint32(12, h.bucket, true);
  v.setUint32(16, h.samples, true);
  v.setUint32(20, h.payloadBytes, true);
  v.setUint32(24, 0, true);
  v.setUint32(28, 0, true);
}

/** Parses and checks a 32-byte header; throws ProtocolError on an unknown type or version. */
export function readDataHeader(bytes: Uint8Array): DataFrameHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset, DATA_FRAME_HEADER_BYTES);
  const type = v.getUint8(0);
  if (type < DATA_FRAME_TYPES.HELLO || type > DATA_FRAME_TYPES.REFUSE)
    throw new ProtocolError('MALFORMED_FRAME', `data frame of unknown type ${type}`);
  const version = v.getUint8(1);
  if (version !== DATA_PLANE_VERSION)
    throw new ProtocolError(
      'UNSUPPORTED_PROTOCOL_VERSION',
      `data plane version ${version}, expected ${DATA_PLANE_VERSION}`,
    );
  return {
    type: type as DataFrameType,
    flags: v.getUint16(2, true),
    round: v.getUint32(4, true),
    step: v.getUint32(8, true),
    bucket: v.getUint32(12, true),
    samples: v.getUint32(16, true),
    payloadBytes: v.getUint32(20, true),
  };
}

/** A whole frame (header + payload) in one fresh buffer: for small frames (HELLO, REFUSE). */
export function dataFrame(h: Omit<DataFrameHeader, 'payloadBytes'>, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(DATA_FRAME_HEADER_BYTES + payload.byteLength);
  writeDataHeader(out, { ...h, payloadBytes: payload.byteLength });
  out.set(payload, DATA_FRAME_HEADER_BYTES);
  return out;
}

/**
 * A reusable outgoing frame whose payload size is fixed (a gradient or dense update bucket):
 * producers encode straight into `payload`, `frame(header)` stamps the header in front.
 */
export class DataFrameWriter {
  readonly buffer: Buffer;
  readonly payload: Uint8Array;

  constructor(payloadBytes: number) {
    this.buffer = Buffer.allocUnsafeSlow(DATA_FRAME_HEADER_BYTES + payloadBytes);
    this.payload = this.buffer.subarray(DATA_FRAME_HEADER_BYTES);
  }

  /** Stamps the header for a payload of `payloadBytes` (default: all of it); returns the frame to send. */
  frame(h: Omit<DataFrameHeader, 'payloadBytes'>, payloadBytes = this.payload.byteLength): Buffer {
    if (payloadBytes > this.payload.byteLength) throw new RangeError(`${payloadBytes} bytes do not fit this writer`);
    writeDataHeader(this.buffer, { ...h, payloadBytes });
    return this.buffer.subarray(0, DATA_FRAME_HEADER_BYTES + payloadBytes);
  }
}
