import { describe, expect, it } from 'vitest';
import { MAX_STATE_BYTES } from './constants.js';
import { ProtocolError } from './protocol-error.js';
import {
  ArrayStateSource,
  MemoryStateSink,
  StateReceiver,
  chunkCount,
  sendStateChunks,
  stateValues,
  type StateHeader,
} from './state-transfer.js';

const header = (bytes: number, chunkBytes = 16, transfer = 7): StateHeader => ({ transfer, bytes, chunkBytes });
const memory = (h: StateHeader) => new StateReceiver(h, h.bytes, (n) => new MemoryStateSink(n));

/** The chunks a sender makes of `values` (weights then optimizer state), as they go out. */
async function chunksOf(parts: Float32Array[], h: StateHeader): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  await sendStateChunks(new ArrayStateSource(parts), h, async (index, payload) => {
    expect(index).toBe(out.length);
    out.push(payload.slice());
  });
  return out;
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProtocolError) return err.code;
    throw err;
  }
  return 'none';
}

describe('state transfer', () => {
  it('reassembles weights and optimizer state sent in chunks, a chunk straddling the two', async () => {
    const weights = Float32Array.from({ length: 10 }, (_, i) => i + 0.5);
    const optimizer = Float32Array.from({ length: 7 }, (_, i) => -i);
    const h = header(68, 16);
    const chunks = await chunksOf([weights, optimizer], h);
    expect(chunks.map((c) => c.byteLength)).toEqual([16, 16, 16, 16, 4]);
    const r = memory(h);
    chunks.forEach((c, i) => r.accept(7, i, c));
    await r.done;
    expect([...r.sink.values]).toEqual([...weights, ...optimizer]);
  });

  it('refuses a chunk out of order, twice, of the wrong size, past the end or of another transfer', () => {
    const chunk = new Uint8Array(16);
    expect(code(() => memory(header(64)).accept(7, 1, chunk))).toBe('TRANSFER_MISMATCH'); // out of order
    const dup = memory(header(64));
    dup.accept(7, 0, chunk);
    expect(code(() => dup.accept(7, 0, chunk))).toBe('TRANSFER_MISMATCH'); // duplicate
    expect(code(() => memory(header(64)).accept(7, 0, new Uint8Array(20)))).toBe('TRANSFER_MISMATCH'); // oversize
    expect(code(() => memory(header(64)).accept(7, 0, new Uint8Array(12)))).toBe('TRANSFER_MISMATCH'); // short
    expect(code(() => memory(header(60)).accept(7, 4, chunk))).toBe('TRANSFER_MISMATCH'); // past the last
    expect(code(() => memory(header(64)).accept(8, 0, chunk))).toBe('TRANSFER_MISMATCH'); // foreign transfer
    const last = memory(header(60));
    for (let i = 0; i < 3; i++) last.accept(7, i, chunk);
    expect(code(() => last.accept(7, 3, chunk))).toBe('TRANSFER_MISMATCH'); // last chunk is 12 bytes
    last.accept(7, 3, new Uint8Array(12));
    expect(last.complete).toBe(true);
  });

  it('reports a missing chunk when the sender moves on, and never completes without it', async () => {
    const r = memory(header(64));
    r.accept(7, 0, new Uint8Array(16));
    r.accept(7, 1, new Uint8Array(16));
    expect(r.complete).toBe(false);
    expect(code(() => r.assertComplete())).toBe('TRANSFER_MISMATCH');
    r.abort(new Error('sender gone'));
    await expect(r.done).rejects.toThrow('sender gone');
  });

  it('checks the declared size against the limit and the model before allocating', () => {
    let allocated = 0;
    const sink = (n: number) => {
      allocated += n;
      return new MemoryStateSink(n);
    };
    const huge = header(MAX_STATE_BYTES + 4);
    expect(code(() => new StateReceiver(huge, huge.bytes, sink))).toBe('MESSAGE_TOO_LARGE');
    expect(code(() => new StateReceiver(header(1024), 512, sink))).toBe('TRANSFER_MISMATCH');
    expect(code(() => new StateReceiver(header(64, 6), 64, sink))).toBe('TRANSFER_MISMATCH'); // not whole floats
    expect(code(() => new StateReceiver(header(64), 64, sink, { maxBytes: 32 }))).toBe('MESSAGE_TOO_LARGE');
    expect(allocated).toBe(0);
  });

  it('sizes states from shapes without overflow', () => {
    expect(stateValues([[3, 4], [4]], [{ shape: [2] }])).toBe(18);
    expect(stateValues([[2 ** 30, 2 ** 30, 2 ** 30]], [])).toBe(Infinity);
    expect(chunkCount(0, 16)).toBe(0);
    expect(chunkCount(17, 16)).toBe(2);
  });

  it('keeps at most the window of chunks queued in the socket', async () => {
    let queued = 0;
    let most = 0;
    const pending: (() => void)[] = [];
    const h = header(4 * 100, 16);
    const sending = sendStateChunks(new ArrayStateSource([new Float32Array(100)]), h, () => {
      most = Math.max(most, ++queued);
      return new Promise<void>((resolve) => pending.push(() => (queued--, resolve())));
    });
    for (let i = 0; i < chunkCount(h.bytes, h.chunkBytes); i++) {
      while (pending.length === 0) await new Promise((r) => setImmediate(r));
      pending.shift()!();
    }
    await sending;
    expect(most).toBe(2);
  });
});
