/**
 * The reference recipe (MNIST MLP, Adam, global batch 32, 5 epochs, validation split 0.1,
 * wasm): wall time to 97.5 % test accuracy with 2 workers against single-process
 * `model.fit`, and the accuracy each compression mode reaches. The test split is evaluated
 * after every epoch in both (evaluation time not counted). Skipped by --quick.
 *
 * The cluster runs are seeded (`seed`, `seededDropout`: initialisation, shuffles and dropout
 * masks all follow REFERENCE_SEED), so the accuracy row is one reproducible outcome rather
 * than a noisy sample: the uncompressed run is trained twice and must give the same weights
 * (the replicas' final hash) and the same test loss.
 */
import { COMPRESSIONS, type EpochResult } from '@gradfleet/core';
import { writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, runScript, saveResult, type Row } from './bench-lib.js';
import { clusterJob } from './cluster-job.js';

const TARGET_ACCURACY = 0.975;
/** The seed of every cluster run (as `gradfleet up --seed 1`). */
const REFERENCE_SEED = 1;
const epochs = QUICK ? 1 : 5;
const dataset = QUICK ? (await writeSmallMnist(3000, 500)).dataset : ('mnist' as const);
const spec = { epochs, testEveryEpoch: true, dataset, seed: REFERENCE_SEED, seededDropout: true };

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

interface Run {
  history: EpochResult[];
  accuracy: number;
  loss: number;
  hash: string | undefined;
  wallTimeMs: number;
}
const runs: Record<string, Run> = {};
const seededRun = async (compression: (typeof COMPRESSIONS)[number]): Promise<Run> => {
  console.error(`reference: 2 workers, compression ${compression}, seed ${REFERENCE_SEED}...`);
  const { status } = await clusterJob(2, { ...spec, compression });
  return {
    history: status.history,
    accuracy: status.result!.testAccuracy!,
    loss: status.result!.testLoss!,
    hash: status.replicas.lastHash,
    wallTimeMs: status.result!.wallTimeMs,
  };
};
for (const compression of QUICK ? (['none'] as const) : COMPRESSIONS) runs[compression] = await seededRun(compression);
// The same seed again: the same model, so the accuracy row is a reproducible result.
const rerun = await seededRun('none');
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
const same = rerun.hash !== undefined && rerun.hash === none.hash && rerun.loss === none.loss;
rows.push({
  case: `seeded rerun (seed ${REFERENCE_SEED}): same weights hash and test loss (ratio 1 = identical)`,
  value: rerun.accuracy * 100,
  baseline: none.accuracy * 100,
  unit: '%',
  ratio: same ? 1 : 0,
  target: 1,
  note: same ? '' : `(hash ${rerun.hash} vs ${none.hash}, loss ${rerun.loss} vs ${none.loss})`,
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
  title: `Reference recipe: 2 workers (seed ${REFERENCE_SEED}, seeded dropout) vs single-process \`model.fit\` (MNIST MLP, batch 32, 5 epochs)`,
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
