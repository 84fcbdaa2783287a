import { InvalidDataError, MAX_LABEL, type LabelKind } from '@gradfleet/core';

/** Checks labels against the kind; tracks the largest class index. */
export class LabelCheck {
  max = 0;
  constructor(readonly kind: LabelKind) {}

  private ok(v: number): boolean {
    return this.kind === 'regression'
      ? Number.isFinite(v)
      : this.kind === 'binary'
        ? v === 0 || v === 1
        : Number.isInteger(v) && v >= 0 && v <= MAX_LABEL;
  }

  private fail(file: string, where: string): never {
    const want = {
      class: `a class index (an integer 0..${MAX_LABEL})`,
      binary: '0 or 1',
      regression: 'a finite number',
      multilabel: '0 or 1', // refused by the ingest request; listed for the type
    };
    throw new InvalidDataError(`${file}: ${where}: label is not ${want[this.kind]} (labels: '${this.kind}')`);
  }

  check(v: number, file: string, where: string): number {
    if (!this.ok(v)) this.fail(file, where);
    if (v > this.max) this.max = v;
    return v;
  }

  /** `check` of each of `values`, records numbered from `first` + 1 in errors. */
  checkMany(values: Float64Array, file: string, first: number): void {
    for (let j = 0; j < values.length; j++) {
      const v = values[j]!;
      if (!this.ok(v)) this.fail(file, `record ${first + j + 1}`);
      if (v > this.max) this.max = v;
    }
  }
}
