import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { MAX_CHUNK_BYTES, type ChunkSink } from '@gradfleet/core';
import { deletePrefix, getObjectStream, parseS3Url, putObject } from './s3-access.js';

/**
 * Where a named dataset's chunks and manifest live: a directory of the coordinator, or an
 * S3 prefix. Names come from `chunkName` / `manifest.json` only, never from a request.
 */
export interface ChunkStore extends ChunkSink {
  /** How errors and `GET /v1/datasets` name the store (no credentials). */
  readonly where: string;
  /** The bytes of one stored object, at most `maxBytes` (refused past it while reading). */
  get(name: string, maxBytes?: number): Promise<Uint8Array>;
  /** Removes everything the store holds. */
  remove(): Promise<void>;
}

/** Chunks as files in a directory; each written to a temporary name, then renamed. */
export class FsChunkStore implements ChunkStore {
  constructor(readonly dir: string) {}

  get where(): string {
    return this.dir;
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.${name}.tmp`);
    await writeFile(tmp, bytes);
    await rename(tmp, join(this.dir, name));
  }

  async get(name: string, maxBytes = MAX_CHUNK_BYTES): Promise<Uint8Array> {
    const file = await open(join(this.dir, name));
    try {
      const { size } = await file.stat();
      if (size > maxBytes) throw new RangeError(`${name}: ${size} bytes exceeds ${maxBytes}`);
      return await readFile(file);
    } finally {
      await file.close();
    }
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Chunks as objects under `s3://bucket/prefix/`. */
export class S3ChunkStore implements ChunkStore {
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(
    private readonly client: S3Client,
    url: string,
  ) {
    const { bucket, key } = parseS3Url(url, 'store');
    this.bucket = bucket;
    this.prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
  }

  get where(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  put(name: string, bytes: Uint8Array): Promise<void> {
    return putObject(this.client, this.bucket, this.prefix + name, bytes);
  }

  async get(name: string, maxBytes = MAX_CHUNK_BYTES): Promise<Uint8Array> {
    const { stream, bytes } = await getObjectStream(this.client, this.bucket, this.prefix + name);
    if (bytes > maxBytes) throw new RangeError(`${name}: ${bytes} bytes exceeds ${maxBytes}`);
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const part of stream) {
      total += part.byteLength;
      if (total > maxBytes) throw new RangeError(`${name}: more than ${maxBytes} bytes`);
      parts.push(part);
    }
    return Buffer.concat(parts, total);
  }

  remove(): Promise<void> {
    return deletePrefix(this.client, this.bucket, this.prefix);
  }
}
