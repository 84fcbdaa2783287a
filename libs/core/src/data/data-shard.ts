import { createHash } from 'node:crypto';
import type { DataSplit } from './dataset.js';
import { InvalidDataError } from './idx.js';

/**
 * The compact binary form in which the coordinator serves a dataset split to workers:
 *
 *   [u32 LE header length][JSON header][zero pad to 8][labels (Int32 LE)][features]
 *
 * header: `{ count, featureShape, dtype: 'uint8' | 'float32', scale, numClasses, labelDtype? }`;
 * labels are Int32 class indices, or Float32 numbers with `labelDtype: 'float32'` (regression);
 * with `labelWidth` K (multilabel), K Int32 0/1 targets per example.
 * Byte images stay one byte per value (4x smaller than float); workers check the size
 * and SHA-256 they were given before decoding.
 */
export interface ShardHeader {
  count: number;
  featureShape: number[];
  dtype: 'uint8' | 'float32';
  scale: number;
  numClasses: number;
  /** Absent: Int32 class labels (every shard written before regression labels existed). */
  labelDtype?: 'float32';
  /** Label values per example (multilabel targets); absent: 1. */
  labelWidth?: number;
}

export function encodeShard(split: DataSplit, featureShape: number[], numClasses: number): Buffer {
  const dtype = split.x instanceof Uint8Array ? 'uint8' : 'float32';
  const header: ShardHeader = {
    count: split.count,
    featureShape,
    dtype,
    scale: split.scale,
    numClasses,
    ...(split.y instanceof Float32Array ? { labelDtype: 'float32' as const } : {}),
    ...(split.labelWidth !== undefined ? { labelWidth: split.labelWidth } : {}),
  };
  const head = Buffer.from(JSON.stringify(header));
  const start = Math.ceil((4 + head.length) / 8) * 8;
  const xBytes = split.x.byteLength;
  const out = Buffer.alloc(start + xBytes + split.y.byteLength);
  out.writeUInt32LE(head.length, 0);
  head.copy(out, 4);
  out.set(new Uint8Array(split.y.buffer, split.y.byteOffset, split.y.byteLength), start);
  out.set(new Uint8Array(split.x.buffer, split.x.byteOffset, xBytes), start + split.y.byteLength);
  return out;
}

export function decodeShard(buf: Uint8Array, name: string): { split: DataSplit; header: ShardHeader } {
  const fail = (why: string) => new InvalidDataError(`${name}: ${why}`);
  if (buf.byteLength < 4) throw fail('too short');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = view.getUint32(0, true);
  if (4 + len > buf.byteLength) throw fail('header overruns the data');
  const header = JSON.parse(Buffer.from(buf.subarray(4, 4 + len)).toString('utf8')) as ShardHeader;
  const start = Math.ceil((4 + len) / 8) * 8;
  const featureSize = header.featureShape.reduce((a, b) => a * b, 1);
  const xBytes = header.count * featureSize * (header.dtype === 'uint8' ? 1 : 4);
  const width = header.labelWidth ?? 1;
  if (!Number.isInteger(width) || width < 1) throw fail(`label width ${JSON.stringify(header.labelWidth)}`);
  const labels = header.count * width;
  if (start + xBytes + labels * 4 !== buf.byteLength)
    throw fail(`size ${buf.byteLength} does not match ${header.count} examples of ${featureSize} ${header.dtype}`);
  const copy = new Uint8Array(buf.byteLength - start); // aligned, owned copy
  copy.set(buf.subarray(start));
  if (header.labelDtype !== undefined && header.labelDtype !== 'float32')
    throw fail(`unknown label type ${JSON.stringify(header.labelDtype)}`);
  const y =
    header.labelDtype === 'float32' ? new Float32Array(copy.buffer, 0, labels) : new Int32Array(copy.buffer, 0, labels);
  const xOff = labels * 4;
  const x =
    header.dtype === 'uint8' ? copy.subarray(xOff, xOff + xBytes) : new Float32Array(copy.buffer, xOff, xBytes / 4);
  const split: DataSplit = { x, y, count: header.count, featureSize, scale: header.scale };
  if (header.labelWidth !== undefined) split.labelWidth = width;
  return { split, header };
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
