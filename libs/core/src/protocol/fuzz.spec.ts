import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame } from './frame.js';
import { decodeCoordinatorMessage, decodeWorkerMessage, encodeMessage } from './messages.js';
import { CLOSE_CODES, ProtocolError } from './protocol-error.js';

/** Hostile inputs per property; `GRADFLEET_FUZZ_RUNS` raises it for a long run (docs/security.md). */
const RUNS = Number(process.env['GRADFLEET_FUZZ_RUNS'] ?? 40_000);
/**
 * Time per property, in ms: 5 ms per input (the slowest property took 1.2 ms per input on
 * 2 shared cores, 3 ms under load), so a long run needs no `--testTimeout` and the default
 * run does not time out on a busy machine.
 */
const TIMEOUT_MS = Math.max(30_000, RUNS * 5);

const valid = [
  encodeMessage({ t: 'hello', v: 1, name: 'w', host: 'h', pid: 1, backend: 'wasm' }),
  encodeMessage(
    { t: 'gradient', jobId: 'j', step: 3, bucket: 0, samples: 2, lossSum: 1, correct: 1, computeMs: 1 },
    new Float32Array(16),
  ),
  encodeMessage({ t: 'ready', jobId: 'j', trainCount: 10, testCount: 2 }),
  encodeMessage({ t: 'weights', jobId: 'j', requestId: 1, state: { transfer: 1, bytes: 32, chunkBytes: 16 } }),
  encodeMessage({ t: 'state-chunk', transfer: 1, index: 0 }, new Float32Array(4)),
  encodeMessage({ t: 'heartbeat', numTensors: 3, numBytes: 12 }),
];

/**
 * The decoders either return a message or throw the documented ProtocolError with one of
 * the documented codes: anything else (a TypeError or RangeError from inside a decoder, a
 * ProtocolError with an unknown code) fails the property.
 */
function decodesSafely(
  bytes: Uint8Array,
  decoders: ((bytes: Uint8Array) => unknown)[] = [decodeWorkerMessage, decodeCoordinatorMessage],
): void {
  for (const decode of decoders) {
    try {
      decode(bytes);
    } catch (err) {
      if (!(err instanceof ProtocolError))
        throw new Error(`${decode.name} threw ${String(err)} instead of a ProtocolError`, { cause: err });
      if (!Object.hasOwn(CLOSE_CODES, err.code) || err.closeCode !== CLOSE_CODES[err.code])
        throw new Error(`${decode.name} threw a ProtocolError with an undocumented code ${err.code}`);
    }
  }
}

/** A frame of `header` and `payload`, or undefined when the encoder refuses the header's values. */
function encodeOrRefuse(header: Record<string, unknown>, payload: Uint8Array): Uint8Array | undefined {
  try {
    return encodeFrame(header, payload);
  } catch (err) {
    if (err instanceof RangeError || err instanceof TypeError) return undefined; // encoder refusing odd values is fine
    throw err;
  }
}

describe('decoder fuzzing', () => {
  it('counts a TypeError or RangeError from a decoder as a failure, only a coded ProtocolError as a refusal', () => {
    const throwing = (err: Error) => [
      function crashingDecoder(): never {
        throw err;
      },
    ];
    const bytes = new Uint8Array(4);
    expect(() => decodesSafely(bytes, throwing(new TypeError('x is undefined')))).toThrow(
      /crashingDecoder threw TypeError/,
    );
    expect(() => decodesSafely(bytes, throwing(new RangeError('offset')))).toThrow(/threw RangeError/);
    expect(() => decodesSafely(bytes, throwing(new ProtocolError('MALFORMED_FRAME', 'bad')))).not.toThrow();
    const uncoded = Object.assign(new ProtocolError('MALFORMED_FRAME', 'bad'), { code: 'NOPE' });
    expect(() => decodesSafely(bytes, throwing(uncoded))).toThrow(/undocumented code NOPE/);
  });

  it(
    `survives ${RUNS} random byte strings`,
    () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), (b) => decodesSafely(b)),
        { numRuns: RUNS },
      );
    },
    TIMEOUT_MS,
  );

  it(
    `survives ${RUNS} mutations of real frames (bit flips, truncation, splices, huge lengths)`,
    () => {
      const mutation = fc.record({
        frame: fc.constantFrom(...valid),
        flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
        prefix: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
        tail: fc.uint8Array({ maxLength: 16 }),
      });
      fc.assert(
        fc.property(mutation, ({ frame, flips, cut, prefix, tail }) => {
          const b = Buffer.concat([frame, tail]);
          for (const [at, v] of flips) b[at % b.length] = v;
          if (prefix !== undefined) b.writeUInt32LE(prefix, 0);
          decodesSafely(cut === undefined ? b : b.subarray(0, cut % (b.length + 1)));
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT_MS,
  );

  it(
    `survives ${RUNS} well-framed headers of wrong types and shapes`,
    () => {
      const header = fc.dictionary(
        fc.constantFrom(
          't',
          'v',
          'jobId',
          'step',
          'samples',
          'lossSum',
          'pb',
          'name',
          'layout',
          'optimizer',
          '__proto__',
          'constructor',
        ),
        fc.anything({ maxDepth: 2 }),
      );
      fc.assert(
        fc.property(header, fc.uint8Array({ maxLength: 64 }), (h, payload) => {
          const frame = encodeOrRefuse(h, payload);
          if (frame) decodesSafely(frame); // a decoder's TypeError or RangeError fails the property
        }),
        { numRuns: RUNS },
      );
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    },
    TIMEOUT_MS,
  );
});
