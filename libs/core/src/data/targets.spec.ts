import { describe, expect, it } from 'vitest';
import { checkLabels, gatherBatch, targetWidth } from './dataset.js';
import { decodeShard, encodeShard } from './data-shard.js';
import { InvalidDataError } from './idx.js';
import { parseCsv, parseJsonl } from './text-datasets.js';

describe('numeric, binary and class targets', () => {
  it('parses regression targets as float32 and keeps them through a shard', () => {
    const { split } = parseCsv('a,b,y\n1,2,0.25\n3,4,-7.5\n', 'r.csv', { labelColumn: 'y', numericLabels: true });
    expect(split.y).toBeInstanceOf(Float32Array);
    expect(Array.from(split.y)).toEqual([0.25, -7.5]);
    const { split: back, header } = decodeShard(encodeShard(split, [2], 1), 'shard');
    expect(header.labelDtype).toBe('float32');
    expect(back.y).toBeInstanceOf(Float32Array);
    expect(Array.from(back.y)).toEqual([0.25, -7.5]);
    const classes = parseCsv('label,a\n2,1\n', 'c.csv').split;
    const { split: classBack, header: classHeader } = decodeShard(encodeShard(classes, [1], 3), 'shard');
    expect(classHeader.labelDtype).toBeUndefined();
    expect(classBack.y).toBeInstanceOf(Int32Array);
    expect(Array.from(parseJsonl('{"x":[1],"y":0.5}\n', 'r.jsonl', 1, true).split.y)).toEqual([0.5]);
  });

  it('refuses a fractional label unless the labels are numeric', () => {
    expect(() => parseCsv('a,y\n1,0.5\n', 'c.csv', { labelColumn: 'y' })).toThrow(/not a class index/);
  });

  it('checks labels against the kind, naming the file and record', () => {
    const split = parseCsv('a,y\n1,0\n2,1\n3,2\n', 'b.csv', { labelColumn: 'y' }).split;
    expect(() => checkLabels(split, 'class', 'b.csv')).not.toThrow();
    expect(() => checkLabels(split, 'binary', 'b.csv')).toThrow(InvalidDataError);
    expect(() => checkLabels(split, 'binary', 'b.csv')).toThrow(
      "b.csv: record 3: label 2 is not 0 or 1 (labels: 'binary')",
    );
    expect(targetWidth('class', 3)).toBe(3);
    expect(targetWidth('binary', 2)).toBe(1);
  });

  it('gathers value targets one wide and one-hot targets numClasses wide', () => {
    const { split } = parseCsv('a,y\n1,0.25\n2,1.5\n', 'r.csv', { labelColumn: 'y', numericLabels: true });
    const x = new Float32Array(2);
    const y = new Float32Array(2);
    gatherBatch(split, [1, 0], 1, x, y, 'value');
    expect(Array.from(y)).toEqual([1.5, 0.25]);
    expect(() => gatherBatch(split, [0], 2, x, y, 'value')).toThrow(/numClasses 1/);
  });
});
