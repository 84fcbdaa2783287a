import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { InvalidDataError, s3Reason } from '@gradfleet/core';
import { openChunkedSource, type ChunkedSource, type NamedDatasetLocation } from './chunked-source.js';
import { openDatasetPath, resolveDatasetDir } from './dataset-path.js';
import { downloadDataset, urlName } from './dataset-url.js';
import { getObjectStream, listObjects, parseS3Url } from './s3-access.js';

/** Most files an image-folder source may hold (all classes together). */
export const MAX_IMAGE_FILES = 10_000_000;
/** Largest single image file, in bytes. */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024;

/** The policy of streaming dataset sources (the same rules as `dataset-ingest.ts`, docs/security.md). */
export interface DatasetSourcesOptions {
  dataDir: string;
  /** `--dataset-root`: directories paths may name. @defaultValue none: paths are refused */
  roots?: readonly string[] | undefined;
  /** `--dataset-url-allow`: hosts URLs may name. @defaultValue none */
  urlAllow?: readonly string[] | undefined;
  /** `--dataset-s3-allow`: buckets `s3://` sources and stores may name. @defaultValue none: S3 is refused */
  s3Allow?: readonly string[] | undefined;
  /** Largest downloaded URL file, in bytes. */
  maxBytes: number;
  /**
   * The named datasets a `source.chunked.dataset` may name: the one the catalog checked READY
   * for this ingestion. @defaultValue none
   */
  datasets?: Readonly<Record<string, NamedDatasetLocation>> | undefined;
  /** Made on first use of an `s3://` source. */
  s3?: () => S3Client;
}

/** One readable source: its bytes as a stream and its size when known (0 if not). */
export interface OpenedSource {
  stream: AsyncIterable<Uint8Array>;
  bytes: number;
  /** How errors name it (URLs without query or credentials). */
  display: string;
}

/** One image of an image folder: its class index and where to read it. */
export interface ImageEntry {
  label: number;
  source: string;
  bytes: number;
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;

/**
 * Opens dataset sources for streaming ingestion: `upload:<id>`, a path under
 * `--dataset-root`, an http(s) URL on `--dataset-url-allow` (downloaded once, then read
 * from disk), `s3://bucket/key` for a bucket on `--dataset-s3-allow`. Errors name the
 * source (never its content) and the request field that named it.
 */
export class DatasetSources {
  private client: S3Client | undefined;

  constructor(private readonly options: DatasetSourcesOptions) {}

  private s3(url: string, field: string): { client: S3Client; bucket: string; key: string } {
    const { bucket, key } = parseS3Url(url, field);
    if (!(this.options.s3Allow ?? []).includes(bucket))
      throw new InvalidDataError(
        `s3://${bucket}: the bucket is not on the coordinator's --dataset-s3-allow list`,
        field,
      );
    if (!this.options.s3) throw new InvalidDataError('this coordinator has no S3 access', field);
    this.client ??= this.options.s3();
    return { client: this.client, bucket, key };
  }

  /** Checks that an `s3://` store names an allowed bucket; returns the client. */
  s3Store(url: string): S3Client {
    return this.s3(url, 'store').client;
  }

  /** An existing chunked dataset (`source.chunked`), under the same rules as the other sources. */
  openChunked(spec: { dataset: string } | { dir: string }, field: string): Promise<ChunkedSource> {
    return openChunkedSource(
      spec,
      {
        roots: this.options.roots ?? [],
        datasets: this.options.datasets ?? {},
        s3: (url, f) => this.s3(url, f).client,
      },
      field,
    );
  }

  async open(source: string, field: string): Promise<OpenedSource> {
    if (source.startsWith('s3://')) {
      const { client, bucket, key } = this.s3(source, field);
      try {
        const o = await getObjectStream(client, bucket, key);
        return { ...o, display: `s3://${bucket}/${key}` };
      } catch (err) {
        throw new InvalidDataError(`s3://${bucket}/${key}: cannot read (${s3Reason(err)})`, field);
      }
    }
    if (source.startsWith('upload:')) {
      const id = source.slice('upload:'.length);
      if (!/^[A-Za-z0-9._-]+$/.test(id) || id.startsWith('.'))
        throw new InvalidDataError(`${source}: not an upload id`, field);
      // One open, then checks on what was opened: no window for the path to change meanwhile.
      const file = await open(
        join(this.options.dataDir, 'uploads', id),
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      ).catch(() => undefined);
      const info = await file?.stat();
      if (!file || !info?.isFile()) {
        await file?.close();
        throw new InvalidDataError(`${source}: no such upload`, field);
      }
      return { stream: file.createReadStream(), bytes: info.size, display: source };
    }
    if (/^https?:\/\//i.test(source)) {
      const dir = join(this.options.dataDir, 'downloads');
      const path = join(dir, createHash('sha256').update(source).digest('hex'));
      if (!(await stat(path).catch(() => undefined))) {
        await mkdir(dir, { recursive: true });
        await downloadDataset(
          source,
          path,
          { allow: this.options.urlAllow ?? [], maxBytes: this.options.maxBytes },
          field,
        );
      }
      const info = await stat(path);
      return { stream: createReadStream(path), bytes: info.size, display: urlName(source) };
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(source) && !/^[a-z]:[\\/]/i.test(source))
      throw new InvalidDataError(
        `${source.slice(0, 100)}: only paths, http(s) URLs, s3:// URLs and upload:<id> are dataset sources`,
        field,
      );
    const { file, bytes } = await openDatasetPath(source, this.options.roots ?? [], field);
    return { stream: file.createReadStream({ highWaterMark: 1024 * 1024 }), bytes, display: source };
  }

  /**
   * The images of a folder with one sub-folder per class (a directory under `--dataset-root`
   * or an `s3://bucket/prefix`): classes are the sub-folder names in sorted order, images the
   * .png/.jpg/.jpeg files in each, sorted; anything else is ignored. `classes` fixes the
   * class order (a test folder uses the training folder's).
   */
  async listImages(
    dir: string,
    field: string,
    classes?: readonly string[],
  ): Promise<{ classes: string[]; images: ImageEntry[] }> {
    const byClass = new Map<string, { source: string; bytes: number }[]>();
    if (dir.startsWith('s3://')) {
      const { client, bucket, key } = this.s3(dir, field);
      const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
      let objects: { key: string; size: number }[];
      try {
        objects = await listObjects(client, bucket, prefix, MAX_IMAGE_FILES);
      } catch (err) {
        if (err instanceof InvalidDataError) throw err;
        throw new InvalidDataError(`s3://${bucket}/${prefix}: cannot list (${s3Reason(err)})`, field);
      }
      for (const o of objects) {
        const rest = o.key.slice(prefix.length).split('/');
        if (rest.length !== 2 || !IMAGE_EXT.test(rest[1]!)) continue;
        const list = byClass.get(rest[0]!) ?? [];
        list.push({ source: `s3://${bucket}/${o.key}`, bytes: o.size });
        byClass.set(rest[0]!, list);
      }
    } else {
      const real = await resolveDatasetDir(dir, this.options.roots ?? [], field);
      let total = 0;
      for (const entry of await readdir(real, { withFileTypes: true })) {
        if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
        const files = (await readdir(join(real, entry.name), { withFileTypes: true })).filter(
          (f) => f.isFile() && IMAGE_EXT.test(f.name),
        );
        total += files.length;
        if (total > MAX_IMAGE_FILES) throw new InvalidDataError(`${dir}: more than ${MAX_IMAGE_FILES} images`, field);
        byClass.set(
          entry.name,
          files.map((f) => ({ source: join(dir, entry.name, f.name), bytes: 0 })),
        );
      }
    }
    const names = classes ? [...classes] : [...byClass.keys()].sort();
    if (names.length === 0) throw new InvalidDataError(`${dir}: no class sub-folders with .png or .jpg images`, field);
    const images: ImageEntry[] = [];
    for (const name of byClass.keys()) {
      if (!names.includes(name))
        throw new InvalidDataError(
          `${dir}: class folder ${JSON.stringify(name.slice(0, 64))} is not a training class`,
          field,
        );
    }
    names.forEach((name, label) => {
      const files = (byClass.get(name) ?? []).sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
      for (const f of files) images.push({ label, ...f });
    });
    if (images.length === 0) throw new InvalidDataError(`${dir}: no .png or .jpg images`, field);
    return { classes: names, images };
  }

  /** The whole bytes of one (small) file: an image. */
  async readSmall(source: string, field: string, maxBytes = MAX_IMAGE_FILE_BYTES): Promise<Buffer> {
    const o = await this.open(source, field);
    if (o.bytes > maxBytes) throw new InvalidDataError(`${o.display}: ${o.bytes} bytes exceeds ${maxBytes}`, field);
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const p of o.stream) {
      total += p.byteLength;
      if (total > maxBytes) throw new InvalidDataError(`${o.display}: more than ${maxBytes} bytes`, field);
      parts.push(p);
    }
    return Buffer.concat(parts, total);
  }
}
