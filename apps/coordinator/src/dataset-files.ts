import { readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from '@gradfleet/core';
import { JobRequestError } from './job-manager.js';

/** How often stored uploads and downloads are pruned besides before each upload, in ms. */
const PRUNE_EVERY_MS = 60 * 60 * 1000;

export interface DatasetFilesOptions {
  /** The coordinator's data dir: `uploads/` and `downloads/` under it are kept in check. */
  dataDir: string;
  /** Bytes uploads and URL downloads may take together. @defaultValue 16 GiB (`COORDINATOR_DEFAULTS.maxDatasetStoreBytes`) */
  maxBytes: number;
  /** Age after which an upload or a download is removed, in ms. @defaultValue 24 h */
  ttlMs: number;
  log: Logger;
}

interface StoredFile {
  path: string;
  bytes: number;
  mtimeMs: number;
}

/**
 * Keeps `<data-dir>/uploads` (`POST /v1/datasets`) and `<data-dir>/downloads` (the URL
 * cache) from growing without end: files older than the time to live are removed, and when
 * both together exceed their quota the oldest go first. A job copies its data into its own
 * directory when it is submitted, so removing an upload never touches a submitted job; a
 * later spec naming it gets `no such upload`, a URL is fetched again. An upload that would
 * not fit even after pruning is refused with 507 `STORAGE_FULL`.
 */
export class DatasetFiles {
  private timer: NodeJS.Timeout | undefined;
  private pruning: Promise<number> | undefined;

  constructor(private readonly options: DatasetFilesOptions) {}

  /** Prunes now and then every hour (the timer never keeps the coordinator alive). */
  start(): void {
    void this.prune();
    this.timer = setInterval(() => void this.prune(), PRUNE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Prunes, then refuses an upload of `bytes` that would not fit in the quota. */
  async reserve(bytes: number): Promise<void> {
    const used = await this.prune();
    const { maxBytes } = this.options;
    if (used + bytes > maxBytes) {
      this.options.log.warn(
        { used, bytes, maxBytes },
        'upload refused: dataset store full (--max-dataset-store-bytes)',
      );
      throw new JobRequestError(
        507,
        'STORAGE_FULL',
        `uploads and downloads take ${used} bytes; ${bytes} more exceed the coordinator's ${maxBytes} (--max-dataset-store-bytes); retry once older uploads expire`,
      );
    }
  }

  /** Removes expired files, then the oldest while over the quota; resolves with the bytes left. */
  prune(): Promise<number> {
    this.pruning ??= this.pruneOnce().finally(() => (this.pruning = undefined));
    return this.pruning;
  }

  private async pruneOnce(): Promise<number> {
    const { ttlMs, maxBytes, log } = this.options;
    const files = (await Promise.all(['uploads', 'downloads'].map((d) => this.list(join(this.options.dataDir, d)))))
      .flat()
      .sort((a, b) => a.mtimeMs - b.mtimeMs);
    let used = files.reduce((n, f) => n + f.bytes, 0);
    const now = Date.now();
    let removed = 0;
    for (const f of files) {
      const expired = now - f.mtimeMs >= ttlMs;
      if (!expired && used <= maxBytes) break; // oldest first: the rest are younger
      if (!expired && basename(f.path).startsWith('.')) continue; // an upload or download being written
      await rm(f.path, { force: true });
      used -= f.bytes;
      removed++;
    }
    if (removed > 0) log.info({ removed, bytesLeft: used }, 'pruned stored uploads and downloads');
    return used;
  }

  private async list(dir: string): Promise<StoredFile[]> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const files = await Promise.all(
      names.map(async (name) => {
        const path = join(dir, name);
        const info = await stat(path).catch(() => undefined);
        return info?.isFile() ? { path, bytes: info.size, mtimeMs: info.mtimeMs } : undefined;
      }),
    );
    return files.filter((f): f is StoredFile => f !== undefined);
  }
}
