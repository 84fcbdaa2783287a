import type { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { DatasetChunkError } from '@gradfleet/core';
import { S3ChunkReader } from './s3-chunks.js';
import { tinyChunkedDataset } from './tiny-dataset.fixture.js';

/** Two chunks of 4 examples of 3 uint8 values, as an ingestion writes them. */
const dataset = () => tinyChunkedDataset(8);

/** An S3 client answering one GetObject: the length it announces and the parts of its body. */
function bucket(contentLength: number | undefined, parts: Uint8Array[] | Error, keys: string[] = []) {
  const body = {
    read: 0,
    destroyed: false,
    destroy() {
      this.destroyed = true;
    },
    async *[Symbol.asyncIterator]() {
      for (const p of parts as Uint8Array[]) {
        body.read += p.byteLength;
        yield p;
      }
    },
  };
  const client = {
    send: async (cmd: { input: { Bucket: string; Key: string } }) => {
      keys.push(`${cmd.input.Bucket}/${cmd.input.Key}`);
      if (parts instanceof Error) throw parts;
      return { ContentLength: contentLength, Body: body };
    },
  } as unknown as S3Client;
  return { client, body };
}

const at = { bucket: 'chunks', prefix: 'sets/d/' };
const URL1 = /chunk train\/1 \(s3:\/\/chunks\/sets\/d\/train-000001\.chunk\)/;

describe('S3ChunkReader', () => {
  it('reads a chunk by its derived key and verifies it', async () => {
    const { manifest, stored } = await dataset();
    const bytes = stored.get('train-000001.chunk')!;
    const keys: string[] = [];
    const { client } = bucket(bytes.byteLength, [bytes.subarray(0, 10), bytes.subarray(10)], keys);
    const chunk = await new S3ChunkReader(client, at).read(manifest, 'train', 1);
    expect(Array.from(chunk.x.subarray(0, 3))).toEqual([4, 5, 6]);
    expect(keys).toEqual(['chunks/sets/d/train-000001.chunk']);
  });

  it('refuses an object of another length before reading its body', async () => {
    const { manifest, stored } = await dataset();
    const bytes = stored.get('train-000001.chunk')!;
    const longer = new Uint8Array(bytes.byteLength + (1 << 20));
    const { client, body } = bucket(longer.byteLength, [longer]);
    const err = await new S3ChunkReader(client, at).read(manifest, 'train', 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetChunkError);
    expect((err as DatasetChunkError).code).toBe('CHUNK_SIZE_MISMATCH');
    expect((err as Error).message).toMatch(URL1);
    expect((err as Error).message).toContain(
      `${longer.byteLength} bytes (not read), the manifest records ${bytes.byteLength}`,
    );
    expect(body.read).toBe(0);
    expect(body.destroyed).toBe(true);
  });

  it('refuses a body longer than its announced length at the first byte past the manifest', async () => {
    const { manifest, stored } = await dataset();
    const bytes = stored.get('train-000001.chunk')!;
    const { client, body } = bucket(bytes.byteLength, [bytes, new Uint8Array(1 << 20)]);
    await expect(new S3ChunkReader(client, at).read(manifest, 'train', 1)).rejects.toThrow(/more bytes than announced/);
    expect(body.destroyed).toBe(true);
  });

  it('a corrupted chunk and a missing object are errors naming the chunk and its URL', async () => {
    const { manifest, stored } = await dataset();
    const bad = stored.get('train-000001.chunk')!.slice();
    bad[40] = bad[40]! ^ 0xff;
    await expect(
      new S3ChunkReader(bucket(bad.byteLength, [bad]).client, at).read(manifest, 'train', 1),
    ).rejects.toThrow(new RegExp(`${URL1.source}: SHA-256 does not match`));
    const missing = Object.assign(new Error('The specified key does not exist. secret-ish detail'), {
      name: 'NoSuchKey',
      $metadata: { httpStatusCode: 404 },
    });
    const err = (await new S3ChunkReader(bucket(0, missing).client, at)
      .read(manifest, 'train', 1)
      .catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(new RegExp(`${URL1.source}: cannot read \\(NoSuchKey 404\\)$`));
  });
});
