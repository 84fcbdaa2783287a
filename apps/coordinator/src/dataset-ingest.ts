import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
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
  type RemoteSplit,
} from '@gradfleet/core';

/** Largest dataset file accepted by upload or URL fetch, in bytes. */
export const DEFAULT_MAX_DATASET_BYTES = 1024 * 1024 * 1024;

export interface PreparedSplit extends RemoteSplit {
  examples: number;
}

/** A dataset ready to serve: encoded shards in the job's directory. */
export interface PreparedDataset {
  train: PreparedSplit;
  test?: PreparedSplit;
  featureShape: number[];
  numClasses: number;
}

/**
 * Turns a job's dataset into shards the coordinator serves to workers
 * (`GET /v1/jobs/:id/data/train|test`, `data-shard` format). Files come from a path on the
 * coordinator, an http(s) URL fetched once (cached by URL), or an upload. Malformed data is
 * refused with the file, line/record and reason, and the spec field that named it.
 */
export class DatasetIngest {
  constructor(
    private readonly dataDir: string,
    readonly maxBytes = DEFAULT_MAX_DATASET_BYTES,
  ) {}

  /** Stores an uploaded file; returns the source to put in a job spec (`upload:<id>`). */
  async saveUpload(
    body: AsyncIterable<Buffer>,
    name: string,
  ): Promise<{ source: string; bytes: number; sha256: string }> {
    const dir = join(this.dataDir, 'uploads');
    await mkdir(dir, { recursive: true });
    const id = `${randomUUID()}-${name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)}`;
    const tmp = join(dir, `.${id}.tmp`);
    const hash = createHash('sha256');
    let bytes = 0;
    const limit = this.maxBytes;
    async function* counted() {
      for await (const chunk of body) {
        bytes += chunk.length;
        if (bytes > limit) throw new InvalidDataError(`upload exceeds ${limit} bytes`, 'body');
        hash.update(chunk);
        yield chunk;
      }
    }
    try {
      await pipeline(counted, createWriteStream(tmp));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await rename(tmp, join(dir, id));
    return { source: `upload:${id}`, bytes, sha256: hash.digest('hex') };
  }

  /** A local path for a source; URLs are fetched once into `<dataDir>/downloads`. */
  private async resolve(source: string, field: string): Promise<string> {
    if (source.startsWith('upload:')) {
      const id = source.slice('upload:'.length);
      if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new InvalidDataError(`${source}: not an upload id`, field);
      const path = join(this.dataDir, 'uploads', id);
      if (!(await stat(path).catch(() => undefined))) throw new InvalidDataError(`${source}: no such upload`, field);
      return path;
    }
    if (/^https?:\/\//.test(source)) {
      const dir = join(this.dataDir, 'downloads');
      const path = join(dir, createHash('sha256').update(source).digest('hex'));
      if (await stat(path).catch(() => undefined)) return path;
      let res: Response;
      try {
        res = await fetch(source, { signal: AbortSignal.timeout(300_000) });
      } catch (err) {
        throw new InvalidDataError(
          `${source}: fetch failed (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message})`,
          field,
        );
      }
      if (!res.ok) throw new InvalidDataError(`${source}: HTTP ${res.status}`, field);
      const data = Buffer.from(await res.arrayBuffer());
      if (data.byteLength > this.maxBytes)
        throw new InvalidDataError(`${source}: ${data.byteLength} bytes exceeds ${this.maxBytes}`, field);
      await mkdir(dir, { recursive: true });
      await writeFile(`${path}.tmp`, data);
      await rename(`${path}.tmp`, path);
      return path;
    }
    return source;
  }

  private async text(source: string, field: string): Promise<{ text: string; path: string }> {
    const path = await this.resolve(source, field);
    try {
      return { text: await readFile(path, 'utf8'), path };
    } catch (err) {
      throw new InvalidDataError(
        `${source}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        field,
      );
    }
  }

  private async load(
    spec: Exclude<DatasetSpec, 'mnist'>,
    labels: LabelKind,
  ): Promise<{ train: DataSplit; test?: DataSplit; featureShape: number[]; numClasses: number }> {
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
      const files = {
        trainImages: await this.resolve(i.trainImages, 'dataset.idx.trainImages'),
        trainLabels: await this.resolve(i.trainLabels, 'dataset.idx.trainLabels'),
        testImages: i.testImages && (await this.resolve(i.testImages, 'dataset.idx.testImages')),
        testLabels: i.testLabels && (await this.resolve(i.testLabels, 'dataset.idx.testLabels')),
      };
      const d = await named('dataset.idx', async () => {
        const loaded = await loadDataset({ idx: files });
        checkLabels(loaded.train, labels, i.trainLabels);
        if (loaded.test) checkLabels(loaded.test, labels, i.testLabels!);
        return loaded;
      });
      return {
        train: d.train,
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
            (t: string, name: string) => parseJsonl(t, name, spec.jsonl.featureScale, numericLabels),
          ] as const);
    const files = 'csv' in spec ? spec.csv : spec.jsonl;
    const parseChecked = async (source: string, field: string) => {
      const parsed = parse((await this.text(source, field)).text, source);
      checkLabels(parsed.split, labels, source);
      return parsed;
    };
    const train = await named(`dataset.${kind}.train`, () => parseChecked(files.train, `dataset.${kind}.train`));
    const test = files.test
      ? await named(`dataset.${kind}.test`, () => parseChecked(files.test!, `dataset.${kind}.test`))
      : undefined;
    if (test && test.split.featureSize !== train.split.featureSize) {
      throw new InvalidDataError(
        `${files.test}: ${test.split.featureSize} features per example, ${files.train} has ${train.split.featureSize}`,
        `dataset.${kind}.test`,
      );
    }
    let maxLabel = 0;
    for (const s of [train.split, test?.split]) if (s) for (const y of s.y) maxLabel = Math.max(maxLabel, y);
    return {
      train: train.split,
      ...(test ? { test: test.split } : {}),
      featureShape: train.featureShape,
      numClasses: targetWidth(labels, maxLabel + 1),
    };
  }

  /**
   * Parses and encodes the dataset of a job into `<jobDir>/data`, its labels checked against
   * the job's `labels` kind; undefined for the built-in MNIST. `numClasses` is the target
   * width: the class count, or 1 for binary and regression labels.
   */
  async prepare(
    jobId: string,
    jobDir: string,
    spec: DatasetSpec,
    labels: LabelKind = 'class',
  ): Promise<PreparedDataset | undefined> {
    if (spec === 'mnist') return undefined;
    const d = await this.load(spec, labels);
    const dir = join(jobDir, 'data');
    await mkdir(dir, { recursive: true });
    const write = async (name: 'train' | 'test', split: DataSplit): Promise<PreparedSplit> => {
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
      ...(d.test ? { test: await write('test', d.test) } : {}),
      featureShape: d.featureShape,
      numClasses: d.numClasses,
    };
  }
}
