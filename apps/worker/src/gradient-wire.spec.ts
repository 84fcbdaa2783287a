import { describe, expect, it } from 'vitest';
import { decodeFrame, parseJobSpec } from '@gradfleet/core';
import { GradientWire } from './gradient-wire.js';

const header = {
  t: 'gradient' as const,
  jobId: 'j',
  step: 0,
  samples: 1,
  lossSum: 0,
  correct: 0,
  computeMs: 0,
  applyMs: 0,
};

function sendAll(wire: GradientWire): Uint8Array[] {
  const frames: Uint8Array[] = [];
  wire.send(header, (frame, done) => {
    frames.push(Uint8Array.from(frame)); // what the socket would carry
    done();
  });
  return frames.map((f) => decodeFrame(f).payload);
}

describe('GradientWire', () => {
  it('cuts the gradient into ordered bucket frames and reassembles an update exactly', () => {
    const wire = new GradientWire(1000, parseJobSpec({ bucketBytes: 1024 }));
    expect(wire.plan.count).toBe(4); // 256 floats per bucket
    wire.gradient.set(Float32Array.from({ length: 1000 }, (_, i) => i / 7));
    const payloads = sendAll(wire);
    expect(payloads.map((p) => p.byteLength)).toEqual([1024, 1024, 1024, 1000 * 4 - 3 * 1024]);
    let mean: Float32Array | undefined;
    payloads.forEach((p, b) => (mean = wire.receive(b, p)));
    expect(Array.from(mean!)).toEqual(Array.from(wire.gradient));
    expect(() => wire.receive(1, payloads[1]!)).toThrow(/update bucket 1, expected 0/);
  });

  it('top-k keeps the unsent part as a residual and adds it to the next gradient (error feedback)', () => {
    const wire = new GradientWire(512, parseJobSpec({ bucketBytes: 1024, compression: 'topk', topkRatio: 0.25 }));
    wire.gradient.fill(1);
    wire.gradient[7] = 100;
    const first = sendAll(wire);
    expect(first[0]!.byteLength).toBe(64 * 8); // 25 % of 256, (index, value) pairs
    // What was not sent stays: with the same gradient again, unsent entries now carry 2 and
    // win over the just-sent ones (1), except index 7 whose gradient alone is 100.
    const sentFirst = new Float32Array(256);
    wire.codec.decode(first[0]!, sentFirst);
    expect(sentFirst[7]).toBe(100);
    const second = sendAll(wire);
    const sentSecond = new Float32Array(256);
    wire.codec.decode(second[0]!, sentSecond);
    expect(sentSecond[7]).toBe(100);
    expect(sentSecond.filter((v) => v === 2).length).toBe(63);
    for (let i = 0; i < 256; i++) if (sentFirst[i] !== 0 && i !== 7) expect(sentSecond[i]).toBe(0);
  });
});
