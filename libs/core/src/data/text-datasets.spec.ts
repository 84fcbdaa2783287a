import { describe, expect, it } from 'vitest';
import { loadDataset } from './dataset.js';
import { InvalidDataError, MAX_LABEL } from './idx.js';
import { parseCsv, parseJsonl } from './text-datasets.js';

/** A marker planted in the data: no error message may contain it. */
const SECRET = 'SECRET-7f3a9c';

const message = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidDataError);
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
};

describe('dataset parse errors name the file, line and reason, never the content', () => {
  it.each([
    ['csv header without the label column', () => parseCsv(`${SECRET},b\n1,2\n`, 'f.csv', { header: true })],
    ['csv non-number', () => parseCsv(`label,a\n1,${SECRET}\n`, 'f.csv')],
    ['csv label not a class', () => parseCsv(`label,a\n-1${SECRET},1\n`, 'f.csv')],
    ['jsonl invalid JSON', () => parseJsonl(`{"x":[1],"y":0}\n{"x":[1],"y":"${SECRET}"\n`, 'f.jsonl')],
    ['jsonl non-number', () => parseJsonl(`{"x":["${SECRET}"],"y":0}\n`, 'f.jsonl')],
    ['environ-like line', () => parseCsv(`TOKEN=${SECRET}\0PATH=/bin\n`, '/proc/self/environ', { header: true })],
  ])('%s', (_name, f) => {
    const m = message(f);
    expect(m).toMatch(/^(f\.csv|f\.jsonl|\/proc\/self\/environ): line \d+: /);
    expect(m).not.toContain(SECRET);
    expect(m).not.toContain('TOKEN');
  });
});

describe('labels of 2^31 and above are refused, never wrapped', () => {
  it.each([2 ** 31, 2 ** 32 + 1, 1e300])('csv and jsonl label %d', (y) => {
    expect(message(() => parseCsv(`label,a\n${y},1\n`, 'f.csv'))).toMatch(/line 2: label is not a class index/);
    expect(message(() => parseJsonl(`{"x":[1],"y":${y}}\n`, 'f.jsonl'))).toMatch(/line 1: label is not a class index/);
  });

  it('accepts the largest label', () => {
    expect(parseCsv(`label,a\n${MAX_LABEL},1\n`, 'f.csv').split.y[0]).toBe(MAX_LABEL);
  });

  it('IDX labels stored as doubles', async () => {
    const idx = (type: number, dims: number[], body: Buffer) => {
      const head = Buffer.alloc(4 + dims.length * 4);
      head[2] = type;
      head[3] = dims.length;
      dims.forEach((d, i) => head.writeUInt32BE(d, 4 + i * 4));
      return Buffer.concat([head, body]);
    };
    const label = Buffer.alloc(8);
    label.writeDoubleBE(2 ** 31);
    const files: Record<string, Uint8Array> = {
      images: idx(0x08, [1, 2], Buffer.of(1, 2)),
      labels: idx(0x0e, [1], label),
    };
    await expect(
      loadDataset({ idx: { trainImages: 'images', trainLabels: 'labels' } }, (f) => Promise.resolve(files[f]!)),
    ).rejects.toThrow(/labels: record 0: label is not a class index/);
  });
});
