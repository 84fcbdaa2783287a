import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CheckpointStore, readCheckpoint, type Checkpoint } from './checkpoint-store.js';
import { checkpointInfo } from './job-checkpoint.js';

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

  it('lists the kept checkpoints oldest first, finds one by step, and leaves out pruned and damaged ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-ckpt-'));
    const store = new CheckpointStore(dir, 3);
    const history = [{ epoch: 0, loss: 0.5, accuracy: 0.8, valLoss: 0.4, valAccuracy: 0.9 }];
    const make = (step: number, cursor: number): Checkpoint => ({
      step,
      epoch: 1,
      sampler: { epoch: 1, cursor, retry: [] },
      runner: {
        stepNo: step,
        epochTotals: { lossSum: 1, correct: 1, samples: cursor, steps: 1 },
        history,
        earlyStopping: { best: 0.4, wait: 0, bestEpoch: 0 },
      },
      weights: new Float32Array(16).fill(step),
      optimizer: new Float32Array(8).fill(-step),
      optimizerSpecs: [],
    });
    for (const step of [10, 20, 30, 40]) await store.write(make(step, step === 20 ? 0 : step), { step });
    const kept = await store.list();
    expect(kept.map((c) => c.step)).toEqual([20, 30, 40]); // the last 3
    expect(await store.find(10)).toBeUndefined();
    expect(await store.find(-1)).toBeUndefined();
    const at20 = (await store.find(20))!;
    expect(at20.dir).toBe(kept[0]!.dir);
    const weights = readFileSync(join(at20.dir, 'weights.bin'));
    expect(checkpointInfo(at20)).toEqual({
      step: 20,
      epoch: 1,
      epochEnd: true,
      samplesInEpoch: 0,
      time: at20.createdAt,
      bytes: 16 * 4 + 8 * 4,
      weightsBytes: 16 * 4,
      weightsSha256: createHash('sha256').update(weights).digest('hex'),
      lastEpoch: history[0],
      earlyStopping: { best: 0.4, wait: 0, bestEpoch: 0 },
    });
    expect(checkpointInfo((await store.find(30))!)).toMatchObject({ epochEnd: false, samplesInEpoch: 30 });
    truncateSync(join(kept[1]!.dir, 'weights.bin'), 10);
    expect((await store.list()).map((c) => c.step)).toEqual([20, 40]);
    expect(await store.find(30)).toBeUndefined();
  });
});
