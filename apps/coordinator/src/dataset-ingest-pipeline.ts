import sharp, { type OutputInfo } from 'sharp';
import {
  ByteReader,
  CsvRowParser,
  DEFAULT_MAX_FIELDS,
  DEFAULT_MAX_LINE_BYTES,
  IdxStream,
  InvalidDataError,
  JsonlRecordParser,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  MAX_IDX_BYTES,
  SplitChunkWriter,
  checkManifest,
  chunkExamplesFor,
  chunkName,
  epochPermutation,
  featureSizeOf,
  maybeGunzip,
  readLines,
  type ChunkSink,
  type DatasetManifest,
  type FeatureDtype,
  type IngestProgress,
  type IngestRequest,
  type SplitManifest,
  type SplitName,
  verifyChunk,
} from '@gradfleet/core';
import type { ChunkStore } from './chunk-store.js';
import type { DatasetSources, OpenedSource } from './dataset-sources.js';
import { LabelCheck } from './label-check.js';
import { trackedSink } from './tracked-sink.js';

/** Seed of the order image-folder examples are stored in (fixed: the same folder gives the same dataset). */
const IMAGE_ORDER_SEED = 0x1a6e;

/** Most examples in one split by default: the sampler's indices are 32-bit. */
export const DEFAULT_MAX_EXAMPLES = 2 ** 31 - 1;
/** How often progress is reported at most, in ms. */
const PROGRESS_EVERY_MS = 100;

/** Limits of one ingestion; every one is checked before what it bounds is allocated. */
export interface IngestLimits {
  /** @defaultValue DEFAULT_MAX_LINE_BYTES */
  maxLineBytes?: number;
  /** @defaultValue DEFAULT_MAX_FIELDS */
  maxFields?: number;
  /** Examples per split. @defaultValue DEFAULT_MAX_EXAMPLES */
  maxExamples?: number;
  /** Bytes of one IDX file once inflated. @defaultValue MAX_IDX_BYTES */
  maxInflatedBytes?: number;
}

export interface IngestPipelineOptions extends IngestLimits {
  onProgress?: (p: IngestProgress) => void;
}

/**
 * Streams a dataset source into chunks (`docs/datasets.md`): one chunk in memory at a time,
 * every limit checked before what it bounds is allocated, errors naming file and line (or
 * record, or image) and the request field, never content. Returns the manifest, also stored
 * as `manifest.json` in `store` once every chunk is there.
 */
export async function ingestDataset(
  req: IngestRequest,
  sources: DatasetSources,
  store: ChunkStore,
  options: IngestPipelineOptions = {},
): Promise<DatasetManifest> {
  const sink = trackedSink(store);
  try {
    return await streamIntoChunks(req, sources, store, sink, options);
  } catch (err) {
    // A chunk still being stored lands (or fails) before the caller removes the half-written target.
    await sink.idle();
    throw err;
  }
}

async function streamIntoChunks(
  req: IngestRequest,
  sources: DatasetSources,
  store: ChunkStore,
  sink: ChunkSink,
  options: IngestPipelineOptions,
): Promise<DatasetManifest> {
  const maxExamples = options.maxExamples ?? DEFAULT_MAX_EXAMPLES;
  const progress: IngestProgress = { bytesRead: 0, bytesTotal: 0, examples: 0, chunks: 0, bytesWritten: 0 };
  let lastReport = 0;
  let doneBytes = 0; // bytes of finished sources
  let doneWritten = 0;
  let doneExamples = 0;
  let doneChunks = 0;
  let current: SplitChunkWriter | undefined;
  const report = (force = false) => {
    const now = Date.now();
    if (!force && now - lastReport < PROGRESS_EVERY_MS) return;
    lastReport = now;
    progress.examples = doneExamples + (current?.examples ?? 0);
    progress.bytesWritten = doneWritten + (current?.bytesWritten ?? 0);
    progress.chunks = doneChunks + (current ? Math.floor(current.examples / current.chunkExamples) : 0);
    options.onProgress?.({ ...progress });
  };
  const labels = new LabelCheck(req.labels);
  const labelDtype = req.labels === 'regression' ? 'float32' : 'int32';
  const finishSplit = async (w: SplitChunkWriter): Promise<SplitManifest> => {
    const s = await w.finish();
    doneExamples += s.examples;
    doneWritten += w.bytesWritten;
    doneChunks += s.chunks.length;
    current = undefined;
    report(true);
    return s;
  };
  const opened = async (source: string, field: string): Promise<OpenedSource> => {
    const o = await sources.open(source, field);
    progress.bytesTotal += o.bytes;
    return o;
  };
  const counting = (o: OpenedSource) => {
    const base = doneBytes;
    let seen = 0;
    return {
      onBytes: (n: number) => {
        seen = n;
        progress.bytesRead = base + n;
        report();
      },
      done: () => {
        doneBytes = base + seen;
        progress.bytesRead = doneBytes;
      },
      o,
    };
  };
  const tooMany = (file: string) =>
    new InvalidDataError(`${file}: more than ${maxExamples} examples (the coordinator's limit)`);

  let featureShape: number[] = [];
  let dtype: FeatureDtype = 'float32';
  let scale = 1;
  let chunkExamples = 0;
  let classes: string[] | undefined;
  let sourceClasses: number | undefined; // a chunked source's class count, carried over
  const splits: Partial<Record<SplitName, SplitManifest>> = {};
  const src = req.source;

  /** A writer for `split`; the test split must match the training split's shape. */
  const writer = (split: SplitName, shape: number[], file: string): SplitChunkWriter => {
    const size = shape.reduce((a, b) => a * b, 1);
    if (split === 'train') {
      featureShape = shape;
      chunkExamples = chunkExamplesFor(size, dtype, req.chunkBytes);
    } else if (shape.join('x') !== featureShape.join('x')) {
      throw new InvalidDataError(
        `${file}: examples of ${shape.join('x')} values, the training examples have ${featureShape.join('x')}`,
      );
    }
    current = new SplitChunkWriter(split, size, dtype, labelDtype, chunkExamples, sink);
    return current;
  };

  if ('csv' in src || 'jsonl' in src) {
    const files = 'csv' in src ? src.csv : src.jsonl;
    const kind = 'csv' in src ? 'csv' : 'jsonl';
    for (const split of ['train', 'test'] as const) {
      const source = files[split];
      if (!source) continue;
      const field = `source.${kind}.${split}`;
      const c = counting(await opened(source, field));
      const file = c.o.display;
      let w: SplitChunkWriter | undefined;
      try {
        const lines = readLines(c.o.stream, file, {
          maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
          onBytes: c.onBytes,
        });
        if ('csv' in src) {
          const parser = new CsvRowParser(file, {
            labelColumn: src.csv.labelColumn,
            header: src.csv.header,
            featureScale: src.csv.featureScale,
            numericLabels: req.labels === 'regression',
            maxFields: options.maxFields ?? DEFAULT_MAX_FIELDS,
          });
          let first = true;
          for await (const line of lines) {
            if (first) {
              first = false;
              const header = parser.first(line);
              w = writer(split, [parser.featureSize], file);
              if (header) continue;
            }
            if (w!.examples >= maxExamples) throw tooMany(file);
            const y = parser.row(line, w!.slot());
            await w!.commit(labels.check(y, file, `line ${line.n}`));
          }
        } else {
          const parser = new JsonlRecordParser(file, src.jsonl.featureScale, req.labels === 'regression');
          for await (const line of lines) {
            if (w && w.examples >= maxExamples) throw tooMany(file);
            const y = parser.record(line, () => (w ??= writer(split, parser.shape!, file)).slot());
            await w!.commit(labels.check(y, file, `line ${line.n}`));
          }
        }
      } catch (err) {
        if (err instanceof InvalidDataError) err.path ??= field;
        throw err;
      }
      c.done();
      if (!w || w.examples === 0)
        throw new InvalidDataError(`${file}: no ${kind === 'csv' ? 'data rows' : 'records'}`, field);
      splits[split] = await finishSplit(w);
    }
  } else if ('idx' in src) {
    const files = src.idx;
    const max = options.maxInflatedBytes ?? MAX_IDX_BYTES;
    for (const split of ['train', 'test'] as const) {
      const imagesSrc = split === 'train' ? files.trainImages : files.testImages;
      const labelsSrc = split === 'train' ? files.trainLabels : files.testLabels;
      if (!imagesSrc || !labelsSrc) continue;
      const imField = `source.idx.${split}Images`;
      const lbField = `source.idx.${split}Labels`;
      const named = async <T>(field: string, f: () => Promise<T>): Promise<T> => {
        try {
          return await f();
        } catch (err) {
          if (err instanceof InvalidDataError) err.path ??= field;
          throw err;
        }
      };
      const im = counting(await opened(imagesSrc, imField));
      const lb = await opened(labelsSrc, lbField);
      const imReader = new ByteReader(
        maybeGunzip(
          (async function* () {
            let n = 0;
            for await (const b of im.o.stream) {
              n += b.byteLength;
              im.onBytes(n);
              yield b;
            }
          })(),
          im.o.display,
          max,
        ),
        im.o.display,
      );
      let labelBytes = 0; // added to bytesRead once the split is done
      const lbReader = new ByteReader(
        maybeGunzip(
          (async function* () {
            for await (const b of lb.stream) {
              labelBytes += b.byteLength;
              yield b;
            }
          })(),
          lb.display,
          max,
        ),
        lb.display,
      );
      const images = await named(imField, () => IdxStream.open(imReader, im.o.display));
      const labelIdx = await named(lbField, () => IdxStream.open(lbReader, lb.display));
      if (labelIdx.dims.length !== 1 || labelIdx.count !== images.count)
        throw new InvalidDataError(
          `${lb.display}: ${labelIdx.dims.join('x')} labels do not match ${images.count} examples in ${im.o.display}`,
          lbField,
        );
      if (images.count > maxExamples) throw Object.assign(tooMany(im.o.display), { path: imField });
      if (images.dims.length < 2)
        throw new InvalidDataError(`${im.o.display}: IDX images need 2 or more dimensions`, imField);
      const shape = images.dims.slice(1);
      if (split === 'train') {
        dtype = images.bytes ? 'uint8' : 'float32';
        scale = images.bytes ? 1 / 255 : 1;
      } else if ((images.bytes ? 'uint8' : 'float32') !== dtype)
        throw new InvalidDataError(`${im.o.display}: element type differs from the training images`, imField);
      const w = await named(imField, async () => writer(split, shape, im.o.display));
      // Whole runs of records at a time, as many as the current chunk takes: one copy of the
      // images straight into the chunk, the labels checked as a block.
      const ys = new Float64Array(w.chunkExamples);
      for (let i = 0; i < images.count;) {
        const k = Math.min(w.room, images.count - i);
        await named(imField, () => images.nextMany(k, w.slots(k)));
        const y = ys.subarray(0, k);
        await named(lbField, async () => {
          await labelIdx.nextMany(k, y);
          labels.checkMany(y, lb.display, i);
        });
        await w.commitMany(y);
        i += k;
      }
      await named(imField, () => images.end());
      await named(lbField, () => labelIdx.end());
      im.done();
      doneBytes += labelBytes;
      progress.bytesRead = doneBytes;
      splits[split] = await finishSplit(w);
    }
  } else if ('chunked' in src) {
    // An existing chunked dataset, copied example by example in its order: one source chunk
    // in memory at a time, each verified against the source manifest before any of it is written.
    const field = 'dataset' in src.chunked ? 'source.chunked.dataset' : 'source.chunked.dir';
    const from = await sources.openChunked(src.chunked, field);
    const m = from.manifest;
    if (m.labels.kind !== req.labels)
      throw new InvalidDataError(
        `${from.display}: its labels are '${m.labels.kind}'; the request says labels '${req.labels}' (give labels: '${m.labels.kind}')`,
        'labels',
      );
    dtype = m.dtype;
    scale = m.scale;
    classes = m.labels.classes;
    sourceClasses = m.labels.numClasses;
    const f = featureSizeOf(m);
    for (const split of ['train', 'test'] as const)
      for (const c of m.splits[split]?.chunks ?? []) progress.bytesTotal += c.bytes;
    for (const split of ['train', 'test'] as const) {
      const s = m.splits[split];
      if (!s) continue;
      if (s.examples > maxExamples) throw Object.assign(tooMany(`${from.display} ${split}`), { path: field });
      const out = writer(split, m.featureShape, from.display);
      for (let i = 0; i < s.chunks.length; i++) {
        const name = `${from.display}: ${split} chunk ${i} (${chunkName(split, i)})`;
        const bytes = await from.chunk(split, i);
        let chunk;
        try {
          chunk = verifyChunk(bytes, m, split, i, name);
        } catch (err) {
          throw Object.assign(err as Error, { path: field }); // DatasetChunkError: its code, the chunk named
        }
        for (let k = 0; k < chunk.count; k++) {
          out.slot().set(chunk.x.subarray(k * f, (k + 1) * f));
          await out.commit(labels.check(chunk.y[k]!, name, `example ${k}`));
        }
        progress.bytesRead += bytes.byteLength;
        report();
      }
      splits[split] = await finishSplit(out);
    }
  } else {
    const spec = src.images;
    const [h, w] = spec.size;
    const c = spec.channels;
    dtype = 'uint8';
    scale = 1 / 255;
    if (req.labels !== 'class' && req.labels !== 'binary')
      throw new InvalidDataError(`image folders have class labels; labels '${req.labels}' cannot hold them`, 'labels');
    for (const split of ['train', 'test'] as const) {
      const dir = split === 'train' ? spec.dir : spec.testDir;
      if (!dir) continue;
      const field = split === 'train' ? 'source.images.dir' : 'source.images.testDir';
      const listed = await sources.listImages(dir, field, classes);
      classes ??= listed.classes;
      if (listed.images.length > maxExamples) throw Object.assign(tooMany(dir), { path: field });
      const out = writer(split, [h, w, c], dir);
      for (const img of listed.images) progress.bytesTotal += img.bytes;
      // Listed class by class; stored in a seeded order (as Keras's image_dataset_from_directory
      // shuffles), so that a split's tail — what validationSplit holds out — is not one class.
      const order = epochPermutation(listed.images.length, IMAGE_ORDER_SEED, 0);
      for (const k of order) {
        const img = listed.images[k]!;
        const buf = await sources.readSmall(img.source, field);
        let raw: { data: Buffer; info: OutputInfo };
        try {
          let pipeline = sharp(buf, { failOn: 'error', limitInputPixels: 268_402_689 }).resize(w, h, { fit: 'fill' });
          pipeline = c === 1 ? pipeline.greyscale() : pipeline.removeAlpha().toColourspace('srgb');
          raw = await pipeline.raw().toBuffer({ resolveWithObject: true });
        } catch {
          throw new InvalidDataError(`${img.source}: cannot decode the image (not a valid PNG or JPEG)`, field);
        }
        if (
          raw.info.width !== w ||
          raw.info.height !== h ||
          raw.info.channels !== c ||
          raw.data.byteLength !== h * w * c
        )
          throw new InvalidDataError(`${img.source}: decoded to an unexpected shape`, field);
        out.slot().set(raw.data);
        await out.commit(labels.check(img.label, img.source, 'class'));
        progress.bytesRead += img.bytes || buf.byteLength;
        report();
      }
      splits[split] = await finishSplit(out);
    }
  }
  const numClasses =
    req.labels === 'regression'
      ? 1
      : sourceClasses !== undefined
        ? sourceClasses
        : classes
          ? classes.length
          : Math.max(labels.max + 1, req.labels === 'binary' ? 2 : 1);
  const manifest: DatasetManifest = checkManifest(
    {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      featureShape,
      dtype,
      scale,
      labels: { kind: req.labels, dtype: labelDtype, numClasses, ...(classes ? { classes } : {}) },
      chunkExamples,
      splits: { train: splits.train!, ...(splits.test ? { test: splits.test } : {}) },
    },
    'manifest',
  );
  await store.put('manifest.json', Buffer.from(JSON.stringify(manifest)));
  report(true);
  return manifest;
}
