/**
 * Every protocol violation has a stable error code and a WebSocket close code (4xxx,
 * the range RFC 6455 leaves to applications). Codes never change meaning; new ones are
 * appended. `docs/protocol.md` lists them.
 */
export const CLOSE_CODES = {
  /** The frame could not be parsed: bad length prefix, bad msgpack, missing or ill-typed fields. */
  MALFORMED_FRAME: 4000,
  /** The handshake named a protocol version this side does not speak. */
  UNSUPPORTED_PROTOCOL_VERSION: 4001,
  /** The frame ends before the payload its header declares (or carries extra bytes). */
  TRUNCATED_FRAME: 4002,
  /** A message over the limit for its type (the transport-wide cap closes with 1009). */
  MESSAGE_TOO_LARGE: 4003,
  /** A message not allowed in the connection's current state (e.g. a gradient before `hello`). */
  UNEXPECTED_MESSAGE: 4004,
  /** A gradient whose length is not the model's parameter count. */
  GRADIENT_SIZE_MISMATCH: 4005,
  /** A gradient containing NaN or Infinity. It never reaches the model. */
  NON_FINITE_GRADIENT: 4006,
  /** A gradient or result for a job or step that is not in flight for this worker. */
  UNKNOWN_STEP: 4007,
  /** No message or heartbeat within the heartbeat timeout. */
  HEARTBEAT_TIMEOUT: 4008,
  /** The handshake did not complete in time. */
  HANDSHAKE_TIMEOUT: 4009,
  /** The worker's weights checksum disagrees with the other replicas. */
  REPLICA_DIVERGED: 4010,
  /** The worker reported that it cannot run the job (model, data or backend failure). */
  WORKER_FAILED: 4011,
  /** The coordinator is shutting down. */
  SHUTTING_DOWN: 4012,
  /** A gradient for a step where a result was already received from this worker. */
  DUPLICATE_MESSAGE: 4013,
  /** More messages per second than the coordinator accepts from one connection. */
  RATE_LIMITED: 4014,
  /** The peer does not read what it is sent: more than two steps of updates queued for it. */
  SLOW_READER: 4015,
  /**
   * A whole-model state transfer broke its declaration: a chunk out of order, duplicated,
   * of the wrong size or for another transfer, a size the model does not imply, or a
   * transfer left incomplete when the next message began.
   */
  TRANSFER_MISMATCH: 4016,
} as const;

export type ProtocolErrorCode = keyof typeof CLOSE_CODES;

/** Reverse lookup: close code -> stable error code (for logs and clients). */
export function errorCodeForClose(closeCode: number): ProtocolErrorCode | undefined {
  for (const [name, code] of Object.entries(CLOSE_CODES)) if (code === closeCode) return name as ProtocolErrorCode;
  return undefined;
}

/** A protocol violation. `closeCode` is what the socket is closed with. */
export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  readonly closeCode: number;
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.closeCode = CLOSE_CODES[code];
  }

  /** A WebSocket close reason must fit in 123 bytes; keep the code and a short message. */
  get closeReason(): string {
    return truncateUtf8(`${this.code}: ${this.message}`, 123);
  }
}

function truncateUtf8(text: string, maxBytes: number): string {
  let out = text;
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);
  return out;
}
