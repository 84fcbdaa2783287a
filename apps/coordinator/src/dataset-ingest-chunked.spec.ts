import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IngestRequestSchema,
  chunkName,
  createLogger,
  verifyChunk,
  type DatasetManifest,
  type IngestRequestInput,
  type SplitName,
} from '@gradfleet/core';
import { FsChunkStore, S3ChunkStore, type ChunkStore } from './chunk-store.js';
import { DatasetCatalog } from './dataset-catalog.js';
import { ingestDataset } from './dataset-ingest-pipeline.js';
import { DatasetSources, type DatasetSourcesOptions } from './dataset-sources.js';
import { startS3Server, type S3TestServer } from './s3-test-server.fixture.js';

let dir: string;
let root: string;
let s3: S3TestServer;
let client: S3Client;
const silent = createLogger('test').child({ level: 'silent' });
const sources = (more: Partial<DatasetSourcesOptions> = {}) =>
  new DatasetSources({
    dataDir: dir,
    roots: [root],
    s3Allow: ['chunks'],
    maxBytes: 1 << 30,
    s3: () => client,
    ...more,
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gradfleet-chunked-src-'));
  root = join(dir, 'root');
  await mkdir(root);
  s3 = await startS3Server(['chunks', 'other']);
  client = s3.client();
  // 250 training rows of 3 features (class labels 0..4), 7 test rows.
  const row = (i: number) => `${i % 5},${i},${i * 3 + 1},${255 - (i % 256)}`;
  await writeFile(
    join(root, 'train.csv'),
    `label,a,b,c\n${Array.from({ length: 250 }, (_, i) => row(i)).join('\n')}\n`,
  );
  await writeFile(
    join(root, 'test.csv'),
    `label,a,b,c\n${Array.from({ length: 7 }, (_, i) => row(i + 1000)).join('\n')}\n`,
  );
});
afterAll(async () => {
  client?.destroy();
  await s3?.close();
  await rm(dir, { recursive: true, force: true });
});

async function ingest(input: IngestRequestInput, out: ChunkStore, from = sources()) {
  const progress: { bytesRead: number; bytesTotal: number }[] = [];
  const manifest = await ingestDataset(IngestRequestSchema.parse(input), from, out, {
    onProgress: (p) => progress.push(p),
  });
  return { manifest, progress };
}

/** Every example of a split, chunk after chunk, through the verifying reader: labels and feature values. */
async function examples(store: ChunkStore, m: DatasetManifest, split: SplitName) {
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < (m.splits[split]?.chunks.length ?? 0); i++) {
    const c = verifyChunk(await store.get(chunkName(split, i)), m, split, i);
    xs.push(...c.x);
    ys.push(...c.y);
  }
  return { xs, ys };
}

async function expectSameExamples(a: ChunkStore, am: DatasetManifest, b: ChunkStore, bm: DatasetManifest) {
  for (const split of ['train', 'test'] as const)
    expect(await examples(b, bm, split)).toEqual(await examples(a, am, split));
  expect(bm.featureShape).toEqual(am.featureShape);
  expect([bm.dtype, bm.scale, bm.labels]).toEqual([am.dtype, am.scale, am.labels]);
  expect(bm.splits.test?.examples).toBe(am.splits.test?.examples);
}

const rejection = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string; path?: string };
  }
  throw new Error('did not fail');
};

describe('ingestion from an existing chunked dataset', () => {
  const srcDir = () => join(root, 'src-set');
  let src: DatasetManifest;

  beforeAll(async () => {
    ({ manifest: src } = await ingest(
      {
        source: { csv: { train: join(root, 'train.csv'), test: join(root, 'test.csv') } },
        chunkBytes: 1024,
      },
      new FsChunkStore(srcDir()),
    ));
    expect(src.splits.train.chunks.length).toBe(4); // 64 examples of 16 bytes per 1 KiB chunk
  });

  it('re-chunks a directory, copies it into S3 and back: the same examples in the same order, test split too', async () => {
    const local = new FsChunkStore(join(dir, 'rechunked'));
    const { manifest: re, progress } = await ingest(
      { source: { chunked: { dir: srcDir() } }, chunkBytes: 4096 },
      local,
    );
    expect(re.chunkExamples).toBe(256);
    expect(re.splits.train.chunks.length).toBe(1);
    const srcBytes = [...src.splits.train.chunks, ...src.splits.test!.chunks].reduce((a, c) => a + c.bytes, 0);
    expect(progress.at(-1)).toMatchObject({ bytesRead: srcBytes, bytesTotal: srcBytes });
    await expectSameExamples(new FsChunkStore(srcDir()), src, local, re);

    const inS3 = new S3ChunkStore(client, 's3://chunks/copies/one/');
    const { manifest: s3m } = await ingest({ source: { chunked: { dir: srcDir() } }, chunkBytes: 1024 }, inS3);
    expect(s3m).toEqual(src); // same chunk size: byte-identical chunks
    const back = new FsChunkStore(join(dir, 'back'));
    const { manifest: backM } = await ingest(
      { source: { chunked: { dir: 's3://chunks/copies/one' } }, chunkBytes: 2048 },
      back,
    );
    expect(backM.chunkExamples).toBe(128);
    await expectSameExamples(new FsChunkStore(srcDir()), src, back, backM);
  });

  it('streams: each source chunk is fetched only after the examples before it went out in target chunks', async () => {
    const from = sources();
    const events: string[] = [];
    const open = from.openChunked.bind(from);
    from.openChunked = async (spec, field) => {
      const opened = await open(spec, field);
      return {
        ...opened,
        chunk: (split, i) => {
          events.push(`get ${chunkName(split, i)}`);
          return opened.chunk(split, i);
        },
      };
    };
    const out = new FsChunkStore(join(dir, 'streamed'));
    const store = out.put.bind(out);
    out.put = (name, bytes) => {
      events.push(`put ${name}`);
      return store(name, bytes);
    };
    // Source chunks of 64 examples (58 in the last), target chunks of 128.
    await ingest({ source: { chunked: { dir: srcDir() } }, chunkBytes: 2048 }, out, from);
    const get = (split: SplitName, i: number) => `get ${chunkName(split, i)}`;
    const put = (split: SplitName, i: number) => `put ${chunkName(split, i)}`;
    expect(events).toEqual([
      get('train', 0),
      get('train', 1),
      put('train', 0),
      get('train', 2),
      get('train', 3),
      put('train', 1),
      get('test', 0),
      put('test', 0),
      'put manifest.json',
    ]);
  });

  it('a named dataset handed over by the catalog; an unknown name is refused', async () => {
    const from = sources({ datasets: { set: { dir: srcDir(), store: srcDir() } } });
    const out = new FsChunkStore(join(dir, 'named'));
    const { manifest } = await ingest({ source: { chunked: { dataset: 'set' } }, chunkBytes: 3000 }, out, from);
    await expectSameExamples(new FsChunkStore(srcDir()), src, out, manifest);
    const unknown = await rejection(
      ingest({ source: { chunked: { dataset: 'other' } } }, new FsChunkStore(join(dir, 'x')), from),
    );
    expect([unknown.message, unknown.path]).toEqual(['other: no such READY dataset', 'source.chunked.dataset']);
  });

  it('a corrupt or truncated source chunk fails naming its split and index; nothing of it is written', async () => {
    const bad = join(root, 'bad-set');
    await ingest({ source: { chunked: { dir: srcDir() } }, chunkBytes: 1024 }, new FsChunkStore(bad));
    const chunk2 = join(bad, chunkName('train', 2));
    const bytes = await readFile(chunk2);
    bytes[bytes.byteLength - 1]! ^= 1; // one feature bit of the last example
    await writeFile(chunk2, bytes);
    const out = new FsChunkStore(join(dir, 'from-bad'));
    const err = await rejection(ingest({ source: { chunked: { dir: bad } }, chunkBytes: 1024 }, out));
    expect([err.code, err.path]).toEqual(['CHUNK_HASH_MISMATCH', 'source.chunked.dir']);
    expect(err.message).toBe(
      `${bad}: train chunk 2 (train-000002.chunk): SHA-256 does not match the manifest (corrupted)`,
    );
    // Chunks 0 and 1 were copied; chunk 2's examples never were (the target holds no third chunk).
    await expect(out.get(chunkName('train', 2))).rejects.toThrow();
    await expect(out.get('manifest.json')).rejects.toThrow();

    await writeFile(chunk2, bytes.subarray(0, 100));
    const cut = await rejection(ingest({ source: { chunked: { dir: bad } } }, new FsChunkStore(join(dir, 'cut'))));
    expect(cut.code).toBe('CHUNK_SIZE_MISMATCH');
    expect(cut.message).toMatch(/train chunk 2 \(train-000002\.chunk\): 100 bytes, the manifest records \d+/);
  });

  it('the access rules of the other sources: roots, S3 allow list, labels; a missing manifest is named', async () => {
    const out = () => new FsChunkStore(join(dir, 'refused'));
    const outside = await rejection(ingest({ source: { chunked: { dir: dir } } }, out()));
    expect(outside.message).toMatch(/outside the coordinator --dataset-root/);
    const bucket = await rejection(ingest({ source: { chunked: { dir: 's3://other/x' } } }, out()));
    expect(bucket.message).toMatch(/not on the coordinator's --dataset-s3-allow list/);
    const none = await rejection(ingest({ source: { chunked: { dir: 's3://chunks/nothing' } } }, out()));
    expect(none.message).toMatch(/^s3:\/\/chunks\/nothing\/: manifest\.json: cannot read \(NoSuchKey/);
    const labels = await rejection(ingest({ source: { chunked: { dir: srcDir() } }, labels: 'regression' }, out()));
    expect([labels.path, labels.message]).toEqual([
      'labels',
      `${srcDir()}: its labels are 'class'; the request says labels 'regression' (give labels: 'class')`,
    ]);
  });

  it('the catalog: a READY source only, labels checked up front, and the source kept while it is copied', async () => {
    const dataDir = join(dir, 'catalog');
    const opts = { dataDir, roots: [root], maxBytes: 1 << 30, s3Allow: ['chunks'] };
    const catalog = new DatasetCatalog(dataDir, opts, new DatasetSources({ ...opts, s3: () => client }), {}, silent);
    await catalog.load();
    expect(() => catalog.start('copy', { source: { chunked: { dataset: 'nope' } } })).toThrow(
      /source\.chunked\.dataset: no dataset named nope/,
    );
    catalog.start('orig', { source: { csv: { train: join(root, 'train.csv') } }, chunkBytes: 1024 });
    expect(() => catalog.start('copy', { source: { chunked: { dataset: 'orig' } } })).toThrow(
      /dataset orig is INGESTING, not READY/,
    );
    expect((await catalog.settled('orig')).state).toBe('READY');
    expect(() => catalog.start('copy', { source: { chunked: { dataset: 'orig' } }, labels: 'binary' })).toThrow(
      /labels: dataset orig has labels 'class'/,
    );
    // The new dataset's S3 prefix may not overlap its source's: a failure would remove the source.
    expect(() =>
      catalog.start('copy', { source: { chunked: { dir: 's3://chunks/sets/copy' } }, store: 's3://chunks/sets' }),
    ).toThrow(/source\.chunked\.dir: the source s3:\/\/chunks\/sets\/copy\/ and the new dataset's chunks/);
    catalog.start('copy', { source: { chunked: { dataset: 'orig' } }, chunkBytes: 2048 });
    await expect(catalog.remove('orig')).rejects.toThrow(/being copied into copy/);
    const copy = await catalog.settled('copy');
    expect([copy.state, copy.error]).toEqual(['READY', undefined]);
    expect(copy.train).toEqual({ examples: 250, chunks: 2 });
    await catalog.remove('orig'); // no longer read
  });
});
