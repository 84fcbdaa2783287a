import { z } from 'zod';
import type { LabelKind } from './job-spec.js';

/**
 * Evaluation metrics a job may list (`metrics`), computed on the validation and test sets
 * over the whole evaluated set (`libs/core/src/model/eval-metrics.ts`).
 */
export const METRIC_NAMES = [
  'accuracy',
  'binaryAccuracy',
  'precision',
  'recall',
  'mse',
  'mae',
  'topKCategoricalAccuracy',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** Keras's default `k` of `top_k_categorical_accuracy`. */
export const DEFAULT_TOP_K = 5;

/** The label kinds each metric fits; another pairing is refused on `metrics.<i>`. */
export const METRIC_LABELS = {
  accuracy: ['class', 'binary', 'multilabel'],
  binaryAccuracy: ['binary', 'multilabel'],
  precision: ['binary', 'multilabel'],
  recall: ['binary', 'multilabel'],
  mse: ['class', 'binary', 'multilabel', 'regression'],
  mae: ['class', 'binary', 'multilabel', 'regression'],
  topKCategoricalAccuracy: ['class'],
} as const satisfies Record<MetricName, readonly LabelKind[]>;

/** A metric: its name, or `{ name: 'topKCategoricalAccuracy', k }` (k defaults to 5). */
export const MetricSchema = z.union([
  z.enum(METRIC_NAMES),
  z
    .object({
      name: z.literal('topKCategoricalAccuracy'),
      k: z.number().int().min(1).max(100_000).default(DEFAULT_TOP_K),
    })
    .strict(),
]);
export type Metric = z.output<typeof MetricSchema>;

/** Absent: the kind's metric of old, `accuracy` (none for regression); see `defaultMetrics`. */
export const MetricsSchema = z.array(MetricSchema).max(METRIC_NAMES.length + 8);

/** The metrics of a spec that lists none: what a job reported before `metrics` took a list. */
export function defaultMetrics(labels: LabelKind): Metric[] {
  return labels === 'regression' ? [] : ['accuracy'];
}

/** A metric's name and `k` (for top-k accuracy). */
export function metricParts(m: Metric): { name: MetricName; k: number } {
  return typeof m === 'string' ? { name: m, k: DEFAULT_TOP_K } : { name: m.name, k: m.k };
}

/** The key a metric's value is reported under: its name, `top<k>CategoricalAccuracy` for top-k. */
export function metricKey(m: Metric): string {
  const { name, k } = metricParts(m);
  return name === 'topKCategoricalAccuracy' ? `top${k}CategoricalAccuracy` : name;
}

const classIndex = z.string().regex(/^(0|[1-9]\d{0,8})$/, 'a class index: 0, 1, 2, ...');
const weight = z.number().finite().min(0, 'a class weight is a non-negative number');

/**
 * Per-class loss weights (Keras `class_weight`): `{ "0": 1, "1": 5 }` (classes not named
 * weigh 1) or an array with one weight per class.
 */
export const ClassWeightSchema = z.union([
  z.array(weight).min(1).max(100_000),
  z.record(classIndex, weight).refine((r) => Object.keys(r).length > 0, 'name at least one class'),
]);
export type ClassWeight = z.output<typeof ClassWeightSchema>;

/** The class weights as one weight per class, `classes` wide (classes not named weigh 1). */
export function classWeightVector(cw: ClassWeight, classes: number): Float32Array {
  const out = new Float32Array(classes).fill(1);
  if (Array.isArray(cw)) out.set(cw.slice(0, classes));
  else for (const [k, v] of Object.entries(cw)) if (Number(k) < classes) out[Number(k)] = v;
  return out;
}

/**
 * Refusals of a class weight that does not fit `classes` classes, as field issues: an array
 * of another length, or an object naming a class at or beyond the count.
 */
export function classWeightIssues(cw: ClassWeight, classes: number): { path: string; message: string }[] {
  if (Array.isArray(cw))
    return cw.length === classes
      ? []
      : [
          {
            path: 'classWeight',
            message: `${cw.length} weights for ${classes} classes: give one per class, or an object naming only the classes to weigh`,
          },
        ];
  return Object.keys(cw)
    .filter((k) => Number(k) >= classes)
    .map((k) => ({
      path: `classWeight.${k}`,
      message: `class ${k} is outside the ${classes} classes (0..${classes - 1})`,
    }));
}

interface TargetsFields {
  labels: LabelKind;
  loss: string;
  metrics?: Metric[] | undefined;
  classWeight?: ClassWeight | undefined;
  dataset: unknown;
}

/**
 * The job-spec refusals of `labels: 'multilabel'`, `metrics` and `classWeight` that need no
 * data (`JobSpecSchema`'s refinement calls this); the class count is checked against the
 * model by the coordinator.
 */
export function targetsIssues(s: TargetsFields): { path: (string | number)[]; message: string }[] {
  const out: { path: (string | number)[]; message: string }[] = [];
  const seen = new Set<string>();
  (s.metrics ?? []).forEach((m, i) => {
    const { name } = metricParts(m);
    const fits: readonly string[] = METRIC_LABELS[name];
    if (!fits.includes(s.labels)) {
      const instead = METRIC_NAMES.filter((n) => (METRIC_LABELS[n] as readonly string[]).includes(s.labels));
      out.push({
        path: ['metrics', i],
        message: `'${name}' does not apply to labels '${s.labels}'${name === 'precision' || name === 'recall' ? ' (it counts positives of 0/1 targets)' : ''}; with labels '${s.labels}' list ${instead.map((n) => `'${n}'`).join(', ')}`,
      });
    }
    const key = metricKey(m);
    if (seen.has(key)) out.push({ path: ['metrics', i], message: `'${key}' is listed twice: list it once` });
    seen.add(key);
  });
  if (s.classWeight !== undefined) {
    if (s.labels !== 'class' && s.labels !== 'binary')
      out.push({
        path: ['classWeight'],
        message: `class weights apply to labels 'class' and 'binary', not '${s.labels}': remove classWeight`,
      });
    else if (s.labels === 'binary')
      for (const issue of classWeightIssues(s.classWeight, 2))
        out.push({ path: issue.path.split('.'), message: issue.message });
  }
  const csv = csvOptions(s.dataset);
  if (s.labels === 'multilabel') {
    const d = s.dataset;
    if (d === 'mnist' || (d && typeof d === 'object' && !('csv' in d) && !('jsonl' in d)))
      out.push({
        path: ['labels'],
        message:
          'multilabel targets come from CSV (dataset.csv.labelColumns) or JSON Lines (an array y): use one of those datasets',
      });
    else if (csv && csv['labelColumns'] === undefined)
      out.push({
        path: ['dataset', 'csv', 'labelColumns'],
        message: `labels 'multilabel' need the target columns: labelColumns ["a", "b"], [3, 4] or { "last": K }`,
      });
  } else if (csv?.['labelColumns'] !== undefined)
    out.push({
      path: ['dataset', 'csv', 'labelColumns'],
      message: `several target columns are labels 'multilabel', not '${s.labels}': use labelColumn for one label`,
    });
  if (csv?.['labelColumns'] !== undefined && csv['labelColumn'] !== undefined)
    out.push({
      path: ['dataset', 'csv', 'labelColumn'],
      message: 'labelColumn names one label, labelColumns the targets of a multilabel job: give one of them',
    });
  return out;
}

function csvOptions(dataset: unknown): Record<string, unknown> | undefined {
  return dataset && typeof dataset === 'object' && 'csv' in dataset
    ? (dataset as { csv: Record<string, unknown> }).csv
    : undefined;
}

/** CSV target columns of multilabel jobs: header names, 0-based indices, or the last K columns. */
export const LabelColumnsSchema = z.union([
  z.array(z.string().min(1).max(256)).min(1).max(10_000),
  z.array(z.number().int().min(0)).min(1).max(10_000),
  z.object({ last: z.number().int().min(1).max(10_000) }).strict(),
]);
export type LabelColumns = z.output<typeof LabelColumnsSchema>;
