import type { DataSplit } from './dataset.js';
import { InvalidDataError, MAX_LABEL } from './idx.js';

export interface CsvOptions {
  /** Label column: a header name or a 0-based index. @defaultValue 'label' with a header row, else 0 */
  labelColumn?: string | number;
  /** Whether the first line is a header. @defaultValue detected (a non-numeric field) */
  header?: boolean;
  /** Multiplier for every feature value. @defaultValue 1 */
  featureScale?: number;
  /** Labels are numbers (regression targets, kept as float32), not class indices. @defaultValue false */
  numericLabels?: boolean;
  /**
   * Multilabel targets: these columns (header names or 0-based indices, in this order) or the
   * last K (`{ last: K }`) hold one 0/1 target each; replaces `labelColumn`.
   */
  labelColumns?: string[] | number[] | { last: number } | undefined;
}

/** The 0-based indices of a CSV's target columns (one, or several for multilabel). */
function targetColumns(file: string, first: string[], hasHeader: boolean, options: CsvOptions): number[] {
  const names = hasHeader ? first.map((f) => f.trim()) : [];
  const among = `among its ${first.length} columns${hasHeader ? ' (header row)' : ''}`;
  const cols = options.labelColumns;
  if (cols === undefined) {
    const wanted = options.labelColumn ?? (hasHeader ? 'label' : 0);
    const idx = typeof wanted === 'number' ? wanted : names.indexOf(wanted);
    if (idx < 0 || idx >= first.length)
      throw new InvalidDataError(`${file}: line 1: no label column ${JSON.stringify(wanted)} ${among}`);
    return [idx];
  }
  if (!Array.isArray(cols)) {
    if (cols.last >= first.length)
      throw new InvalidDataError(`${file}: line 1: the last ${cols.last} columns leave no feature ${among}`);
    return Array.from({ length: cols.last }, (_, i) => first.length - cols.last + i);
  }
  const out = (cols as (string | number)[]).map((c, i) => {
    const idx = typeof c === 'number' ? c : names.indexOf(c);
    if (idx < 0 || idx >= first.length)
      throw new InvalidDataError(
        `${file}: line 1: labelColumns[${i}]: no column ${typeof c === 'number' ? c : '(the name given)'} ${among}`,
      );
    return idx;
  });
  if (new Set(out).size !== out.length)
    throw new InvalidDataError(`${file}: line 1: labelColumns names a column twice`);
  if (out.length >= first.length) throw new InvalidDataError(`${file}: line 1: labelColumns leave no feature column`);
  return out;
}

export interface ParsedSplit {
  split: DataSplit;
  featureShape: number[];
}

function lines(text: string): { n: number; text: string }[] {
  return text
    .split('\n')
    .map((t, i) => ({ n: i + 1, text: t.replace(/\r$/, '') }))
    .filter((l) => l.text.trim() !== '');
}

function label(value: number, file: string, where: string, numeric = false): number {
  if (numeric) return value; // finite: checked by the callers
  if (!Number.isInteger(value) || value < 0 || value > MAX_LABEL)
    throw new InvalidDataError(`${file}: ${where}: label is not a class index (an integer 0..${MAX_LABEL})`);
  return value;
}

/**
 * CSV with one label column and numeric features; errors name the file, line and column
 * number and the reason, never the file's content (a header name or value could be a secret
 * of whatever file was named).
 */
export function parseCsv(text: string, file: string, options: CsvOptions = {}): ParsedSplit {
  const rows = lines(text);
  if (rows.length === 0) throw new InvalidDataError(`${file}: no rows`);
  const first = rows[0]!.text.split(',');
  const hasHeader = options.header ?? first.some((f) => f.trim() === '' || !Number.isFinite(Number(f)));
  const targets = targetColumns(file, first, hasHeader, options);
  const slot = new Map(targets.map((c, k) => [c, k])); // column -> its place in the target vector
  const body = hasHeader ? rows.slice(1) : rows;
  if (body.length === 0) throw new InvalidDataError(`${file}: no data rows`);
  const width = first.length;
  const K = targets.length;
  const f = width - K;
  if (f < 1) throw new InvalidDataError(`${file}: line 1: needs a label and at least one feature column`);
  const scale = options.featureScale ?? 1;
  const x = new Float32Array(body.length * f);
  const y = options.numericLabels ? new Float32Array(body.length * K) : new Int32Array(body.length * K);
  body.forEach((row, r) => {
    const fields = row.text.split(',');
    if (fields.length !== width)
      throw new InvalidDataError(`${file}: line ${row.n}: ${fields.length} columns, expected ${width}`);
    let k = 0;
    for (let c = 0; c < width; c++) {
      const raw = fields[c]!.trim();
      const v = raw === '' ? NaN : Number(raw);
      if (!Number.isFinite(v)) throw new InvalidDataError(`${file}: line ${row.n}: column ${c + 1}: not a number`);
      const t = slot.get(c);
      if (t !== undefined) y[r * K + t] = label(v, file, `line ${row.n}`, options.numericLabels);
      else x[r * f + k++] = v;
    }
  });
  const split: DataSplit = { x, y, count: body.length, featureSize: f, scale };
  if (options.labelColumns !== undefined) split.labelWidth = K;
  return { split, featureShape: [f] };
}

/**
 * JSON Lines of `{"x": number[] (or nested arrays), "y": class}` (`y` a number with
 * `numericLabels`, an array of 0/1 targets of the same length on every line with
 * `multilabel`); errors name the file and line, never content.
 */
export function parseJsonl(
  text: string,
  file: string,
  featureScale = 1,
  numericLabels = false,
  multilabel = false,
): ParsedSplit {
  const rows = lines(text);
  if (rows.length === 0) throw new InvalidDataError(`${file}: no records`);
  let shape: number[] | undefined;
  let x = new Float32Array(0);
  let y: Int32Array | Float32Array = numericLabels ? new Float32Array(rows.length) : new Int32Array(rows.length);
  let width = 0;
  rows.forEach((row, r) => {
    let rec: { x?: unknown; y?: unknown };
    try {
      rec = JSON.parse(row.text) as { x?: unknown; y?: unknown };
    } catch {
      // The parser's message quotes the line, so it is not passed on.
      throw new InvalidDataError(`${file}: line ${row.n}: not valid JSON`);
    }
    if (typeof rec !== 'object' || rec === null || !Array.isArray(rec.x))
      throw new InvalidDataError(`${file}: line ${row.n}: field x must be an array of numbers`);
    const flat = (rec.x as unknown[]).flat(8) as unknown[];
    const s = shapeOf(rec.x as unknown[]);
    if (!shape) {
      shape = s;
      x = new Float32Array(rows.length * flat.length);
    } else if (s.join('x') !== shape.join('x')) {
      throw new InvalidDataError(
        `${file}: line ${row.n}: x has shape ${s.join('x')}, earlier records ${shape.join('x')}`,
      );
    }
    flat.forEach((v, k) => {
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new InvalidDataError(`${file}: line ${row.n}: x[${k}] is not a finite number`);
      x[r * flat.length + k] = v;
    });
    if (multilabel) {
      const t = rec.y;
      if (!Array.isArray(t) || t.length === 0)
        throw new InvalidDataError(`${file}: line ${row.n}: field y must be an array of 0/1 targets`);
      if (width === 0) {
        width = t.length;
        y = new Int32Array(rows.length * width);
      } else if (t.length !== width)
        throw new InvalidDataError(`${file}: line ${row.n}: y has ${t.length} targets, earlier records ${width}`);
      t.forEach((v: unknown, k) => {
        if (v !== 0 && v !== 1)
          throw new InvalidDataError(`${file}: line ${row.n}: y[${k}] is not 0 or 1 (labels: 'multilabel')`);
        y[r * width + k] = v;
      });
      return;
    }
    if (typeof rec.y !== 'number' || !Number.isFinite(rec.y))
      throw new InvalidDataError(
        `${file}: line ${row.n}: field y must be ${numericLabels ? 'a number' : 'a class index'}`,
      );
    y[r] = label(rec.y, file, `line ${row.n}`, numericLabels);
  });
  const featureSize = shape!.reduce((a, b) => a * b, 1);
  if (featureSize < 1) throw new InvalidDataError(`${file}: line 1: x is empty`);
  const split: DataSplit = { x, y, count: rows.length, featureSize, scale: featureScale };
  if (multilabel) split.labelWidth = width;
  return { split, featureShape: shape! };
}

function shapeOf(a: unknown[]): number[] {
  const shape = [a.length];
  let cur: unknown = a[0];
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}
