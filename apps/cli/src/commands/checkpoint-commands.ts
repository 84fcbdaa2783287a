import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GradfleetClient, type CheckpointInfo } from '@gradfleet/core/client';
import { print } from '../terminal.js';
import type { ClientOptions } from './job-commands.js';

const client = (o: ClientOptions) =>
  new GradfleetClient({ url: o.coordinator, token: o.token, ca: o.ca ? readFileSync(o.ca) : undefined });

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const num = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(4));
const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(2)}%`);

/**
 * The kept checkpoints as a table, one per line, oldest first: the step (what
 * `gradfleet download JOB --checkpoint STEP` takes), where in training it was taken (epochs
 * are counted from 1, as `gradfleet status` does), when, its size, and the last completed
 * epoch's results.
 */
export function checkpointTable(list: CheckpointInfo[]): string {
  const rows = [['STEP', 'TAKEN', 'TIME', 'SIZE', 'LOSS', 'VAL_LOSS', 'VAL_ACC', 'BEST']];
  for (const c of list) {
    const taken = c.epochEnd ? `end of epoch ${c.epoch}` : `epoch ${c.epoch + 1}, ${c.samplesInEpoch} examples in`;
    const e = c.lastEpoch;
    const best = c.earlyStopping?.bestEpoch === undefined ? '-' : `epoch ${c.earlyStopping.bestEpoch + 1}`;
    rows.push([
      String(c.step),
      taken,
      c.time.slice(0, 19).replace('T', ' '),
      mb(c.bytes),
      num(e?.loss),
      num(e?.valLoss),
      pct(e?.valAccuracy),
      best,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `gradfleet checkpoints JOB`: the job's kept checkpoints (a table, or `--json`). */
export async function checkpoints(id: string, o: ClientOptions): Promise<number> {
  const list = await client(o).checkpoints(id);
  if (o.json) print(JSON.stringify(list, null, 2));
  else if (list.length === 0) print(`job ${id} keeps no checkpoints yet`);
  else print(checkpointTable(list));
  return 0;
}

/**
 * `gradfleet download JOB [--checkpoint STEP] [--out DIR]`: the trained model, or a kept
 * checkpoint's weights, as `model.json` + `weights.bin` (streamed to disk).
 */
export async function download(id: string, o: ClientOptions & { out?: string; checkpoint?: number }): Promise<number> {
  const dir = o.out ?? join('.', o.checkpoint === undefined ? `model-${id}` : `model-${id}-step-${o.checkpoint}`);
  const { bytes } = await client(o).saveModel(id, dir, o.checkpoint === undefined ? {} : { checkpoint: o.checkpoint });
  const what = o.checkpoint === undefined ? `model of job ${id}` : `checkpoint at step ${o.checkpoint} of job ${id}`;
  print(
    o.json
      ? JSON.stringify({ dir, bytes, ...(o.checkpoint === undefined ? {} : { step: o.checkpoint }) })
      : `${what} saved in ${dir} (load with tf.loadLayersModel('file://${join(dir, 'model.json')}'))`,
  );
  return 0;
}
