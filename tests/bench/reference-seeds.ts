/**
 * The reference recipe's accuracy over seeds: the MNIST MLP (Adam, global batch 32, 5
 * epochs, validation split 0.1, wasm) trained on 2 workers with seeds 1–5 (`seed`,
 * `seededDropout`), against single-process `model.fit` run three times (its dropout is
 * unseeded). One seed is one reproducible outcome (reference-recipe.ts shows a rerun gives
 * the same weights), but which seed is a draw: the row with the target is the median over
 * the seeds, with every seed listed. Only accuracy is measured, so the figures do not depend
 * on what else the machine runs. With --quick: one seed, one epoch, small MNIST.
 */
import { writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, runScript, saveResult, type Row } from './bench-lib.js';
import { clusterJob } from './cluster-job.js';

const TARGET_ACCURACY = 0.975;
const SEEDS = QUICK ? [1] : [1, 2, 3, 4, 5];
const FIT_RUNS = QUICK ? 1 : 3;
const epochs = QUICK ? 1 : 5;
const dataset = QUICK ? (await writeSmallMnist(3000, 500)).dataset : ('mnist' as const);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const span = (xs: number[]) => `min ${Math.min(...xs).toFixed(2)} %, max ${Math.max(...xs).toFixed(2)} %`;

// Interleaved: a model.fit run after each of the first seeds.
const fit: number[] = [];
const seeded: { seed: number; accuracy: number; hash: string | undefined }[] = [];
for (let i = 0; i < Math.max(SEEDS.length, FIT_RUNS); i++) {
  const seed = SEEDS[i];
  if (seed !== undefined) {
    console.error(`reference seeds: 2 workers, seed ${seed}...`);
    const { status } = await clusterJob(2, { epochs, dataset, seed, seededDropout: true });
    seeded.push({ seed, accuracy: status.result!.testAccuracy! * 100, hash: status.replicas.lastHash });
  }
  if (i < FIT_RUNS) {
    console.error(`reference seeds: model.fit run ${i + 1}...`);
    const out = runScript('single-process-fit.ts', ['--spec', JSON.stringify({ epochs, dataset })]);
    fit.push((JSON.parse(out.trim().split('\n').at(-1)!) as { testAccuracy: number }).testAccuracy * 100);
  }
}
const fitMedian = median(fit);
const accuracies = seeded.map((s) => s.accuracy);
const rows: Row[] = seeded.map((s) => ({
  case: `test accuracy, seed ${s.seed}`,
  value: s.accuracy,
  baseline: fitMedian,
  unit: '%',
  ratio: s.accuracy / 100,
}));
rows.push({
  case: `test accuracy, median of ${SEEDS.length} seed${SEEDS.length > 1 ? 's' : ''} (ratio = accuracy)`,
  value: median(accuracies),
  baseline: fitMedian,
  unit: '%',
  ratio: median(accuracies) / 100,
  target: QUICK ? 0 : TARGET_ACCURACY,
  note: `(seeds: ${span(accuracies)}; model.fit, ${FIT_RUNS} runs: ${span(fit)})`,
});
saveResult({
  name: 'reference-seeds',
  title: `Reference recipe over seeds: 2 workers (seeded dropout) vs single-process \`model.fit\` (median of ${FIT_RUNS}), MNIST MLP, batch 32, ${epochs} epochs`,
  baselineName: '`model.fit` (median)',
  rows,
  notes: [`model.fit runs: ${JSON.stringify(fit.map((a) => +a.toFixed(2)))}`],
  data: { seeded, fit },
});
