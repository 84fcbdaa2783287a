/**
 * A minimal WebSocket client for the coordinator benchmark's simulated workers: it keeps
 * only the first bytes of each incoming message (enough for gradfleet's frame header) and
 * counts the rest without copying, and sends frames as a 14-byte WebSocket header plus the
 * caller's buffer (zero masking key, so the buffer goes out unchanged). Real workers use
 * `ws`; this keeps the simulated side as light as the raw-TCP baseline's clients, so the
 * benchmark measures the coordinator rather than its clients.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface LightMessage {
  /** The first `min(length, keepBytes)` bytes of the message. */
  head: Buffer;
  /** The whole message length in bytes. */
  length: number;
}

export class LightWebSocket {
  private readonly socket: Socket;
  private upgraded = false;
  private pending: Buffer = Buffer.alloc(0);
  private head: Buffer[] = [];
  private headBytes = 0;
  private messageBytes = 0;
  private frameLeft = 0;
  private fin = false;
  private opcode = 0;
  onopen: () => void = () => undefined;
  onmessage: (m: LightMessage) => void = () => undefined;
  onclose: () => void = () => undefined;

  constructor(
    url: string,
    private readonly keepBytes = 256 * 1024,
  ) {
    const u = new URL(url);
    this.socket = connect({ host: u.hostname, port: Number(u.port) }, () => {
      this.socket.setNoDelay(true);
      this.socket.write(
        `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('close', () => this.onclose());
    this.socket.on('error', () => undefined);
  }

  /** Sends one binary message (client frames are masked; the key is zero, so `data` is sent as is). */
  send(data: Uint8Array): void {
    const n = data.byteLength;
    const h = Buffer.alloc(n < 126 ? 6 : n < 65536 ? 8 : 14);
    h[0] = 0x82;
    if (n < 126) h[1] = 0x80 | n;
    else if (n < 65536) {
      h[1] = 0x80 | 126;
      h.writeUInt16BE(n, 2);
    } else {
      h[1] = 0x80 | 127;
      h.writeBigUInt64BE(BigInt(n), 2);
    }
    this.socket.cork();
    this.socket.write(h);
    this.socket.write(data);
    this.socket.uncork();
  }

  close(): void {
    this.socket.destroy();
  }

  /** Bytes read plus written on the underlying socket so far (its own counters). */
  bytes(): number {
    return this.socket.bytesRead + this.socket.bytesWritten;
  }

  private onData(d: Buffer): void {
    let buf: Buffer = this.pending.length ? Buffer.concat([this.pending, d]) : d;
    this.pending = Buffer.alloc(0);
    if (!this.upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return void (this.pending = buf);
      if (!buf.subarray(0, 12).toString().includes('101'))
        throw new Error(`upgrade refused: ${buf.subarray(0, end).toString()}`);
      this.upgraded = true;
      buf = buf.subarray(end + 4);
      this.onopen();
    }
    while (buf.length > 0) {
      if (this.frameLeft > 0) {
        const take = Math.min(this.frameLeft, buf.length);
        this.keep(buf.subarray(0, take));
        this.frameLeft -= take;
        buf = buf.subarray(take);
        if (this.frameLeft === 0) this.frameDone();
        continue;
      }
      if (buf.length < 2) return void (this.pending = Buffer.from(buf));
      const len7 = buf[1]! & 0x7f;
      const hl = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
      if (buf.length < hl) return void (this.pending = Buffer.from(buf));
      this.fin = (buf[0]! & 0x80) !== 0;
      const op = buf[0]! & 0x0f;
      if (op !== 0) this.opcode = op;
      this.frameLeft = len7 < 126 ? len7 : len7 === 126 ? buf.readUInt16BE(2) : Number(buf.readBigUInt64BE(2));
      buf = buf.subarray(hl);
      if (this.frameLeft === 0) this.frameDone();
    }
  }

  private keep(part: Buffer): void {
    this.messageBytes += part.length;
    if (this.headBytes < this.keepBytes) {
      const p = part.subarray(0, this.keepBytes - this.headBytes);
      this.head.push(Buffer.from(p));
      this.headBytes += p.length;
    }
  }

  private frameDone(): void {
    if (!this.fin) return;
    const message = { head: Buffer.concat(this.head), length: this.messageBytes };
    this.head = [];
    this.headBytes = 0;
    this.messageBytes = 0;
    if (this.opcode === 0x8) return this.close();
    if (this.opcode === 0x9) return; // ping: gradfleet uses application heartbeats
    if (this.opcode === 0x2) this.onmessage(message);
  }
}
