import WebSocket from 'ws';
import {
  PROTOCOL_VERSION,
  WORKER_WS_PATH,
  decodeCoordinatorMessage,
  encodeMessage,
  type CoordinatorMessage,
  type WorkerMessage,
} from '@gradfleet/core';

export interface Closed {
  code: number;
  reason: string;
}

/**
 * A hand-driven peer speaking the wire protocol directly, to send what no real worker
 * would. `closed` resolves with the close code the coordinator chose.
 */
export class RawWorker {
  readonly ws: WebSocket;
  readonly closed: Promise<Closed>;
  readonly opened: Promise<void>;
  private readonly waiters: {
    type: string;
    resolve: (m: { message: CoordinatorMessage; payload: Uint8Array }) => void;
  }[] = [];
  onMessage: ((message: CoordinatorMessage, payload: Uint8Array) => void) | undefined;
  /** The id the coordinator gave this peer in `welcome`. */
  workerId = '';

  constructor(wsUrl: string) {
    this.ws = new WebSocket(wsUrl + WORKER_WS_PATH, { perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    this.ws.on('message', (data: Buffer) => {
      const { message, payload } = decodeCoordinatorMessage(data);
      const i = this.waiters.findIndex((w) => w.type === message.t);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve({ message, payload });
      this.onMessage?.(message, payload);
    });
  }

  send(message: WorkerMessage | Record<string, unknown>, payload?: ArrayBufferView): void {
    this.ws.send(encodeMessage(message as WorkerMessage, payload));
  }

  sendRaw(data: Buffer | string): void {
    this.ws.send(data);
  }

  next(type: CoordinatorMessage['t']): Promise<{ message: CoordinatorMessage; payload: Uint8Array }> {
    return new Promise((resolve) => this.waiters.push({ type, resolve }));
  }

  /** Opens and completes the handshake. */
  async hello(name = 'raw', version = PROTOCOL_VERSION): Promise<void> {
    await this.opened;
    this.send({ t: 'hello', v: version, name, host: 'test', pid: process.pid, backend: 'none' });
    if (version === PROTOCOL_VERSION) {
      const { message } = await this.next('welcome');
      if (message.t === 'welcome') this.workerId = message.workerId;
    }
  }
}
