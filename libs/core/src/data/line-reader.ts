import { InvalidDataError } from './idx.js';

/** Longest line of a CSV or JSON Lines source, in bytes: one example of 1M values as text. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

export interface LineReaderOptions {
  /** Longest line accepted, in bytes (checked before the line is assembled). @defaultValue DEFAULT_MAX_LINE_BYTES */
  maxLineBytes?: number;
  /** Called with the bytes consumed so far, after each block read (progress). */
  onBytes?: (bytes: number) => void;
}

/** One line of text and its 1-based number in the file. */
export interface Line {
  n: number;
  text: string;
}

/**
 * Splits a byte stream into lines (`\n`, an optional `\r` before it dropped; blank lines
 * skipped) without ever holding more than one line and one block: a line longer than
 * `maxLineBytes` is refused as soon as its bytes pass the limit, naming the file and line,
 * never its content.
 */
export async function* readLines(
  source: AsyncIterable<Uint8Array>,
  file: string,
  options: LineReaderOptions = {},
): AsyncGenerator<Line> {
  const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let n = 0;
  let consumed = 0;
  const emit = (parts: Buffer[]): Line | undefined => {
    n++;
    let text = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    return text.trim() === '' ? undefined : { n, text };
  };
  const tooLong = () => new InvalidDataError(`${file}: line ${n + 1}: longer than ${max} bytes`);
  for await (const block of source) {
    const buf = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    consumed += buf.byteLength;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      if (pendingBytes + (nl - start) > max) throw tooLong();
      const line = emit([...pending, buf.subarray(start, nl)]);
      pending = [];
      pendingBytes = 0;
      if (line) yield line;
      start = nl + 1;
    }
    if (start < buf.byteLength) {
      pendingBytes += buf.byteLength - start;
      if (pendingBytes > max) throw tooLong();
      pending.push(buf.subarray(start));
    }
    options.onBytes?.(consumed);
  }
  if (pendingBytes > 0) {
    const line = emit(pending);
    if (line) yield line;
  }
}
