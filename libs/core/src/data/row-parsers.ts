import { InvalidDataError, MAX_LABEL } from './idx.js';
import type { Line } from './line-reader.js';

/** Most fields in one CSV row: checked by counting separators before the row is split. */
export const DEFAULT_MAX_FIELDS = 1024 * 1024;
/** Most values in one JSON Lines record's `x`. */
export const DEFAULT_MAX_RECORD_VALUES = 1024 * 1024;

/** Checks a label for the label kind; errors name file and line, never content. */
export function checkLabel(v: number, numeric: boolean, file: string, n: number): number {
  if (!Number.isFinite(v)) throw new InvalidDataError(`${file}: line ${n}: label is not a number`);
  if (!numeric && (!Number.isInteger(v) || v < 0 || v > MAX_LABEL))
    throw new InvalidDataError(`${file}: line ${n}: label is not a class index (an integer 0..${MAX_LABEL})`);
  return v;
}

export interface CsvRowOptions {
  labelColumn?: string | number | undefined;
  header?: boolean | undefined;
  featureScale?: number | undefined;
  numericLabels?: boolean | undefined;
  maxFields?: number | undefined;
}

function countFields(text: string): number {
  let n = 1;
  for (let i = text.indexOf(','); i >= 0; i = text.indexOf(',', i + 1)) n++;
  return n;
}

/**
 * CSV one row at a time (the streaming form of `parseCsv`): the first line decides the
 * header and the width; every later row must have that width. Values are written straight
 * into the caller's slot, multiplied by `featureScale`.
 */
export class CsvRowParser {
  private width = 0;
  private labelIdx = -1;
  private readonly maxFields: number;

  constructor(
    private readonly file: string,
    private readonly options: CsvRowOptions = {},
  ) {
    this.maxFields = options.maxFields ?? DEFAULT_MAX_FIELDS;
  }

  /** Values per example (known once the first line was seen). */
  get featureSize(): number {
    return this.width - 1;
  }

  /** Reads the first line: true when it was a header (no example in it). */
  first(line: Line): boolean {
    const width = countFields(line.text);
    if (width > this.maxFields)
      throw new InvalidDataError(
        `${this.file}: line ${line.n}: ${width} fields exceeds the limit of ${this.maxFields}`,
      );
    const fields = line.text.split(',');
    const hasHeader = this.options.header ?? fields.some((f) => f.trim() === '' || !Number.isFinite(Number(f)));
    const names = hasHeader ? fields.map((f) => f.trim()) : [];
    const wanted = this.options.labelColumn ?? (hasHeader ? 'label' : 0);
    const idx = typeof wanted === 'number' ? wanted : names.indexOf(wanted);
    if (idx < 0 || idx >= width)
      throw new InvalidDataError(
        `${this.file}: line ${line.n}: no label column ${typeof wanted === 'number' ? wanted : '(the name given)'} among its ${width} columns${hasHeader ? ' (header row)' : ''}`,
      );
    if (width < 2)
      throw new InvalidDataError(`${this.file}: line ${line.n}: needs a label and at least one feature column`);
    this.width = width;
    this.labelIdx = idx;
    return hasHeader;
  }

  /** Parses a data row into `out` (featureSize values); returns its label. */
  row(line: Line, out: Float32Array | Uint8Array): number {
    const width = countFields(line.text);
    if (width !== this.width)
      throw new InvalidDataError(`${this.file}: line ${line.n}: ${width} columns, expected ${this.width}`);
    const scale = this.options.featureScale ?? 1;
    const fields = line.text.split(',');
    let label = 0;
    let k = 0;
    for (let c = 0; c < width; c++) {
      const raw = fields[c]!.trim();
      const v = raw === '' ? NaN : Number(raw);
      if (!Number.isFinite(v))
        throw new InvalidDataError(`${this.file}: line ${line.n}: column ${c + 1}: not a number`);
      if (c === this.labelIdx) label = checkLabel(v, this.options.numericLabels ?? false, this.file, line.n);
      else out[k++] = v * scale;
    }
    return label;
  }
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

/**
 * JSON Lines `{"x": number[] | nested arrays, "y": label}` one record at a time; the first
 * record fixes the shape. Values are written into the caller's slot times `featureScale`.
 */
export class JsonlRecordParser {
  shape: number[] | undefined;

  constructor(
    private readonly file: string,
    private readonly featureScale = 1,
    private readonly numericLabels = false,
    private readonly maxValues = DEFAULT_MAX_RECORD_VALUES,
  ) {}

  /** Parses a record; `slot(featureSize)` gives where its values go (called once the shape is known). */
  record(line: Line, slot: (featureSize: number) => Float32Array | Uint8Array): number {
    let rec: { x?: unknown; y?: unknown };
    try {
      rec = JSON.parse(line.text) as { x?: unknown; y?: unknown };
    } catch {
      // The parser's message quotes the line, so it is not passed on.
      throw new InvalidDataError(`${this.file}: line ${line.n}: not valid JSON`);
    }
    if (typeof rec !== 'object' || rec === null || !Array.isArray(rec.x))
      throw new InvalidDataError(`${this.file}: line ${line.n}: field x must be an array of numbers`);
    const s = shapeOf(rec.x as unknown[]);
    const size = s.reduce((a, b) => a * b, 1);
    if (size > this.maxValues)
      throw new InvalidDataError(`${this.file}: line ${line.n}: x has ${size} values, more than ${this.maxValues}`);
    if (size < 1) throw new InvalidDataError(`${this.file}: line ${line.n}: x is empty`);
    if (!this.shape) this.shape = s;
    else if (s.join('x') !== this.shape.join('x'))
      throw new InvalidDataError(
        `${this.file}: line ${line.n}: x has shape ${s.join('x')}, earlier records ${this.shape.join('x')}`,
      );
    const flat = (rec.x as unknown[]).flat(8) as unknown[];
    if (flat.length !== size) throw new InvalidDataError(`${this.file}: line ${line.n}: x is a ragged array`);
    if (typeof rec.y !== 'number' || !Number.isFinite(rec.y))
      throw new InvalidDataError(
        `${this.file}: line ${line.n}: field y must be ${this.numericLabels ? 'a number' : 'a class index'}`,
      );
    const label = checkLabel(rec.y, this.numericLabels, this.file, line.n);
    const out = slot(size);
    for (let k = 0; k < size; k++) {
      const v = flat[k];
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new InvalidDataError(`${this.file}: line ${line.n}: x[${k}] is not a finite number`);
      out[k] = v * this.featureScale;
    }
    return label;
  }
}
