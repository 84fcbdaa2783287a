/**
 * The reference recipe (MNIST MLP, Adam, global batch 32, 5 epochs, validation split 0.1,
 * wasm): wall time to 97.5 % test accuracy with 2 workers against single-process
 * `model.fit`, and the accuracy each compression mode reaches. The test split is evaluated
 * after every epoch in both (evaluation time not counted). Skipped by --quick.
 */
import { COMPRESSIONS, type EpochResult } from '@gradfleet/core';
import { writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, runScript, saveResult, type Row } from './bench-lib.js';
import { clusterJob } from './cluster-job.js';

const TARGET_ACCURACY = 0.975;
const epochs = QUICK ? 1 : 5;
const dataset = QUICK ? (await writeSmallMnist(3000, 500)).dataset : ('mnist' as const);
const spec = { epochs, testEveryEpoch: true, dataset };

console.error(`reference: model.fit, ${epochs} epochs...`);
const fit = JSON.parse(
  runScript('single-process-fit.ts', ['--spec', JSON.stringify({ epochs, dataset }), '--test-every-epoch'])
    .trim()
    .split('\n')
    .at(-1)!,
) as {
  epochs: { elapsedMs: number; testAccuracy: number }[];
  wallTimeMs: number;
  testAccuracy: number;
};
const reach = (points: { elapsedMs?: number; testAccuracy?: number }[]) =>
  points.find((p) => (p.testAccuracy ?? 0) >= TARGET_ACCURACY)?.elapsedMs;
const fitReach = reach(fit.epochs);

const runs: Record<string, { history: EpochResult[]; accuracy: number; wallTimeMs: number }> = {};
for (const compression of QUICK ? (['none'] as const) : COMPRESSIONS) {
  console.error(`reference: 2 workers, compression ${compression}...`);
  const { status } = await clusterJob(2, { ...spec, compression });
  runs[compression] = {
    history: status.history,
    accuracy: status.result!.testAccuracy!,
    wallTimeMs: status.result!.wallTimeMs,
  };
}
const none = runs['none']!;
const noneReach = reach(none.history);
const rows: Row[] = [];
const s = (ms: number | undefined) => (ms === undefined ? NaN : ms / 1000);
rows.push({
  case: `time to ${TARGET_ACCURACY * 100} % test accuracy, 2 workers`,
  value: s(noneReach),
  baseline: s(fitReach),
  unit: 's',
  ratio: fitReach !== undefined && noneReach !== undefined ? fitReach / noneReach : 0,
  target: 1,
  note: noneReach === undefined ? '(not reached)' : fitReach === undefined ? '(model.fit did not reach it)' : '',
});
rows.push({
  case: `${epochs}-epoch wall time, 2 workers`,
  value: s(none.wallTimeMs),
  baseline: s(fit.wallTimeMs),
  unit: 's',
  ratio: fit.wallTimeMs / none.wallTimeMs,
});
rows.push({
  case: 'test accuracy, uncompressed',
  value: none.accuracy * 100,
  baseline: fit.testAccuracy * 100,
  unit: '%',
  ratio: none.accuracy,
  target: QUICK ? 0 : TARGET_ACCURACY,
});
for (const c of ['fp16', 'int8'] as const) {
  if (runs[c])
    rows.push({
      case: `test accuracy, ${c} (ratio = accuracy)`,
      value: runs[c].accuracy * 100,
      baseline: none.accuracy * 100,
      unit: '%',
      ratio: runs[c].accuracy,
      target: TARGET_ACCURACY,
    });
}
if (runs['topk']) {
  rows.push({
    case: 'test accuracy, topk 1 % (ratio = points vs uncompressed)',
    value: runs['topk'].accuracy * 100,
    baseline: none.accuracy * 100,
    unit: '%',
    ratio: (runs['topk'].accuracy - none.accuracy) * 100,
    target: -1,
  });
}
saveResult({
  name: 'reference-recipe',
  title: 'Reference recipe: 2 workers vs single-process `model.fit` (MNIST MLP, batch 32, 5 epochs)',
  baselineName: '`model.fit`',
  rows,
  notes: [
    `Per-epoch test accuracy: model.fit ${JSON.stringify(fit.epochs.map((e) => +e.testAccuracy.toFixed(4)))}; ${Object.entries(
      runs,
    )
      .map(([k, r]) => `${k} ${JSON.stringify(r.history.map((h) => +(h.testAccuracy ?? NaN).toFixed(4)))}`)
      .join('; ')}`,
  ],
});
