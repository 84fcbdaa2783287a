import { describe, expect, it } from 'vitest';
import { InvalidJobSpecError, parseJobSpec } from './job-spec.js';
import { classWeightIssues, classWeightVector } from './targets-spec.js';

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseJobSpec(input);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidJobSpecError);
    return (err as InvalidJobSpecError).issues;
  }
  throw new Error('expected InvalidJobSpecError');
}

const csv = (extra: Record<string, unknown> = {}) => ({ csv: { train: 't.csv', ...extra } });
const multilabel = {
  dataset: csv({ labelColumns: { last: 3 } }),
  labels: 'multilabel',
  loss: 'binaryCrossentropy',
};

describe('multilabel targets, metrics and classWeight in the job spec', () => {
  it('defaults keep the metric of old: accuracy, none for regression; a parsed spec parses again', () => {
    expect(parseJobSpec({}).metrics).toEqual(['accuracy']);
    const regression = parseJobSpec({ dataset: csv(), labels: 'regression', loss: 'meanSquaredError' });
    expect(regression.metrics).toEqual([]);
    expect(parseJobSpec(regression)).toEqual(regression);
    const spec = parseJobSpec({ ...multilabel, metrics: ['precision', 'recall', 'binaryAccuracy'] });
    expect(parseJobSpec(spec)).toEqual(spec);
    expect(spec.classWeight).toBeUndefined();
  });

  it('accepts multilabel from CSV target columns and from JSON Lines; binaryCrossentropy, mse and mae fit it', () => {
    for (const loss of ['binaryCrossentropy', 'meanSquaredError', 'meanAbsoluteError'])
      expect(parseJobSpec({ ...multilabel, loss }).labels).toBe('multilabel');
    expect(parseJobSpec({ ...multilabel, dataset: csv({ labelColumns: ['a', 'b'] }) }).labels).toBe('multilabel');
    expect(parseJobSpec({ ...multilabel, dataset: { jsonl: { train: 't.jsonl' } }, metrics: ['mse'] }).metrics).toEqual(
      ['mse'],
    );
  });

  it('refuses multilabel without target columns, on MNIST or named data, and target columns for other kinds', () => {
    expect(issuesOf({ ...multilabel, dataset: csv() })).toEqual([
      { path: 'dataset.csv.labelColumns', message: expect.stringContaining('need the target columns') },
    ]);
    expect(issuesOf({ ...multilabel, dataset: 'mnist' }).map((i) => i.path)).toContain('labels');
    expect(issuesOf({ ...multilabel, dataset: { name: 'tab' } }).map((i) => i.path)).toEqual(['labels']);
    expect(issuesOf({ ...multilabel, loss: 'categoricalCrossentropy' })).toEqual([
      { path: 'loss', message: expect.stringContaining("with labels 'multilabel' use") },
    ]);
    expect(issuesOf({ dataset: csv({ labelColumns: [1, 2] }) })).toEqual([
      { path: 'dataset.csv.labelColumns', message: expect.stringContaining("not 'class'") },
    ]);
    expect(issuesOf({ ...multilabel, dataset: csv({ labelColumns: [1, 2], labelColumn: 0 }) })).toEqual([
      { path: 'dataset.csv.labelColumn', message: expect.stringContaining('give one of them') },
    ]);
  });

  it('refuses each metric where it does not fit the labels, naming the entry and what fits', () => {
    const regression = { dataset: csv(), labels: 'regression', loss: 'meanSquaredError' };
    expect(issuesOf({ ...regression, metrics: ['mae', 'precision'] })).toEqual([
      {
        path: 'metrics.1',
        message: expect.stringMatching(/'precision' does not apply to labels 'regression'.*'mse', 'mae'/),
      },
    ]);
    expect(issuesOf({ ...regression, metrics: ['accuracy'] })[0]!.path).toBe('metrics.0');
    expect(issuesOf({ metrics: ['recall'] })[0]!.path).toBe('metrics.0');
    expect(issuesOf({ metrics: ['binaryAccuracy'] })[0]!.path).toBe('metrics.0');
    expect(issuesOf({ ...multilabel, metrics: ['topKCategoricalAccuracy'] })[0]!.path).toBe('metrics.0');
    expect(issuesOf({ metrics: ['mse', 'mse'] })).toEqual([
      { path: 'metrics.1', message: expect.stringContaining('twice') },
    ]);
    expect(issuesOf({ metrics: [{ name: 'topKCategoricalAccuracy', k: 0 }] })[0]!.path).toBe('metrics.0.k');
    expect(issuesOf({ metrics: ['f1'] })[0]!.path).toBe('metrics.0');
    expect(
      parseJobSpec({ metrics: ['accuracy', { name: 'topKCategoricalAccuracy', k: 3 }, 'topKCategoricalAccuracy'] })
        .metrics,
    ).toEqual(['accuracy', { name: 'topKCategoricalAccuracy', k: 3 }, 'topKCategoricalAccuracy']);
  });

  it('validates classWeight: non-negative finite numbers, class indices, class and binary labels only', () => {
    const binary = { dataset: csv(), labels: 'binary', loss: 'binaryCrossentropy' };
    expect(parseJobSpec({ ...binary, classWeight: { '0': 1, '1': 5 } }).classWeight).toEqual({ '0': 1, '1': 5 });
    expect(parseJobSpec({ classWeight: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }).classWeight).toHaveLength(10);
    expect(issuesOf({ classWeight: { '0': -1 } })[0]!.path).toBe('classWeight.0');
    expect(issuesOf({ classWeight: [1, Infinity] })[0]!.path).toMatch(/^classWeight/);
    expect(issuesOf({ classWeight: { cat: 2 } })[0]!.path).toMatch(/^classWeight/);
    expect(issuesOf({ ...binary, classWeight: { '2': 1 } })).toEqual([
      { path: 'classWeight.2', message: 'class 2 is outside the 2 classes (0..1)' },
    ]);
    expect(issuesOf({ ...binary, classWeight: [1, 2, 3] })[0]!.path).toBe('classWeight');
    expect(issuesOf({ ...multilabel, classWeight: [1, 2, 3] })).toEqual([
      { path: 'classWeight', message: expect.stringContaining("not 'multilabel'") },
    ]);
    expect(
      issuesOf({ dataset: csv(), labels: 'regression', loss: 'meanSquaredError', classWeight: { '0': 1 } })[0]!.path,
    ).toBe('classWeight');
  });

  it('class weights as one weight per class: unnamed classes weigh 1; a count check for the model', () => {
    expect(Array.from(classWeightVector({ '2': 5 }, 4))).toEqual([1, 1, 5, 1]);
    expect(Array.from(classWeightVector([0.5, 2], 2))).toEqual([0.5, 2]);
    expect(classWeightIssues([1, 2], 3)).toEqual([
      { path: 'classWeight', message: expect.stringContaining('2 weights for 3 classes') },
    ]);
    expect(classWeightIssues({ '9': 1 }, 3)[0]!.path).toBe('classWeight.9');
    expect(classWeightIssues({ '2': 1 }, 3)).toEqual([]);
  });
});
