import { mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidDataError } from '@gradfleet/core';
import { DatasetIngest } from './dataset-ingest.js';
import { readStoredFile } from './dataset-path.js';

const SECRET = 'SECRET_TOKEN_5f0c2a';

function dirs() {
  const base = mkdtempSync(join(tmpdir(), 'gradfleet-prepare-'));
  const root = join(base, 'root');
  const dataDir = join(base, 'data');
  mkdirSync(root);
  mkdirSync(join(dataDir, 'uploads'), { recursive: true });
  return { base, root, dataDir };
}

/** What a rejected promise threw. */
async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('DatasetIngest.prepare runs on a thread of its own, with a heap cap and a deadline', () => {
  it('prepares a CSV on the thread: shards written, examples counted', async () => {
    const { root, dataDir, base } = dirs();
    writeFileSync(join(root, 'd.csv'), 'label,a,b\n0,1,2\n1,3,4\n2,5,6\n');
    const ingest = new DatasetIngest(dataDir, { roots: [root] });
    const d = await ingest.prepare('j1', join(base, 'job'), { csv: { train: join(root, 'd.csv'), featureScale: 1 } });
    expect(d).toMatchObject({
      featureShape: [2],
      numClasses: 3,
      train: { examples: 3, path: '/v1/jobs/j1/data/train' },
    });
    expect(readdirSync(join(base, 'job', 'data'))).toEqual(['train.bin']);
  });

  it('passes a data error back with its field path, never the content', async () => {
    const { root, dataDir, base } = dirs();
    writeFileSync(join(root, 'd.csv'), `label,a\n0,1\n1,${SECRET}\n`);
    const err = await thrown(
      new DatasetIngest(dataDir, { roots: [root] }).prepare('j', join(base, 'job'), {
        csv: { train: join(root, 'd.csv'), featureScale: 1 },
      }),
    );
    expect(err).toBeInstanceOf(InvalidDataError);
    expect((err as InvalidDataError).path).toBe('dataset.csv.train');
    expect(err.message).toContain('line 3: column 2: not a number');
    expect(err.message).not.toContain(SECRET);
  });

  it('refuses a file whose parsing outgrows the heap cap, naming the flag, and the caller keeps running', async () => {
    const { root, dataDir, base } = dirs();
    // Two million tiny lines: a few MB on disk, hundreds of MB of per-line objects in a parser.
    writeFileSync(join(root, 'tiny.csv'), `${SECRET},x\n` + '1,2\n'.repeat(2_000_000));
    const ingest = new DatasetIngest(dataDir, { roots: [root], parseHeapMb: 32 });
    const err = await thrown(
      ingest.prepare('j', join(base, 'job'), { csv: { train: join(root, 'tiny.csv'), featureScale: 1 } }),
    );
    expect(err).toBeInstanceOf(InvalidDataError);
    expect((err as InvalidDataError).path).toBe('dataset.csv');
    expect(err.message).toContain('--dataset-parse-heap-mb');
    expect(err.message).toContain('gradfleet dataset ingest');
    expect(err.message).not.toContain(SECRET);
  }, 60_000);

  it('stops a preparation past its deadline, naming the flag', async () => {
    const { root, dataDir, base } = dirs();
    writeFileSync(join(root, 'd.csv'), 'label,a\n0,1\n');
    // No thread starts, let alone parses, within a millisecond.
    const ingest = new DatasetIngest(dataDir, { roots: [root], parseTimeoutMs: 1 });
    const err = await thrown(
      ingest.prepare('j', join(base, 'job'), { csv: { train: join(root, 'd.csv'), featureScale: 1 } }),
    );
    expect(err).toBeInstanceOf(InvalidDataError);
    expect(err.message).toContain('--dataset-parse-timeout-s');
  });
});

describe('readStoredFile reads what it opened (no stat-then-read window)', () => {
  it('refuses a stored file replaced by a symlink, without following it', async () => {
    const { base, dataDir } = dirs();
    writeFileSync(join(base, 'secret'), SECRET);
    symlinkSync(join(base, 'secret'), join(dataDir, 'uploads', 'u1'));
    const err = await thrown(readStoredFile(join(dataDir, 'uploads', 'u1'), 'upload:u1', 1024, 'f'));
    expect(err.message).toBe('upload:u1: cannot read (ELOOP)');
  });

  it('refuses a FIFO without blocking, and a file over the limit before reading it', async () => {
    const { dataDir } = dirs();
    execFileSync('mkfifo', [join(dataDir, 'uploads', 'fifo')]);
    const fifo = await thrown(readStoredFile(join(dataDir, 'uploads', 'fifo'), 'upload:fifo', 1024, 'f'));
    expect(fifo.message).toBe('upload:fifo: not a regular file');
    writeFileSync(join(dataDir, 'uploads', 'big'), Buffer.alloc(2048));
    const big = await thrown(readStoredFile(join(dataDir, 'uploads', 'big'), 'upload:big', 1024, 'f'));
    expect(big.message).toContain('2048 bytes exceeds');
  });

  it('says what to do when the file is gone', async () => {
    const { dataDir } = dirs();
    const err = await thrown(
      readStoredFile(join(dataDir, 'uploads', 'nope'), 'upload:nope', 1024, 'f', 'no such upload'),
    );
    expect(err.message).toBe('upload:nope: no such upload');
  });
});
