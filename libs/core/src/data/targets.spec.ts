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

  it('parses multilabel targets from CSV columns (names, indices, the last K) and JSON Lines arrays', () => {
    const text = 'a,t1,b,t2,t3\n1,0,2,1,1\n3,1,4,0,0\n';
    const byName = parseCsv(text, 'm.csv', { labelColumns: ['t1', 't2', 't3'] }).split;
    expect(byName.labelWidth).toBe(3);
    expect(Array.from(byName.y)).toEqual([0, 1, 1, 1, 0, 0]);
    expect(Array.from(byName.x)).toEqual([1, 2, 3, 4]);
    const reordered = parseCsv(text, 'm.csv', { labelColumns: [4, 1] }).split;
    expect(Array.from(reordered.y)).toEqual([1, 0, 0, 1]);
    expect(Array.from(reordered.x)).toEqual([1, 2, 1, 3, 4, 0]);
    const last = parseCsv('1,2,0,1\n3,4,1,1\n', 'n.csv', { labelColumns: { last: 2 } }).split;
    expect([last.featureSize, last.labelWidth, Array.from(last.y)]).toEqual([2, 2, [0, 1, 1, 1]]);
    expect(() => parseCsv(text, 'm.csv', { labelColumns: ['t1', 'nope'] })).toThrow(/labelColumns\[1\]: no column/);
    expect(() => parseCsv(text, 'm.csv', { labelColumns: { last: 5 } })).toThrow(/leave no feature/);
    expect(() => parseCsv(text, 'm.csv', { labelColumns: [1, 1] })).toThrow(/twice/);

    const jsonl = parseJsonl('{"x":[1,2],"y":[0,1,1]}\n{"x":[3,4],"y":[1,0,0]}\n', 'm.jsonl', 1, false, true).split;
    expect([jsonl.labelWidth, Array.from(jsonl.y)]).toEqual([3, [0, 1, 1, 1, 0, 0]]);
    expect(() => parseJsonl('{"x":[1],"y":[0,1]}\n{"x":[2],"y":[1]}\n', 'm.jsonl', 1, false, true)).toThrow(
      'm.jsonl: line 2: y has 1 targets, earlier records 2',
    );
    expect(() => parseJsonl('{"x":[1],"y":[0,2]}\n', 'm.jsonl', 1, false, true)).toThrow(/y\[1\] is not 0 or 1/);
    expect(() => parseJsonl('{"x":[1],"y":1}\n', 'm.jsonl', 1, false, true)).toThrow(/array of 0\/1 targets/);
  });

  it('keeps multilabel targets through a shard, checks them, and gathers them as vectors', () => {
    const { split } = parseCsv('a,b,t1,t2\n1,2,0,1\n3,4,1,1\n5,6,0,0\n', 'm.csv', { labelColumns: { last: 2 } });
    const { split: back, header } = decodeShard(encodeShard(split, [2], 2), 'shard');
    expect(header.labelWidth).toBe(2);
    expect([back.labelWidth, Array.from(back.y)]).toEqual([2, [0, 1, 1, 1, 0, 0]]);
    expect(() => checkLabels(back, 'multilabel', 'm.csv')).not.toThrow();
    expect(() => checkLabels(back, 'class', 'm.csv')).toThrow(
      "m.csv: 2 target values per record; labels 'class' take one",
    );
    const twos = parseCsv('a,t1,t2\n1,0,2\n', 'w.csv', { labelColumns: [1, 2] }).split;
    expect(() => checkLabels(twos, 'multilabel', 'w.csv')).toThrow(
      "w.csv: record 1: target 1: label 2 is not 0 or 1 (labels: 'multilabel')",
    );
    expect(targetWidth('multilabel', 2)).toBe(2);
    const x = new Float32Array(4);
    const y = new Float32Array(4).fill(9);
    gatherBatch(back, [2, 1], 2, x, y, 'vector');
    expect([Array.from(x), Array.from(y)]).toEqual([
      [5, 6, 3, 4],
      [0, 0, 1, 1],
    ]);
    expect(() => gatherBatch(back, [0], 3, x, y, 'vector')).toThrow(/pass numClasses 2/);
    expect(() => gatherBatch(back, [0], 2, x, y, 'one-hot')).toThrow(/need vector targets/);
    // A shard whose size does not match its label width is refused.
    const shard = encodeShard(split, [2], 2);
    const lying = Buffer.from(shard.toString('latin1').replace('"labelWidth":2', '"labelWidth":3'), 'latin1');
    expect(() => decodeShard(lying, 'shard')).toThrow(/does not match/);
  });
});
