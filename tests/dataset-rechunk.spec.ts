import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkName, parseManifest, verifyChunk, type DatasetManifest, type SplitName } from '@gradfleet/core';
import { runCli } from './helpers/cli.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { startS3Server, type S3TestServer } from './helpers/s3-server.js';

describe('ingesting from an existing chunked dataset, across processes', () => {
  const cluster = new TestCluster();
  let mnist: SmallMnist;
  let s3: S3TestServer;
  let client: S3Client;

  beforeAll(async () => {
    mnist = await writeSmallMnist(600, 100);
    s3 = await startS3Server(['chunks']);
    client = s3.client();
    await cluster.startCoordinator(['--dataset-s3-allow', 'chunks'], 0, s3.env);
    await cluster.client.ingestDataset('mnist', { source: mnist.dataset, chunkBytes: 65536 });
    expect((await cluster.client.waitForDataset('mnist')).state).toBe('READY');
  });
  afterAll(async () => {
    await cluster.stop();
    client?.destroy();
    await s3?.close();
    rmSync(mnist.dir, { recursive: true, force: true });
  });

  const c = () => ['--coordinator', cluster.url];
  const manifestOf = (name: string) =>
    parseManifest(readFileSync(join(cluster.dataDir, 'datasets', name, 'manifest.json')), name);
  /** A chunk of a named dataset, wherever the catalog keeps it. */
  const chunkOf = async (name: string, store: string | undefined, file: string): Promise<Uint8Array> => {
    if (!store) return readFileSync(join(cluster.dataDir, 'datasets', name, file));
    const [, bucket, prefix] = /^s3:\/\/([^/]+)\/(.*)$/.exec(store)!;
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${file}` }));
    return got.Body!.transformToByteArray();
  };
  /** Every example of a split as bytes (label, then features), in stored order, each chunk verified. */
  const examples = async (name: string, split: SplitName): Promise<Buffer[]> => {
    const m: DatasetManifest = manifestOf(name);
    const { store } = await cluster.client.dataset(name);
    const out: Buffer[] = [];
    for (let i = 0; i < (m.splits[split]?.chunks.length ?? 0); i++) {
      const chunk = verifyChunk(await chunkOf(name, store, chunkName(split, i)), m, split, i);
      for (let k = 0; k < chunk.count; k++)
        out.push(
          Buffer.concat([
            Buffer.from(chunk.y.buffer, chunk.y.byteOffset + k * 4, 4),
            Buffer.from(chunk.x.buffer, chunk.x.byteOffset + k * 784, 784),
          ]),
        );
    }
    return out;
  };
  const expectSameExamples = async (a: string, b: string) => {
    for (const split of ['train', 'test'] as const) {
      const [ea, eb] = [await examples(a, split), await examples(b, split)];
      expect(ea.length).toBe(split === 'train' ? 600 : 100);
      expect(eb.length).toBe(ea.length);
      expect(
        eb.every((e, i) => e.equals(ea[i]!)),
        `${b} ${split}`,
      ).toBe(true);
    }
  };

  it('re-chunks a named dataset into S3, copies it back from the S3 prefix and by name: the same examples in the same order', async () => {
    const into = await runCli([
      'dataset',
      'ingest',
      'dataset:mnist',
      '--name',
      'rechunked',
      '--chunk-bytes',
      '20000',
      '--store',
      's3://chunks/sets',
      ...c(),
    ]);
    expect(into.code, into.out).toBe(0);
    expect(into.out).toMatch(/rechunked {2}READY {2}600 train \+ 100 test examples of 28x28 uint8/);
    expect(manifestOf('mnist').splits.train.chunks.length).toBe(8); // 83 examples of 788 bytes per 64 KiB
    expect(manifestOf('rechunked').splits.train.chunks.length).toBe(24); // 25 per 20,000 bytes
    expect((await cluster.client.dataset('rechunked')).store).toBe('s3://chunks/sets/rechunked/');
    await expectSameExamples('mnist', 'rechunked');

    // Back from the S3 prefix (its manifest.json names it), into the coordinator's own store.
    const back = await runCli([
      'dataset',
      'ingest',
      's3://chunks/sets/rechunked/manifest.json',
      '--name',
      'back',
      '--chunk-bytes',
      '65536',
      ...c(),
    ]);
    expect(back.code, back.out).toBe(0);
    expect(manifestOf('back')).toEqual(manifestOf('mnist')); // same chunk size: the same chunks and hashes
    await expectSameExamples('mnist', 'back');

    // A named dataset whose chunks are in S3, by name, into the coordinator's store.
    await cluster.client.ingestDataset('from-named-s3', {
      source: { chunked: { dataset: 'rechunked' } },
      chunkBytes: 40000,
    });
    const named = await cluster.client.waitForDataset('from-named-s3');
    expect([named.state, named.store, named.train?.chunks]).toEqual(['READY', undefined, 12]); // 50 per 40,000 bytes
    await expectSameExamples('mnist', 'from-named-s3');
  });

  it('a corrupted source chunk fails the ingestion naming it, and removes what was written', async () => {
    const file = await open(join(cluster.dataDir, 'datasets', 'mnist', chunkName('train', 5)), 'r+');
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 1000);
    byte[0] = byte[0]! ^ 0xff;
    await file.write(byte, 0, 1, 1000);
    await file.close();
    await cluster.client.ingestDataset('bad-copy', {
      source: { chunked: { dataset: 'mnist' } },
      chunkBytes: 20000,
      store: 's3://chunks/sets',
    });
    const failed = await cluster.client.waitForDataset('bad-copy');
    expect(failed.state).toBe('FAILED');
    expect(failed.error).toEqual({
      code: 'CHUNK_HASH_MISMATCH',
      message:
        'source.chunked.dataset: mnist: train chunk 5 (train-000005.chunk): SHA-256 does not match the manifest (corrupted)',
    });
    const left = await client.send(new ListObjectsV2Command({ Bucket: 'chunks', Prefix: 'sets/bad-copy/' }));
    expect(left.Contents ?? []).toEqual([]);
    expect(readdirSync(join(cluster.dataDir, 'datasets')).filter((d) => d.startsWith('.ingest-'))).toEqual([]);
  });
});
