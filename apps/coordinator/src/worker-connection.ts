import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type WebSocket from 'ws';
import {
  CLOSE_CODES,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeWorkerMessage,
  encodeMessage,
  framePrefix,
  type CoordinatorMessageInput,
  type Logger,
  type WorkerInfo,
  type WorkerMessage,
  type WorkerStats,
} from '@gradfleet/core';
import type { CoordinatorMetrics } from './metrics.js';
import { RateMeter } from './rate-meter.js';

/** Payloads from this size on are sent as a shared second fragment rather than copied into a frame, in bytes. */
const SHARED_PAYLOAD_MIN_BYTES = 1024 * 1024;

/** Live per-worker figures for the API and `gradfleet status`. */
export class WorkerStatsTracker {
  private readonly meter = new RateMeter();
  steps = 0;
  samples = 0;
  computeMs = 0;
  /** Steps it arrived last in by a clear margin (`gradfleet_straggler_events_total`). */
  stragglerEvents = 0;
  /** Slices of its that went back to the pool unfinished (`gradfleet_excused_slices_total`). */
  excusedSlices = 0;
  /** Its chunk-cache lookups so far, as its last heartbeat said (chunked datasets). */
  chunkHits = 0;
  chunkMisses = 0;

  record(samples: number, computeMs: number): void {
    this.meter.add(samples);
    this.steps++;
    this.samples += samples;
    this.computeMs += computeMs;
  }

  snapshot(): WorkerStats {
    return {
      samplesPerSecond: this.meter.rate(),
      steps: this.steps,
      samples: this.samples,
      meanComputeMs: this.steps ? this.computeMs / this.steps : 0,
      stragglerEvents: this.stragglerEvents,
      excusedSlices: this.excusedSlices,
      ...(this.chunkHits + this.chunkMisses > 0
        ? { chunkCacheHitRatio: this.chunkHits / (this.chunkHits + this.chunkMisses) }
        : {}),
    };
  }
}

export interface ConnectionOptions {
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxMessagesPerSecond: number;
}

/** Job messages a connection hands to the job it is assigned to. */
export type JobMessage = Exclude<WorkerMessage, { t: 'hello' | 'heartbeat' }>;

export interface JobMessageHandler {
  /** May throw ProtocolError: the connection is then closed with its code. */
  /** `frameBytes`: the whole message as it came off the wire (header included). */
  onWorkerMessage(conn: WorkerConnection, message: JobMessage, payload: Uint8Array, frameBytes: number): void;
  onWorkerLost(conn: WorkerConnection, reason: string): void;
}

interface ConnectionEvents {
  registered: [];
  closed: [code: number, reason: string];
}

let nextId = 1;
/** Largest messages of the process, both ways (`gradfleet_ws_largest_message_bytes`). */
const largest = { sent: 0, received: 0 };

/**
 * One worker's WebSocket, coordinator side: handshake (protocol version), heartbeats both
 * ways, decoding and validation of every frame, and dispatch of job messages to the job
 * the worker is assigned to. Any violation closes the socket with its 4xxx code; nothing
 * a peer sends can throw past this class.
 */
export class WorkerConnection extends EventEmitter<ConnectionEvents> {
  readonly id = `w${nextId++}`;
  readonly stats = new WorkerStatsTracker();
  info: WorkerInfo | undefined;
  handler: JobMessageHandler | undefined;
  log: Logger;
  private closed = false;
  /** Settles once every whole-model state transfer started to this worker is sent (`JobRunnerCore.sendState`). */
  transfersDone: Promise<void> = Promise.resolve();
  private lastSeen = Date.now();
  /** Token bucket of the message rate limit. */
  private allowance: number;
  private refilledAt = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly handshakeTimer: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    req: IncomingMessage,
    private readonly options: ConnectionOptions,
    private readonly metrics: CoordinatorMetrics,
    log: Logger,
  ) {
    super();
    this.allowance = options.maxMessagesPerSecond * 2;
    this.log = log.child({ worker: this.id, remote: req.socket.remoteAddress });
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onFrame(data, isBinary));
    ws.on('close', (code, reason) => this.onClosed(code, reason.toString()));
    ws.on('error', (err: Error & { code?: string }) => {
      // Errors of the frame parser: ws closes the socket itself (1009 for an oversized
      // message, 1002/1007 for broken frames); count them with the protocol errors.
      const code = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'MESSAGE_TOO_LARGE' : 'MALFORMED_FRAME';
      this.metrics.protocolErrors.inc({ code });
      this.log.warn({ err: err.message, code }, 'socket error');
    });
    this.handshakeTimer = setTimeout(
      () => this.fail(new ProtocolError('HANDSHAKE_TIMEOUT', `no hello within ${options.handshakeTimeoutMs} ms`)),
      options.handshakeTimeoutMs,
    );
    this.timer = setInterval(() => this.tick(), options.heartbeatIntervalMs);
  }

  get registered(): boolean {
    return this.info !== undefined;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Bytes queued in the socket but not yet written (backpressure signal). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(message: CoordinatorMessageInput, payload?: ArrayBufferView, onSent?: () => void): void {
    if (!payload || payload.byteLength < SHARED_PAYLOAD_MIN_BYTES)
      return this.sendFrame(encodeMessage(message, payload), onSent);
    if (this.closed) return onSent?.();
    // Large payloads (a state chunk to every worker) are not copied into a frame per
    // worker: the header goes as a first fragment, the caller's buffer as the last.
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    const prefix = framePrefix(message, bytes.byteLength);
    this.noteSent(prefix.byteLength + bytes.byteLength);
    this.ws.send(prefix, { binary: true, fin: false });
    this.ws.send(bytes, { binary: true, fin: true }, onSent && (() => onSent()));
  }

  /** Sends a message and resolves once the socket wrote it (or the connection is gone). */
  sendAsync(message: CoordinatorMessageInput, payload?: ArrayBufferView): Promise<void> {
    return new Promise((resolve) => this.send(message, payload, resolve));
  }

  /**
   * Sends an already encoded frame (the same buffer may go to every worker). `onSent` runs
   * once the socket no longer needs the buffer (written, or the connection is gone).
   */
  sendFrame(frame: Buffer, onSent?: () => void): void {
    if (this.closed) return onSent?.();
    this.noteSent(frame.byteLength);
    this.ws.send(frame, { binary: true }, onSent && (() => onSent()));
  }

  /**
   * Stops reading the worker's socket (TCP then slows the sender down): a state transfer
   * arriving faster than the disk takes it waits in the kernel, not in this process.
   */
  pauseReading(): void {
    if (!this.closed) this.ws.pause();
  }

  resumeReading(): void {
    if (!this.closed) this.ws.resume();
    this.lastSeen = Date.now(); // the silence was this side's doing
  }

  private noteSent(bytes: number): void {
    if (bytes > largest.sent) this.metrics.largestMessage.set({ direction: 'sent' }, (largest.sent = bytes));
  }

  /** Closes the connection for a protocol violation, counting it by code. */
  fail(err: ProtocolError): void {
    if (this.closed) return;
    this.metrics.protocolErrors.inc({ code: err.code });
    this.log.warn({ code: err.code, closeCode: err.closeCode }, `closing worker: ${err.message}`);
    this.close(err.closeCode, err.closeReason);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws.close(code, reason);
    // A peer behind a dead link never completes the closing handshake.
    setTimeout(() => this.ws.terminate(), 2_000).unref();
    this.onClosed(code, reason);
  }

  private onClosed(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.info) {
      this.metrics.workerLeaves.inc();
      if (code === 1006 || code === CLOSE_CODES.HEARTBEAT_TIMEOUT) this.metrics.workerDeaths.inc();
      this.metrics.workerInfo.remove({
        worker: this.id,
        name: this.info.name,
        host: this.info.host,
        backend: this.info.backend,
        device: this.info.device ?? '',
      });
      this.metrics.workerTensors.remove({ worker: this.id });
      this.metrics.workerMemory.remove({ worker: this.id });
    }
    clearInterval(this.timer);
    clearTimeout(this.handshakeTimer);
    this.handler?.onWorkerLost(this, `connection closed (${code}${reason ? `: ${reason}` : ''})`);
    this.emit('closed', code, reason);
  }

  private tick(): void {
    const silent = Date.now() - this.lastSeen;
    if (silent > this.options.heartbeatTimeoutMs) {
      this.fail(new ProtocolError('HEARTBEAT_TIMEOUT', `silent for ${silent} ms`));
      this.ws.terminate();
      return;
    }
    if (this.registered) this.send({ t: 'heartbeat' });
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.closed) return;
    const now = Date.now();
    this.lastSeen = now;
    if (data.byteLength > largest.received)
      this.metrics.largestMessage.set({ direction: 'received' }, (largest.received = data.byteLength));
    const rate = this.options.maxMessagesPerSecond;
    this.allowance = Math.min(rate * 2, this.allowance + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
    if (--this.allowance < 0) return this.fail(new ProtocolError('RATE_LIMITED', `over ${rate} messages per second`));
    try {
      if (!isBinary) throw new ProtocolError('MALFORMED_FRAME', 'text frames are not part of the protocol');
      const { message, payload } = decodeWorkerMessage(data);
      this.dispatch(message, payload, data.byteLength);
    } catch (err) {
      if (err instanceof ProtocolError) this.fail(err);
      else {
        this.log.error({ err }, 'internal error handling a worker message');
        this.close(1011, 'internal error');
      }
    }
  }

  private dispatch(message: WorkerMessage, payload: Uint8Array, frameBytes: number): void {
    if (message.t === 'hello') {
      if (this.registered) throw new ProtocolError('UNEXPECTED_MESSAGE', 'second hello');
      if (message.v !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          'UNSUPPORTED_PROTOCOL_VERSION',
          `worker speaks protocol ${message.v}, coordinator speaks ${PROTOCOL_VERSION}`,
        );
      }
      clearTimeout(this.handshakeTimer);
      this.info = {
        id: this.id,
        name: message.name,
        host: message.host,
        backend: message.backend,
        ...(message.device ? { device: message.device } : {}),
        state: 'IDLE',
        connectedAt: new Date().toISOString(),
      };
      this.log = this.log.child({ name: message.name });
      this.log.info(
        { backend: message.backend, device: message.device, reason: message.backendReason },
        'worker registered',
      );
      this.metrics.workerJoins.inc();
      this.metrics.workerInfo.set(
        {
          worker: this.id,
          name: message.name,
          host: message.host,
          backend: message.backend,
          device: message.device ?? '',
        },
        1,
      );
      this.send({
        t: 'welcome',
        v: PROTOCOL_VERSION,
        workerId: this.id,
        heartbeatIntervalMs: this.options.heartbeatIntervalMs,
        heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
      });
      this.emit('registered');
      return;
    }
    if (!this.registered) throw new ProtocolError('UNEXPECTED_MESSAGE', `${message.t} before hello`);
    if (message.t === 'heartbeat') {
      if (message.numTensors !== undefined) this.metrics.workerTensors.set({ worker: this.id }, message.numTensors);
      if (message.numBytes !== undefined) this.metrics.workerMemory.set({ worker: this.id }, message.numBytes);
      if (message.chunkHits !== undefined) this.stats.chunkHits = message.chunkHits;
      if (message.chunkMisses !== undefined) this.stats.chunkMisses = message.chunkMisses;
      return;
    }
    if (message.t === 'failure' && !this.handler) {
      this.log.warn({ message: message.message }, 'worker reported a failure outside a job');
      return;
    }
    if (!this.handler) throw new ProtocolError('UNKNOWN_STEP', `${message.t} while no job is assigned to this worker`);
    this.handler.onWorkerMessage(this, message, payload, frameBytes);
  }
}
