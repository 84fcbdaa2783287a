import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IngestRequestSchema,
  InvalidDataError,
  chunkName,
  createLogger,
  epochPermutation,
  parseCsv,
  verifyChunk,
  type DatasetManifest,
  type IngestRequestInput,
  type SplitName,
} from '@gradfleet/core';
import { FsChunkStore, S3ChunkStore, type ChunkStore } from './chunk-store.js';
import { DatasetCatalog } from './dataset-catalog.js';
import { ingestDataset, type IngestLimits } from './dataset-ingest-pipeline.js';
import { DatasetSources } from './dataset-sources.js';
import { startS3Server, type S3TestServer } from './s3-test-server.fixture.js';

let dir: string;
let root: string;
let s3: S3TestServer;
let client: S3Client;
let sources: DatasetSources;
const silent = createLogger('test').child({ level: 'silent' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gradfleet-ingest-'));
  root = join(dir, 'root');
  await mkdir(root);
  s3 = await startS3Server(['src', 'chunks']);
  client = s3.client();
  sources = new DatasetSources({
    dataDir: dir,
    roots: [root],
    s3Allow: ['src', 'chunks'],
    maxBytes: 1 << 30,
    s3: () => client,
  });
});
afterAll(async () => {
  client?.destroy();
  await s3?.close();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function ingest(input: IngestRequestInput, limits: IngestLimits = {}, store?: ChunkStore) {
  const out = store ?? new FsChunkStore(join(dir, `out-${n++}`));
  const progress: number[] = [];
  const manifest = await ingestDataset(IngestRequestSchema.parse(input), sources, out, {
    ...limits,
    onProgress: (p) => progress.push(p.examples),
  });
  /** Every example of a split, read back through the verifying reader. */
  const read = async (split: SplitName) => {
    const xs: number[] = [];
    const ys: number[] = [];
    for (let i = 0; i < (manifest.splits[split]?.chunks.length ?? 0); i++) {
      const c = verifyChunk(await out.get(chunkName(split, i)), manifest, split, i);
      xs.push(...c.x);
      ys.push(...c.y);
    }
    return { xs, ys };
  };
  return { manifest, read, progress, out };
}

const fail = async (p: Promise<unknown>): Promise<InvalidDataError> => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidDataError);
    return err as InvalidDataError;
  }
  throw new Error('did not fail');
};

function idx(type: number, dims: number[], values: ArrayLike<number>): Buffer {
  const head = Buffer.alloc(4 + dims.length * 4);
  head[2] = type;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + i * 4));
  return Buffer.concat([head, Buffer.from(Uint8Array.from(values))]);
}

describe('streaming ingestion into chunks', () => {
  it('CSV: the same examples as the in-memory parser, in chunks of the asked size, with progress', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => `${i % 3},${i},${i * 2},${-i}`);
    const text = `label,a,b,c\n${rows.join('\n')}\n`;
    await writeFile(join(root, 'train.csv'), text);
    await writeFile(join(root, 'test.csv'), 'label,a,b,c\n1,1,1,1\n');
    const { manifest, read, progress } = await ingest({
      source: { csv: { train: join(root, 'train.csv'), test: join(root, 'test.csv'), featureScale: 0.5 } },
      chunkBytes: 1024,
    });
    const ref = parseCsv(text, 'x', { featureScale: 0.5 }).split;
    expect(manifest.chunkExamples).toBe(64); // 1024 / (4 label + 3 × 4 feature bytes)
    expect(manifest.splits.train.chunks.length).toBe(5);
    expect(manifest.splits.test!.examples).toBe(1);
    expect(manifest.labels).toEqual({ kind: 'class', dtype: 'int32', numClasses: 3 });
    const train = await read('train');
    expect(train.xs).toEqual(Array.from(ref.x).map((v) => v * 0.5));
    expect(train.ys).toEqual(Array.from(ref.y));
    expect(progress.at(-1)).toBe(301);
  });

  it('JSON Lines with nested shapes and regression labels', async () => {
    const lines = Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({
        x: [
          [i, 1],
          [2, 3],
        ],
        y: i / 4,
      }),
    );
    await writeFile(join(root, 'r.jsonl'), lines.join('\n'));
    const { manifest, read } = await ingest({
      source: { jsonl: { train: join(root, 'r.jsonl') } },
      labels: 'regression',
    });
    expect(manifest.featureShape).toEqual([2, 2]);
    expect(manifest.labels).toEqual({ kind: 'regression', dtype: 'float32', numClasses: 1 });
    const { xs, ys } = await read('train');
    expect(xs.slice(4, 8)).toEqual([1, 1, 2, 3]);
    expect(ys[19]).toBeCloseTo(4.75);
  });

  it('IDX, gzipped or not: the same examples as parseIdx, stored as uint8', async () => {
    const images = idx(
      0x08,
      [30, 2, 3],
      Array.from({ length: 180 }, (_, i) => i % 251),
    );
    const labels = idx(
      0x08,
      [30],
      Array.from({ length: 30 }, (_, i) => i % 10),
    );
    await writeFile(join(root, 'im.gz'), gzipSync(images));
    await writeFile(join(root, 'lb'), labels);
    const { manifest, read } = await ingest({
      source: { idx: { trainImages: join(root, 'im.gz'), trainLabels: join(root, 'lb') } },
    });
    expect(manifest.dtype).toBe('uint8');
    expect(manifest.scale).toBeCloseTo(1 / 255);
    expect(manifest.featureShape).toEqual([2, 3]);
    const { xs, ys } = await read('train');
    expect(xs).toEqual(Array.from({ length: 180 }, (_, i) => i % 251));
    expect(ys).toEqual(Array.from({ length: 30 }, (_, i) => i % 10));
  });

  it('IDX in runs of records: many chunks (uint8 and float32 images) keep every example in order; a bad label names its record', async () => {
    const count = 12_000; // 84 KB of images: more than one 64 KiB read block
    const values = Array.from({ length: count * 7 }, (_, i) => (i * 31) % 256);
    await writeFile(join(root, 'many-im'), idx(0x08, [count, 7], values));
    await writeFile(
      join(root, 'many-lb'),
      idx(
        0x08,
        [count],
        Array.from({ length: count }, (_, i) => i % 2),
      ),
    );
    // 93 examples per chunk (1024 / (4 + 7) bytes): runs cross read blocks.
    const bytes = await ingest({
      source: { idx: { trainImages: join(root, 'many-im'), trainLabels: join(root, 'many-lb') } },
      chunkBytes: 1024,
    });
    expect(bytes.manifest.chunkExamples).toBe(93);
    expect(bytes.manifest.splits.train.chunks.length).toBe(130);
    const b = await bytes.read('train');
    expect(b.xs).toEqual(values);
    expect(b.ys).toEqual(Array.from({ length: count }, (_, i) => i % 2));
    // float32 (type 0x0D, big-endian) images: read value by value.
    const floats = Buffer.alloc(4 + 8 + count * 2 * 4);
    floats[2] = 0x0d;
    floats[3] = 2;
    floats.writeUInt32BE(count, 4);
    floats.writeUInt32BE(2, 8);
    for (let i = 0; i < count * 2; i++) floats.writeFloatBE(i / 8, 12 + i * 4);
    await writeFile(join(root, 'many-f'), floats);
    const f = await ingest({
      source: { idx: { trainImages: join(root, 'many-f'), trainLabels: join(root, 'many-lb') } },
      chunkBytes: 1024, // 85 examples of 4 + 8 bytes
    });
    expect(f.manifest.dtype).toBe('float32');
    expect((await f.read('train')).xs).toEqual(Array.from({ length: count * 2 }, (_, i) => i / 8));
    // Binary labels: a 2 at record 7777 is refused by number.
    await writeFile(
      join(root, 'bad-lb'),
      idx(
        0x08,
        [count],
        Array.from({ length: count }, (_, i) => (i === 7776 ? 2 : i % 2)),
      ),
    );
    const bad = await fail(
      ingest({
        source: { idx: { trainImages: join(root, 'many-im'), trainLabels: join(root, 'bad-lb') } },
        labels: 'binary',
        chunkBytes: 1024,
      }),
    );
    expect(bad.message).toBe(`${join(root, 'bad-lb')}: record 7777: label is not 0 or 1 (labels: 'binary')`);
    expect(bad.path).toBe('source.idx.trainLabels');
  });

  it('IDX: a gzip bomb stops at the inflate limit; a label file of another length is refused', async () => {
    const big = idx(0x08, [1000, 100, 100], new Uint8Array(10_000_000));
    await writeFile(join(root, 'bomb.gz'), gzipSync(big));
    await writeFile(join(root, 'lb1000'), idx(0x08, [1000], new Uint8Array(1000)));
    const err = await fail(
      ingest(
        { source: { idx: { trainImages: join(root, 'bomb.gz'), trainLabels: join(root, 'lb1000') } } },
        { maxInflatedBytes: 1_000_000 },
      ),
    );
    expect(err.message).toBe(`${join(root, 'bomb.gz')}: over 1000000 bytes once inflated`);
    expect(err.path).toBe('source.idx.trainImages');
    await writeFile(join(root, 'im5'), idx(0x08, [5, 2], new Uint8Array(10)));
    const mismatch = await fail(
      ingest({ source: { idx: { trainImages: join(root, 'im5'), trainLabels: join(root, 'lb1000') } } }),
    );
    expect(mismatch.message).toMatch(/1000 labels do not match 5 examples/);
    await writeFile(join(root, 'short'), idx(0x08, [5, 2], new Uint8Array(10)).subarray(0, 20));
    const truncated = await fail(
      ingest({ source: { idx: { trainImages: join(root, 'short'), trainLabels: join(root, 'lb1000') } } }),
    );
    expect(truncated.message).toMatch(/labels do not match|ends after/);
  });

  it('an image folder: PNG and JPEG decoded with sharp, resized, classes from the sub-folders', async () => {
    const images = join(root, 'images');
    const colours = { cat: { r: 200, g: 10, b: 10 }, dog: { r: 10, g: 10, b: 200 } };
    for (const [cls, background] of Object.entries(colours)) {
      await mkdir(join(images, cls), { recursive: true });
      for (let i = 0; i < 3; i++) {
        const img = sharp({ create: { width: 10 + i, height: 7, channels: 3, background } });
        await writeFile(join(images, cls, `${i}.png`), await img.png().toBuffer());
        await writeFile(join(images, cls, `${i}.jpg`), await img.jpeg({ quality: 100 }).toBuffer());
      }
      await writeFile(join(images, cls, 'notes.txt'), 'ignored');
    }
    const { manifest, read } = await ingest({ source: { images: { dir: images, size: [4, 5], channels: 3 } } });
    expect(manifest.featureShape).toEqual([4, 5, 3]);
    expect(manifest.labels.classes).toEqual(['cat', 'dog']);
    expect(manifest.splits.train.examples).toBe(12);
    const { xs, ys } = await read('train');
    // Stored in a seeded order, not class by class (a split's tail is not one class).
    const listed = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
    expect(ys).toEqual(Array.from(epochPermutation(12, 0x1a6e, 0), (k) => listed[k]));
    expect(ys.slice(0, 6)).not.toEqual([0, 0, 0, 0, 0, 0]);
    expect(Math.abs(xs[ys.indexOf(0) * 60]! - 200)).toBeLessThanOrEqual(3); // red of a cat, JPEG within 3
    expect(Math.abs(xs[ys.indexOf(1) * 60 + 2]! - 200)).toBeLessThanOrEqual(3); // blue of a dog
    const grey = await ingest({ source: { images: { dir: images, size: [2, 2], channels: 1 } } });
    expect(grey.manifest.featureShape).toEqual([2, 2, 1]);
    // An image that fails to decode is named, with the field; nothing of its bytes is echoed.
    await writeFile(join(images, 'dog', 'broken.png'), 'SECRET-not-a-png');
    const err = await fail(ingest({ source: { images: { dir: images, size: [4, 5], channels: 3 } } }));
    expect(err.message).toBe(`${join(images, 'dog', 'broken.png')}: cannot decode the image (not a valid PNG or JPEG)`);
    expect(err.path).toBe('source.images.dir');
  });

  it('bad input: errors name file and line, never content; limits hold before allocation; paths stay under the roots', async () => {
    await writeFile(join(root, 'bad.csv'), 'label,a\n1,2\n1,SECRET\n');
    const bad = await fail(ingest({ source: { csv: { train: join(root, 'bad.csv') } } }));
    expect(bad.message).toBe(`${join(root, 'bad.csv')}: line 3: column 2: not a number`);
    expect(bad.path).toBe('source.csv.train');
    await writeFile(join(root, 'many.csv'), '1,2\n'.repeat(50));
    const many = await fail(ingest({ source: { csv: { train: join(root, 'many.csv') } } }, { maxExamples: 10 }));
    expect(many.message).toMatch(/more than 10 examples/);
    await writeFile(join(root, 'long.jsonl'), `{"x":[${'1,'.repeat(1000)}1],"y":0}\n`);
    const long = await fail(ingest({ source: { jsonl: { train: join(root, 'long.jsonl') } } }, { maxLineBytes: 100 }));
    expect(long.message).toBe(`${join(root, 'long.jsonl')}: line 1: longer than 100 bytes`);
    await writeFile(join(dir, 'outside.csv'), '1,2\n');
    const outside = await fail(ingest({ source: { csv: { train: join(dir, 'outside.csv') } } }));
    expect(outside.message).toMatch(/outside the coordinator --dataset-root/);
    const binary = await fail(ingest({ source: { csv: { train: join(root, 'train.csv') } }, labels: 'binary' }));
    expect(binary.message).toMatch(/line 4: label is not 0 or 1/);
  });

  it('S3: a CSV object as the source, chunks stored in a bucket and read back verified', async () => {
    const text = `label,a\n${Array.from({ length: 100 }, (_, i) => `${i % 2},${i}`).join('\n')}\n`;
    await client.send(new PutObjectCommand({ Bucket: 'src', Key: 'sets/train.csv', Body: text }));
    const store = new S3ChunkStore(client, 's3://chunks/named/ds1');
    const { manifest, read } = await ingest(
      { source: { csv: { train: 's3://src/sets/train.csv' } }, chunkBytes: 1024 },
      {},
      store,
    );
    expect(manifest.splits.train.examples).toBe(100);
    expect(manifest.splits.train.chunks.length).toBe(1);
    expect((await read('train')).xs).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const stored = JSON.parse(Buffer.from(await store.get('manifest.json')).toString()) as DatasetManifest;
    expect(stored).toEqual(manifest);
    // A missing object and a bucket not on the allow list are named, not fetched.
    const missing = await fail(ingest({ source: { csv: { train: 's3://src/sets/none.csv' } } }));
    expect(missing.message).toMatch(/^s3:\/\/src\/sets\/none\.csv: cannot read \(NoSuchKey/);
    const refused = await fail(ingest({ source: { csv: { train: 's3://elsewhere/x.csv' } } }));
    expect(refused.message).toMatch(/not on the coordinator's --dataset-s3-allow list/);
    await store.remove();
    await expect(store.get('manifest.json')).rejects.toThrow();
  });

  it('an image folder in S3', async () => {
    for (const [cls, v] of [
      ['a', 0],
      ['b', 255],
    ] as const)
      for (let i = 0; i < 2; i++)
        await client.send(
          new PutObjectCommand({
            Bucket: 'src',
            Key: `imgs/${cls}/${i}.png`,
            Body: await sharp({ create: { width: 3, height: 3, channels: 3, background: { r: v, g: v, b: v } } })
              .png()
              .toBuffer(),
          }),
        );
    const { manifest, read } = await ingest({
      source: { images: { dir: 's3://src/imgs', size: [3, 3], channels: 1 } },
    });
    expect(manifest.labels.classes).toEqual(['a', 'b']);
    const { xs, ys } = await read('train');
    expect(ys).toEqual(Array.from(epochPermutation(4, 0x1a6e, 0), (k) => [0, 0, 1, 1][k]));
    const a = ys.indexOf(0) * 9;
    const b = ys.indexOf(1) * 9;
    expect(xs.slice(a, a + 9)).toEqual(new Array(9).fill(0));
    expect(xs.slice(b, b + 9)).toEqual(new Array(9).fill(255));
  });
});

describe('named datasets (ingestion on a worker thread)', () => {
  it(
    'ingests off the event loop, lists READY, links chunks for a job, and removes; a failure leaves nothing',
    { timeout: 120_000 },
    async () => {
      const dataDir = join(dir, 'catalog');
      const opts = { dataDir, roots: [root], maxBytes: 1 << 30 };
      const catalog = new DatasetCatalog(dataDir, opts, new DatasetSources(opts), {}, silent);
      await catalog.load();
      const started = catalog.start('train-set', {
        source: { csv: { train: join(root, 'train.csv') } },
        chunkBytes: 1024,
      });
      expect(started.state).toBe('INGESTING');
      expect(() => catalog.start('train-set', {})).toThrow(/exists/);
      const ready = await catalog.settled('train-set');
      expect(ready.error).toBeUndefined();
      expect(ready.state).toBe('READY');
      expect(ready.train).toEqual({ examples: 300, chunks: 5 });
      const jobDir = join(dataDir, 'jobs', 'j1');
      const prepared = await catalog.prepareForJob('train-set', 'j1', jobDir, 'class');
      expect(prepared.format).toBe('chunked');
      expect(prepared.train.path).toBe('/v1/jobs/j1/data/manifest');
      await expect(catalog.prepareForJob('train-set', 'j2', jobDir, 'regression')).rejects.toThrow(/labels 'class'/);
      await catalog.remove('train-set');
      expect(catalog.list()).toEqual([]);
      // The job's links still hold the data.
      expect((await readFile(join(jobDir, 'data', 'chunked', chunkName('train', 4)))).byteLength).toBeGreaterThan(16);
      // A restarted coordinator finds what was READY.
      catalog.start('again', { source: { csv: { train: join(root, 'train.csv') } } });
      await catalog.settled('again');
      const reloaded = new DatasetCatalog(dataDir, opts, new DatasetSources(opts), {}, silent);
      await reloaded.load();
      expect(reloaded.get('again').state).toBe('READY');

      catalog.start('broken', { source: { csv: { train: join(root, 'bad.csv') } } });
      const failed = await catalog.settled('broken');
      expect(failed.state).toBe('FAILED');
      expect(failed.error).toEqual({
        code: 'INVALID_DATA',
        message: `source.csv.train: ${join(root, 'bad.csv')}: line 3: column 2: not a number`,
      });
      expect(() => catalog.start('Bad Name', {})).toThrow(/dataset name/);
    },
  );
});
