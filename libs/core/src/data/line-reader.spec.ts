import { describe, expect, it } from 'vitest';
import { readLines } from './line-reader.js';
import { CsvRowParser } from './row-parsers.js';

async function* blocks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}
const collect = async (it: AsyncIterable<{ n: number; text: string }>) => {
  const out: [number, string][] = [];
  for await (const l of it) out.push([l.n, l.text]);
  return out;
};

describe('streaming lines and rows', () => {
  it('splits lines across blocks, numbers them as the file does and skips blank ones', async () => {
    expect(await collect(readLines(blocks('a,b\r\n1,', '2\n\n3', ',4'), 'f.csv'))).toEqual([
      [1, 'a,b'],
      [2, '1,2'],
      [4, '3,4'],
    ]);
  });

  it('refuses a line over the limit as soon as it passes it, naming file and line and not the content', async () => {
    const secret = 'S'.repeat(40);
    await expect(
      collect(readLines(blocks('ok\n', secret.slice(0, 20), secret.slice(20)), 'f.csv', { maxLineBytes: 30 })),
    ).rejects.toThrow('f.csv: line 2: longer than 30 bytes');
    await expect(collect(readLines(blocks(`ok\n${secret}\n`), 'f.csv', { maxLineBytes: 30 }))).rejects.not.toThrow(
      /S{5}/,
    );
  });

  it('counts CSV fields before splitting a row', () => {
    const p = new CsvRowParser('f.csv', { maxFields: 3 });
    expect(() => p.first({ n: 1, text: '1,2,3,4' })).toThrow('f.csv: line 1: 4 fields exceeds the limit of 3');
    const q = new CsvRowParser('f.csv', { featureScale: 0.5 });
    expect(q.first({ n: 1, text: 'label,a,b' })).toBe(true);
    const out = new Float32Array(2);
    expect(q.row({ n: 2, text: '3,2,4' }, out)).toBe(3);
    expect(Array.from(out)).toEqual([1, 2]);
    expect(() => q.row({ n: 3, text: '1,secret' }, out)).toThrow('f.csv: line 3: 2 columns, expected 3');
    expect(() => q.row({ n: 4, text: '1,2,secret' }, out)).toThrow('f.csv: line 4: column 3: not a number');
  });
});
