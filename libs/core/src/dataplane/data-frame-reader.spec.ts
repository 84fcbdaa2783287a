import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  DATA_FRAME_HEADER_BYTES,
  DATA_FRAME_TYPES,
  DataFrameWriter,
  dataFrame,
  writeDataHeader,
  type DataFrameHeader,
  type DataFrameType,
} from './data-frame.js';
import { DataFrameReader } from './data-frame-reader.js';

interface Seen {
  h: DataFrameHeader;
  payload: number[];
}

function reader(limit = 1 << 16): { r: DataFrameReader; seen: Seen[] } {
  const seen: Seen[] = [];
  const r = new DataFrameReader(
    16,
    () => limit,
    (h, p) => seen.push({ h, payload: Array.from(p) }),
  );
  return { r, seen };
}

function frames(): { bytes: Buffer; expected: Seen[] } {
  const specs: [DataFrameType, number[]][] = [
    [DATA_FRAME_TYPES.HELLO, [1, 2, 3]],
    [DATA_FRAME_TYPES.GRADIENT, Array.from({ length: 40 }, (_, i) => i)],
    [DATA_FRAME_TYPES.UPDATE, []],
    [DATA_FRAME_TYPES.REFUSE, [255, 0, 7, 9, 11]],
  ];
  const expected = specs.map(([type, payload], i) => ({
    h: { type, flags: i & 1, round: 10 + i, step: 20 + i, bucket: i, samples: 3 * i, payloadBytes: payload.length },
    payload,
  }));
  const bytes = Buffer.concat(expected.map(({ h, payload }) => dataFrame(h, Uint8Array.from(payload))));
  return { bytes, expected };
}

describe('DataFrameReader', () => {
  it('yields the same frames from one chunk and from a split at every byte boundary', () => {
    const { bytes, expected } = frames();
    const one = reader();
    one.r.push(bytes);
    expect(one.seen).toEqual(expected);
    for (let cut = 1; cut < bytes.byteLength; cut++) {
      const two = reader();
      two.r.push(bytes.subarray(0, cut));
      two.r.push(bytes.subarray(cut));
      expect(two.seen).toEqual(expected);
    }
    const bytewise = reader();
    for (let i = 0; i < bytes.byteLength; i++) bytewise.r.push(bytes.subarray(i, i + 1));
    expect(bytewise.seen).toEqual(expected);
  });

  it('refuses a header over the limit with MESSAGE_TOO_LARGE before storing any payload', () => {
    const { r, seen } = reader(8);
    const reserve = vi.spyOn(r, 'reserve');
    const head = new Uint8Array(DATA_FRAME_HEADER_BYTES);
    writeDataHeader(head, {
      type: DATA_FRAME_TYPES.GRADIENT,
      flags: 0,
      round: 1,
      step: 1,
      bucket: 0,
      samples: 1,
      payloadBytes: 1 << 30,
    });
    expect(() => r.push(head)).toThrow(expect.objectContaining({ code: 'MESSAGE_TOO_LARGE' }));
    expect(reserve).not.toHaveBeenCalled();
    expect(seen).toEqual([]);
  });

  it('refuses an unknown type with MALFORMED_FRAME and a wrong version with UNSUPPORTED_PROTOCOL_VERSION', () => {
    const base = dataFrame(
      { type: DATA_FRAME_TYPES.GRADIENT, flags: 0, round: 1, step: 1, bucket: 0, samples: 1 },
      new Uint8Array(4),
    );
    for (const t of [0, 5, 255]) {
      const bad = Buffer.from(base);
      bad[0] = t;
      expect(() => reader().r.push(bad)).toThrow(expect.objectContaining({ code: 'MALFORMED_FRAME' }));
    }
    for (const v of [0, 2, 255]) {
      const bad = Buffer.from(base);
      bad[1] = v;
      expect(() => reader().r.push(bad)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_PROTOCOL_VERSION' }));
    }
  });

  it('round-trips random frame sequences through DataFrameWriter for arbitrary chunkings', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const frameArb = fc.record({
      type: fc.constantFrom(...Object.values(DATA_FRAME_TYPES)),
      flags: fc.integer({ min: 0, max: 0xffff }),
      round: u32,
      step: u32,
      bucket: u32,
      samples: u32,
      payload: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 97 })), (fs, cuts) => {
        const parts = fs.map(({ payload, ...h }) => {
          const w = new DataFrameWriter(payload.byteLength + 5);
          w.payload.set(payload);
          return Buffer.from(w.frame(h, payload.byteLength));
        });
        const bytes = Buffer.concat(parts);
        const { r, seen } = reader(300);
        let at = 0;
        for (let i = 0; at < bytes.byteLength; i++) {
          const n = cuts[i % cuts.length] ?? bytes.byteLength;
          r.push(bytes.subarray(at, at + n));
          at += n;
        }
        expect(seen).toEqual(
          fs.map(({ payload, ...h }) => ({
            h: { ...h, payloadBytes: payload.byteLength },
            payload: Array.from(payload),
          })),
        );
      }),
      { numRuns: 200 },
    );
  });
});
