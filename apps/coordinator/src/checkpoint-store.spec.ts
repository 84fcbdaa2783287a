import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CheckpointStore, readCheckpoint, type Checkpoint } from './checkpoint-store.js';

const fixture = fileURLToPath(new URL('./checkpoint-writer.fixture.ts', import.meta.url));

function consistent(c: Checkpoint): boolean {
  return (
    c.weights.every((v) => v === c.step) &&
    c.optimizer.every((v) => v === -c.step) &&
    c.sampler.cursor === c.step &&
    (c.runner as { step: number }).step === c.step
  );
}

describe('CheckpointStore', () => {
  it('never yields a checkpoint that loads wrong, whenever the writer is SIGKILLed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-ckpt-'));
    const store = new CheckpointStore(dir);
    let last = 0;
    for (let round = 0; round < 12; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir], { stdio: ['ignore', 'pipe', 'ignore'] });
      await new Promise((r) => child.stdout!.once('data', r)); // writing from now on
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 250));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const latest = await store.latest();
      if (!latest) {
        expect(last, `round ${round}: a checkpoint was lost`).toBe(0); // killed before the first one completed
        continue;
      }
      expect(consistent(await readCheckpoint(latest))).toBe(true);
      expect(latest.step).toBeGreaterThanOrEqual(last);
      last = latest.step;
    }
    expect(last).toBeGreaterThan(12);
    expect(readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('step-')).length).toBeLessThanOrEqual(4);
  }, 60_000);

  it('skips a damaged newest checkpoint and falls back to the previous one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-ckpt-'));
    const store = new CheckpointStore(dir);
    const make = (step: number): Checkpoint => ({
      step,
      epoch: 0,
      sampler: { epoch: 0, cursor: step, retry: [] },
      runner: { step },
      weights: new Float32Array(16).fill(step),
      optimizer: new Float32Array(8).fill(-step),
      optimizerSpecs: [],
    });
    await store.write(make(1), {});
    const newest = await store.write(make(2), {});
    truncateSync(join(newest, 'weights.bin'), 10);
    expect((await store.latest())!.step).toBe(1);
  });
});
