import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { InvalidDataError } from './idx.js';

/**
 * The stream's bytes, inflated when it starts with the gzip magic (0x1f 0x8b), else as they
 * are. The inflated output is counted and refused past `maxBytes`, so a small gzip bomb
 * cannot grow without limit (nothing is buffered beyond zlib's own window).
 */
export async function* maybeGunzip(
  source: AsyncIterable<Uint8Array>,
  file: string,
  maxBytes: number,
): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let first = await it.next();
  while (!first.done && first.value.byteLength === 0) first = await it.next();
  if (first.done) return;
  const head = first.value;
  async function* rest(): AsyncGenerator<Uint8Array> {
    yield head;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value;
    }
  }
  if (!(head[0] === 0x1f && (head.byteLength < 2 || head[1] === 0x8b))) {
    yield* rest();
    return;
  }
  const gunzip = createGunzip();
  const inflated = Readable.from(rest()).pipe(gunzip);
  let total = 0;
  try {
    for await (const block of inflated as AsyncIterable<Buffer>) {
      total += block.byteLength;
      if (total > maxBytes) throw new InvalidDataError(`${file}: over ${maxBytes} bytes once inflated`);
      yield block;
    }
  } catch (err) {
    if (err instanceof InvalidDataError) throw err;
    throw new InvalidDataError(`${file}: not valid gzip (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    gunzip.destroy();
  }
}
