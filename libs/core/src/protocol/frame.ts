import { Packr, Unpackr } from 'msgpackr';
import { MAX_HEADER_BYTES } from './constants.js';
import { ProtocolError } from './protocol-error.js';

/**
 * Binary frame layout (one WebSocket binary message):
 *
 *   [u32 LE headerBytes][msgpack header][zero padding to a multiple of 8][raw payload]
 *
 * The payload (gradients, weights, sample indices) starts at an 8-byte-aligned offset
 * from the start of the message, so it is viewed as a Float32Array/Uint32Array in place
 * whenever the received buffer itself is aligned (it is for all but tiny messages: `ws`
 * concatenates fragments into fresh allocations). msgpackr's own raw-bytes offset depends
 * on header values and is not aligned, which is why tensors never travel inside msgpack.
 * The header declares `pb` (payload bytes) and the frame must end exactly there.
 */
export const FRAME_PREFIX_BYTES = 4;
export const PAYLOAD_ALIGNMENT = 8;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export interface DecodedFrame {
  /** The msgpack header, not yet validated against a message schema. */
  header: Record<string, unknown>;
  /** The payload bytes as a view into the received buffer (no copy); empty when absent. */
  payload: Uint8Array;
}

export function payloadOffset(headerBytes: number): number {
  return align(FRAME_PREFIX_BYTES + headerBytes, PAYLOAD_ALIGNMENT);
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * Allocates a frame for `header` with room for `payloadBytes` bytes and returns it with
 * a view of the payload region, so producers write tensors straight into the frame
 * (one allocation, no intermediate copy).
 */
export function allocFrame(header: object, payloadBytes = 0): { frame: Buffer; payload: Uint8Array } {
  const head = packr.pack({ ...header, pb: payloadBytes });
  const start = payloadOffset(head.length);
  const frame = Buffer.allocUnsafeSlow(start + payloadBytes);
  frame.writeUInt32LE(head.length, 0);
  head.copy(frame, FRAME_PREFIX_BYTES);
  frame.fill(0, FRAME_PREFIX_BYTES + head.length, start);
  return { frame, payload: new Uint8Array(frame.buffer, frame.byteOffset + start, payloadBytes) };
}

/**
 * The bytes of a frame in front of its payload (length prefix, header, padding). Sent as
 * a first WebSocket fragment with the payload as the final one, the receiver gets the
 * usual frame while the sender shares one payload buffer among many peers (no copy).
 */
export function framePrefix(header: object, payloadBytes: number): Buffer {
  const head = packr.pack({ ...header, pb: payloadBytes });
  const start = payloadOffset(head.length);
  const prefix = Buffer.alloc(start);
  prefix.writeUInt32LE(head.length, 0);
  head.copy(prefix, FRAME_PREFIX_BYTES);
  return prefix;
}

/** Encodes a header and an optional payload into one frame (copies the payload once). */
export function encodeFrame(header: object, payload?: ArrayBufferView): Buffer {
  const bytes = payload ? new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength) : undefined;
  const { frame, payload: region } = allocFrame(header, bytes?.byteLength ?? 0);
  if (bytes) region.set(bytes);
  return frame;
}

/**
 * Splits a frame into header and payload view. Checks every length before touching the
 * bytes it covers; throws ProtocolError (MALFORMED_FRAME / TRUNCATED_FRAME / MESSAGE_TOO_LARGE).
 */
export function decodeFrame(data: Uint8Array, maxHeaderBytes = MAX_HEADER_BYTES): DecodedFrame {
  if (data.byteLength < FRAME_PREFIX_BYTES) {
    throw new ProtocolError('MALFORMED_FRAME', `frame of ${data.byteLength} bytes is shorter than its length prefix`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const headerBytes = view.getUint32(0, true);
  if (headerBytes === 0) throw new ProtocolError('MALFORMED_FRAME', 'empty header');
  if (headerBytes > maxHeaderBytes) {
    throw new ProtocolError('MESSAGE_TOO_LARGE', `header of ${headerBytes} bytes exceeds ${maxHeaderBytes}`);
  }
  if (FRAME_PREFIX_BYTES + headerBytes > data.byteLength) {
    throw new ProtocolError(
      'TRUNCATED_FRAME',
      `header declares ${headerBytes} bytes, frame has ${data.byteLength - FRAME_PREFIX_BYTES}`,
    );
  }
  let header: unknown;
  try {
    header = unpackr.unpack(data.subarray(FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + headerBytes));
  } catch (err) {
    throw new ProtocolError('MALFORMED_FRAME', `header is not valid msgpack (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ProtocolError('MALFORMED_FRAME', 'header is not a map');
  }
  const h = header as Record<string, unknown>;
  const declared = h['pb'];
  if (typeof declared !== 'number' || !Number.isSafeInteger(declared) || declared < 0) {
    throw new ProtocolError('MALFORMED_FRAME', 'header field pb (payload bytes) missing or invalid');
  }
  const start = payloadOffset(headerBytes);
  const actual = Math.max(0, data.byteLength - start);
  if (declared !== actual || (declared > 0 && start > data.byteLength)) {
    throw new ProtocolError('TRUNCATED_FRAME', `payload declared ${declared} bytes, frame carries ${actual}`);
  }
  return { header: h, payload: data.subarray(Math.min(start, data.byteLength)) };
}

let misalignedCopies = 0;

/** Copies bytes into a fresh (aligned) ArrayBuffer; `Buffer#slice` would only make a view. */
function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

/** How many payloads had to be copied because the received buffer was misaligned. */
export function misalignedPayloadCopies(): number {
  return misalignedCopies;
}

/** Views payload bytes as Float32 (little-endian) without copying when aligned; copies once otherwise. */
export function float32View(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new ProtocolError('MALFORMED_FRAME', `float32 payload of ${bytes.byteLength} bytes is not a multiple of 4`);
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  misalignedCopies++;
  return new Float32Array(alignedCopy(bytes));
}

/** Views payload bytes as Uint32 (little-endian) without copying when aligned; copies once otherwise. */
export function uint32View(bytes: Uint8Array): Uint32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new ProtocolError('MALFORMED_FRAME', `uint32 payload of ${bytes.byteLength} bytes is not a multiple of 4`);
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  misalignedCopies++;
  return new Uint32Array(alignedCopy(bytes));
}

/**
 * A reusable frame for messages whose payload size never changes (a worker's gradient):
 * the payload region stays at a fixed, 8-byte-aligned place and each `frame(header)` writes
 * the header just in front of it, so producers fill `payload` in place and sending
 * allocates nothing. A frame must not be rewritten before its previous send completed.
 */
export class FrameWriter {
  private readonly buf: Buffer;
  private readonly payloadAt: number;
  readonly payload: Uint8Array;

  constructor(payloadBytes: number, maxHeaderBytes = 1024) {
    this.payloadAt = payloadOffset(maxHeaderBytes);
    this.buf = Buffer.allocUnsafeSlow(this.payloadAt + payloadBytes);
    this.payload = new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.payloadAt, payloadBytes);
  }

  /** The payload region as Float32 (it is always aligned). */
  float32(): Float32Array {
    return new Float32Array(this.payload.buffer, this.payload.byteOffset, this.payload.byteLength / 4);
  }

  /** Writes `header` in front of the payload and returns the whole frame (a view, no copy). */
  frame(header: object): Buffer {
    const head = packr.pack({ ...header, pb: this.payload.byteLength });
    const start = this.payloadAt - payloadOffset(head.length);
    if (start < 0) throw new RangeError(`header of ${head.length} bytes does not fit this FrameWriter`);
    this.buf.writeUInt32LE(head.length, start);
    head.copy(this.buf, start + FRAME_PREFIX_BYTES);
    this.buf.fill(0, start + FRAME_PREFIX_BYTES + head.length, this.payloadAt);
    return this.buf.subarray(start);
  }
}
