import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileStateSource, StateFileSink } from './state-files.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('state files', () => {
  it('cuts a streamed state into its files, hashes each, and reads it back across the boundary', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gradfleet-state-')), 'ckpt');
    const state = Uint8Array.from({ length: 100 }, (_, i) => i);
    const sink = new StateFileSink(dir, [
      { name: 'weights.bin', bytes: 36 },
      { name: 'optimizer.bin', bytes: 64 },
    ]);
    for (let at = 0; at < 100; at += 16) await sink.write(at, state.subarray(at, at + 16));
    const files = await sink.finish();
    expect(files.parts.map((p) => p.sha256)).toEqual([sha(state.subarray(0, 36)), sha(state.subarray(36))]);
    expect(readFileSync(join(dir, 'weights.bin'))).toEqual(Buffer.from(state.subarray(0, 36)));
    const source = new FileStateSource(files.parts.map((p) => ({ path: join(dir, p.name), bytes: p.bytes })));
    expect(await source.read(32, 16)).toEqual(state.subarray(32, 48));
    await source.close();
  });

  it('refuses writes out of order or past the end, and removes everything on abort', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gradfleet-state-')), 'cut');
    const sink = new StateFileSink(dir, [{ name: 'state.bin', bytes: 32 }]);
    await sink.write(0, new Uint8Array(16));
    await expect(sink.write(0, new Uint8Array(16))).rejects.toThrow(/16 bytes written/);
    await expect(sink.write(16, new Uint8Array(20))).rejects.toThrow(/past/);
    await expect(sink.finish()).rejects.toThrow(/incomplete/);
    expect(existsSync(dir)).toBe(true);
    await sink.abort(); // a worker lost mid-transfer
    expect(existsSync(dir)).toBe(false);
  });
});
