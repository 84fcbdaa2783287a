import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { StateSink, StateSource } from '@gradfleet/core';

/** One file of a state on disk: its name in the directory and its size in bytes. */
export interface StatePart {
  name: string;
  bytes: number;
}

/** A state written to disk by a `StateFileSink`: the directory, and each file with its size and SHA-256. */
export interface StateFiles {
  dir: string;
  parts: (StatePart & { sha256: string })[];
}

/**
 * Receives a whole-model state straight into files, chunk by chunk, as it arrives: the
 * bytes are cut into `parts` (weights.bin, then optimizer.bin) and hashed on the way, so
 * the coordinator never holds more of a replica's state than the chunks in flight.
 * Writes must come in order. `finish` fsyncs; `abort` removes the directory.
 */
export class StateFileSink implements StateSink {
  private opened: Promise<FileHandle[]> | undefined;
  private readonly hashes: Hash[];
  private written = 0;
  private closed = false;

  constructor(
    readonly dir: string,
    readonly parts: readonly StatePart[],
  ) {
    this.hashes = parts.map(() => createHash('sha256'));
  }

  get bytes(): number {
    return this.parts.reduce((n, p) => n + p.bytes, 0);
  }

  private files(): Promise<FileHandle[]> {
    this.opened ??= (async () => {
      await mkdir(this.dir, { recursive: true });
      const handles: FileHandle[] = [];
      for (const p of this.parts) handles.push(await open(join(this.dir, p.name), 'w'));
      return handles;
    })();
    return this.opened;
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`state files in ${this.dir} are closed`);
    if (offset !== this.written) throw new Error(`state write at ${offset}, ${this.written} bytes written so far`);
    if (offset + bytes.byteLength > this.bytes) throw new RangeError(`state write past ${this.bytes} bytes`);
    const files = await this.files();
    let at = 0;
    let rest = bytes;
    for (const [i, p] of this.parts.entries()) {
      const end = at + p.bytes;
      if (this.written < end && rest.byteLength > 0) {
        const take = Math.min(rest.byteLength, end - this.written);
        const piece = rest.subarray(0, take);
        this.hashes[i]!.update(piece);
        let done = 0;
        while (done < take) done += (await files[i]!.write(piece, done, take - done)).bytesWritten;
        this.written += take;
        rest = rest.subarray(take);
      }
      at = end;
    }
  }

  /** Flushes every file to disk and closes them; the state must be complete. */
  async finish(): Promise<StateFiles> {
    if (this.written !== this.bytes) throw new Error(`state incomplete: ${this.written} of ${this.bytes} bytes`);
    const files = await this.files();
    this.closed = true;
    for (const f of files) {
      await f.sync();
      await f.close();
    }
    return { dir: this.dir, parts: this.parts.map((p, i) => ({ ...p, sha256: this.hashes[i]!.digest('hex') })) };
  }

  /** Gives the state up: closes the files and removes the directory. */
  async abort(): Promise<void> {
    if (!this.closed && this.opened) {
      this.closed = true;
      for (const f of await this.opened.catch(() => [])) await f.close().catch(() => undefined);
    }
    this.closed = true;
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A state on disk (one or more files, concatenated) read chunk by chunk for sending. */
export class FileStateSource implements StateSource {
  readonly bytes: number;
  private handles: FileHandle[] | undefined;

  constructor(private readonly files: readonly { path: string; bytes: number }[]) {
    this.bytes = files.reduce((n, f) => n + f.bytes, 0);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.handles ??= await Promise.all(this.files.map((f) => open(f.path, 'r')));
    const out = new Uint8Array(length);
    let filled = 0;
    let at = 0;
    for (const [i, f] of this.files.entries()) {
      const end = at + f.bytes;
      const pos = offset + filled;
      if (pos < end && filled < length) {
        const take = Math.min(length - filled, end - pos);
        let done = 0;
        while (done < take) {
          const { bytesRead } = await this.handles[i]!.read(out, filled + done, take - done, pos - at + done);
          if (bytesRead === 0) throw new Error(`${f.path} is shorter than ${f.bytes} bytes`);
          done += bytesRead;
        }
        filled += take;
      }
      at = end;
    }
    if (filled !== length) throw new RangeError(`read of ${length} bytes at ${offset} past the end (${this.bytes})`);
    return out;
  }

  async close(): Promise<void> {
    for (const h of this.handles ?? []) await h.close().catch(() => undefined);
    this.handles = undefined;
  }
}
