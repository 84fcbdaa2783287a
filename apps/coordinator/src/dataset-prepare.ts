import { createHash } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InvalidDataError,
  checkLabels,
  encodeShard,
  loadDataset,
  targetWidth,
  parseCsv,
  parseJsonl,
  sha256Hex,
  type DataSplit,
  type DatasetSpec,
  type LabelKind,
} from '@gradfleet/core';
import type { PreparedDataset, PreparedSplit } from './dataset-ingest.js';
import { readDatasetPath, readStoredFile } from './dataset-path.js';
import { downloadDataset, urlName, type UrlPolicy } from './dataset-url.js';

/** A dataset given in the job spec itself: CSV, JSON Lines or IDX files (not MNIST, not a named dataset). */
export type InlineDatasetSpec = Exclude<DatasetSpec, 'mnist' | { name: string }>;

/** Where an inline dataset's files may come from (`DatasetSourceOptions`, resolved). */
export interface InlineDatasetOptions {
  dataDir: string;
  roots: readonly string[];
  urlAllow: readonly string[];
  maxBytes: number;
}

/** How errors name a source: URLs without credentials or query. */
const display = (source: string) => (/^https?:\/\//i.test(source) ? urlName(source) : source);

/**
 * Reads, parses and encodes the dataset files a job spec names into `data-shard` files in
 * the job's directory. Runs on the dataset preparation thread (`dataset-prepare-thread.ts`),
 * never on the coordinator's event loop. Files come from an upload, a path under
 * `--dataset-root`, or an http(s) URL on `--dataset-url-allow` fetched once (cached by URL).
 * Malformed data is refused with the file, line/record and reason, and the spec field that
 * named it, never with the data itself.
 */
export class InlineDataset {
  private readonly urlPolicy: UrlPolicy;

  constructor(
    private readonly options: InlineDatasetOptions,
    note?: UrlPolicy['note'],
  ) {
    this.urlPolicy = { allow: options.urlAllow, maxBytes: options.maxBytes, ...(note ? { note } : {}) };
  }

  /** The bytes of a source: an upload, a URL (fetched once into `<dataDir>/downloads`) or a path. */
  private async bytes(source: string, field: string): Promise<Buffer> {
    if (source.startsWith('upload:')) {
      const id = source.slice('upload:'.length);
      if (!/^[A-Za-z0-9._-]+$/.test(id) || id.startsWith('.'))
        throw new InvalidDataError(`${source}: not an upload id`, field);
      return readStoredFile(
        join(this.options.dataDir, 'uploads', id),
        source,
        this.options.maxBytes,
        field,
        'no such upload',
      );
    }
    if (/^https?:\/\//i.test(source)) {
      const dir = join(this.options.dataDir, 'downloads');
      const path = join(dir, createHash('sha256').update(source).digest('hex'));
      if (!(await stat(path).catch(() => undefined))) {
        await mkdir(dir, { recursive: true });
        await downloadDataset(source, path, this.urlPolicy, field);
      }
      return readStoredFile(
        path,
        urlName(source),
        this.options.maxBytes,
        field,
        'the download expired meanwhile; retry',
      );
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(source) && !/^[a-z]:[\\/]/i.test(source))
      throw new InvalidDataError(`${source}: only paths, http(s) URLs and upload:<id> are dataset sources`, field);
    return readDatasetPath(source, this.options.roots ?? [], this.options.maxBytes, field);
  }

  private async text(source: string, field: string): Promise<string> {
    return (await this.bytes(source, field)).toString('utf8');
  }

  private async load(
    spec: InlineDatasetSpec,
    labels: LabelKind,
  ): Promise<{
    train: DataSplit;
    validation?: DataSplit;
    test?: DataSplit;
    featureShape: number[];
    numClasses: number;
  }> {
    const named = async <T>(field: string, f: () => Promise<T>): Promise<T> => {
      try {
        return await f();
      } catch (err) {
        if (err instanceof InvalidDataError) err.path ??= field;
        throw err;
      }
    };
    if ('idx' in spec) {
      const i = spec.idx;
      const fields = new Map<string | undefined, string>([
        [i.testLabels, 'dataset.idx.testLabels'],
        [i.testImages, 'dataset.idx.testImages'],
        [i.validationLabels, 'dataset.idx.validationLabels'],
        [i.validationImages, 'dataset.idx.validationImages'],
        [i.trainLabels, 'dataset.idx.trainLabels'],
        [i.trainImages, 'dataset.idx.trainImages'],
      ]);
      const read = (file: string) => this.bytes(file, fields.get(file) ?? 'dataset.idx');
      const d = await named('dataset.idx', async () => {
        const loaded = await loadDataset({ idx: i }, read);
        checkLabels(loaded.train, labels, display(i.trainLabels));
        if (loaded.validation) checkLabels(loaded.validation, labels, display(i.validationLabels!));
        if (loaded.test) checkLabels(loaded.test, labels, display(i.testLabels!));
        return loaded;
      });
      return {
        train: d.train,
        ...(d.validation ? { validation: d.validation } : {}),
        ...(d.test ? { test: d.test } : {}),
        featureShape: d.featureShape,
        numClasses: targetWidth(labels, d.numClasses),
      };
    }
    const numericLabels = labels === 'regression';
    const [kind, parse] =
      'csv' in spec
        ? (['csv', (t: string, name: string) => parseCsv(t, name, { ...spec.csv, numericLabels })] as const)
        : ([
            'jsonl',
            (t: string, name: string) =>
              parseJsonl(t, name, spec.jsonl.featureScale, numericLabels, labels === 'multilabel'),
          ] as const);
    const files = 'csv' in spec ? spec.csv : spec.jsonl;
    const parseChecked = async (source: string, field: string) => {
      const parsed = parse(await this.text(source, field), display(source));
      checkLabels(parsed.split, labels, display(source));
      return parsed;
    };
    const train = await named(`dataset.${kind}.train`, () => parseChecked(files.train, `dataset.${kind}.train`));
    /** A validation or test file: parsed, labels checked, the same features per example as the training file. */
    const other = async (name: 'validation' | 'test') => {
      const source = files[name];
      if (source === undefined) return undefined;
      const field = `dataset.${kind}.${name}`;
      const parsed = await named(field, () => parseChecked(source, field));
      if (parsed.split.featureSize !== train.split.featureSize)
        throw new InvalidDataError(
          `${display(source)}: ${parsed.split.featureSize} features per example, ${display(files.train)} has ${train.split.featureSize}`,
          field,
        );
      if ((parsed.split.labelWidth ?? 1) !== (train.split.labelWidth ?? 1))
        throw new InvalidDataError(
          `${display(source)}: ${parsed.split.labelWidth ?? 1} targets per example, ${display(files.train)} has ${train.split.labelWidth ?? 1}`,
          field,
        );
      return parsed;
    };
    const validation = await other('validation');
    const test = await other('test');
    let maxLabel = 0;
    for (const s of [train.split, validation?.split, test?.split])
      if (s) for (const y of s.y) maxLabel = Math.max(maxLabel, y);
    return {
      train: train.split,
      ...(validation ? { validation: validation.split } : {}),
      ...(test ? { test: test.split } : {}),
      featureShape: train.featureShape,
      numClasses: targetWidth(labels, labels === 'multilabel' ? (train.split.labelWidth ?? 1) : maxLabel + 1),
    };
  }

  /**
   * Parses and encodes the dataset of a job into `<jobDir>/data`, its labels checked against
   * the job's `labels` kind. `numClasses` is the target
   * width: the class count, or 1 for binary and regression labels.
   */
  async prepare(jobId: string, jobDir: string, spec: InlineDatasetSpec, labels: LabelKind): Promise<PreparedDataset> {
    const d = await this.load(spec, labels);
    const dir = join(jobDir, 'data');
    await mkdir(dir, { recursive: true });
    const write = async (name: 'train' | 'validation' | 'test', split: DataSplit): Promise<PreparedSplit> => {
      const shard = encodeShard(split, d.featureShape, d.numClasses);
      await writeFile(join(dir, `${name}.bin`), shard);
      return {
        path: `/v1/jobs/${jobId}/data/${name}`,
        bytes: shard.byteLength,
        sha256: sha256Hex(shard),
        examples: split.count,
      };
    };
    return {
      train: await write('train', d.train),
      ...(d.validation ? { validation: await write('validation', d.validation) } : {}),
      ...(d.test ? { test: await write('test', d.test) } : {}),
      featureShape: d.featureShape,
      numClasses: d.numClasses,
    };
  }
}
