import { describe, expect, it } from 'vitest';
import { FrameWriter, decodeFrame, encodeFrame, float32View, misalignedPayloadCopies, payloadOffset } from './frame.js';
import { decodeWorkerMessage, encodeMessage } from './messages.js';
import { CLOSE_CODES, ProtocolError } from './protocol-error.js';

function expectCode(fn: () => unknown, code: keyof typeof CLOSE_CODES): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe(code);
    expect((err as ProtocolError).closeCode).toBe(CLOSE_CODES[code]);
    return;
  }
  throw new Error(`expected ProtocolError ${code}`);
}

describe('frame codec', () => {
  const grad = Float32Array.from({ length: 1001 }, (_, i) => i * 0.5 - 3);

  it('round-trips a header and a float32 payload, decoding the payload as a view without copying', () => {
    const frame = encodeFrame({ t: 'x', step: 12345, name: 'abc' }, grad);
    const { header, payload } = decodeFrame(frame);
    expect(header).toMatchObject({ t: 'x', step: 12345, name: 'abc', pb: grad.byteLength });
    expect(payload.byteOffset % 8).toBe(0);
    const before = misalignedPayloadCopies();
    const view = float32View(payload);
    expect(view.buffer).toBe(frame.buffer);
    expect(misalignedPayloadCopies()).toBe(before);
    expect(Array.from(view)).toEqual(Array.from(grad));
  });

  it('keeps the payload 8-byte aligned whatever the header length', () => {
    for (let n = 0; n < 40; n++) {
      const frame = encodeFrame({ t: 'x', s: 'y'.repeat(n) }, grad);
      expect(payloadOffset(frame.readUInt32LE(0)) % 8).toBe(0);
    }
  });

  it('copies once when the received buffer is misaligned', () => {
    const frame = encodeFrame({ t: 'x' }, grad);
    const shifted = new Uint8Array(frame.byteLength + 1).subarray(1);
    shifted.set(frame);
    const before = misalignedPayloadCopies();
    const view = float32View(decodeFrame(shifted).payload);
    expect(misalignedPayloadCopies()).toBe(before + 1);
    expect(Array.from(view)).toEqual(Array.from(grad));
  });

  it('refuses truncated, malformed and oversized frames with their codes', () => {
    const frame = encodeFrame({ t: 'x' }, grad);
    expectCode(() => decodeFrame(frame.subarray(0, frame.length - 4)), 'TRUNCATED_FRAME');
    expectCode(() => decodeFrame(Buffer.concat([frame, Buffer.alloc(4)])), 'TRUNCATED_FRAME');
    expectCode(() => decodeFrame(frame.subarray(0, 2)), 'MALFORMED_FRAME');
    const huge = Buffer.from(frame);
    huge.writeUInt32LE(0xffffffff, 0);
    expectCode(() => decodeFrame(huge), 'MESSAGE_TOO_LARGE');
    const short = Buffer.from(frame);
    short.writeUInt32LE(frame.length, 0);
    expectCode(() => decodeFrame(short), 'TRUNCATED_FRAME');
    const garbage = Buffer.alloc(16, 0xc1); // 0xc1 is never valid msgpack
    garbage.writeUInt32LE(8, 0);
    expectCode(() => decodeFrame(garbage), 'MALFORMED_FRAME');
  });
});

describe('message validation', () => {
  it('accepts a valid gradient message', () => {
    const msg = {
      t: 'gradient',
      jobId: 'j',
      step: 3,
      bucket: 0,
      samples: 16,
      lossSum: 1.5,
      correct: 9,
      computeMs: 2,
      applyMs: 1,
    } as const;
    const { message, payload } = decodeWorkerMessage(encodeMessage(msg, new Float32Array(8)));
    expect(message).toEqual({ ...msg, dataWaitMs: 0 }); // a worker that does not send it waited for nothing
    expect(payload.byteLength).toBe(32);
  });

  it('refuses unknown types, missing fields and payloads on control messages', () => {
    expectCode(() => decodeWorkerMessage(encodeFrame({ t: 'nope' })), 'MALFORMED_FRAME');
    expectCode(() => decodeWorkerMessage(encodeFrame({ t: 'gradient', jobId: 'j' })), 'MALFORMED_FRAME');
    expectCode(() => decodeWorkerMessage(encodeFrame({ t: 'heartbeat' }, new Float32Array(4))), 'MALFORMED_FRAME');
    expectCode(
      () =>
        decodeWorkerMessage(
          encodeFrame({ t: 'gradient', jobId: 'j', step: -1, samples: 1, lossSum: 0, correct: 0, computeMs: 0 }),
        ),
      'MALFORMED_FRAME',
    );
  });
});

describe('FrameWriter', () => {
  it('reuses one buffer and produces frames that decode to the payload in place', () => {
    const w = new FrameWriter(4 * 100);
    const g = w.float32();
    for (let step = 0; step < 3; step++) {
      g.fill(step + 0.5);
      const frame = w.frame({ t: 'gradient', step, lossSum: step * 1.25, name: 'x'.repeat(step * 7) });
      expect(frame.buffer).toBe(w.payload.buffer);
      const { header, payload } = decodeFrame(frame);
      expect(header).toMatchObject({ step, pb: 400 });
      expect(payload.byteOffset).toBe(w.payload.byteOffset);
      expect(Array.from(float32View(payload)).every((v) => v === step + 0.5)).toBe(true);
    }
    expect(() => new FrameWriter(8, 8).frame({ t: 'x'.repeat(100) })).toThrow(RangeError);
  });
});
