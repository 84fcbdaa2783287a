import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidDataError } from '@gradfleet/core';
import { openedPath, readDatasetPath } from './dataset-path.js';

/** A dataset root with `root/link -> root/inside`, and a secret outside the root. */
function layout() {
  const base = mkdtempSync(join(tmpdir(), 'gradfleet-toctou-'));
  const root = join(base, 'root');
  const outside = join(base, 'outside');
  mkdirSync(join(root, 'inside'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(root, 'inside', 'data.csv'), 'label,x\n1,2\n');
  writeFileSync(join(outside, 'data.csv'), 'SECRET_TOKEN=abcdef\n');
  symlinkSync(join(root, 'inside'), join(root, 'link'));
  return { root, outside, inside: join(root, 'inside') };
}

describe('readDatasetPath against a swapped symlink (check-then-open race)', () => {
  it('names where an open descriptor really points, whatever happened to its path since', async () => {
    const { root, outside } = layout();
    const file = await open(join(root, 'link', 'data.csv'));
    try {
      // The path now leads elsewhere; the descriptor still holds the file inside the root.
      const { renameSync, symlinkSync: link } = await import('node:fs');
      link(outside, join(root, 'swap'));
      renameSync(join(root, 'swap'), join(root, 'link'));
      expect(await openedPath(file, join(root, 'link', 'data.csv'))).toBe(join(root, 'inside', 'data.csv'));
    } finally {
      await file.close();
    }
  });

  it('never returns a file outside the root while a directory on the way is swapped for a symlink outside', async () => {
    const { root, outside, inside } = layout();
    // Another process swaps the real directory root/inside for a symlink to the outside and
    // back, as fast as it can: a path that realpath resolved inside may lead outside by the open.
    const flipper = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const [dir, away, target] = process.argv.slice(1);
         for (;;) { fs.renameSync(dir, away); fs.symlinkSync(target, dir); fs.unlinkSync(dir); fs.renameSync(away, dir); }`,
        inside,
        `${inside}.away`,
        outside,
      ],
      { stdio: 'ignore' },
    );
    const seen = { read: 0, refused: 0, leaked: 0 };
    try {
      for (let i = 0; i < 3000; i++) {
        try {
          const bytes = await readDatasetPath(join(inside, 'data.csv'), [root], 1024, 'dataset.csv.train');
          if (bytes.toString().includes('SECRET')) seen.leaked++;
          else seen.read++;
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidDataError);
          expect((err as Error).message).not.toContain('SECRET');
          seen.refused++;
        }
      }
    } finally {
      flipper.kill('SIGKILL');
    }
    console.log(`swapped-symlink race: ${JSON.stringify(seen)}`);
    expect(seen.leaked).toBe(0);
    expect(seen.read).toBeGreaterThan(0); // the race was live: both sides were seen
    expect(seen.refused).toBeGreaterThan(0);
  });
});
