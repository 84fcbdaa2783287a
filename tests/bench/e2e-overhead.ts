/**
 * End-to-end overhead: one real worker training through the cluster (coordinator and
 * worker processes, the full step protocol) against plain `model.fit` of the same model,
 * data and backend (wasm) in one process; training samples per second.
 */
import { writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, runScript, saveResult } from './bench-lib.js';
import { clusterJob } from './cluster-job.js';

const data = QUICK ? (await writeSmallMnist(6000, 100)).dataset : ('mnist' as const);
const spec = { model: 'mnist-mlp' as const, dataset: data, epochs: 1, batchSize: 32, validationSplit: 0 };
console.error(`e2e: model.fit, ${QUICK ? '6,000' : '60,000'} examples...`);
const fit = JSON.parse(
  runScript('single-process-fit.ts', ['--spec', JSON.stringify(spec)])
    .trim()
    .split('\n')
    .at(-1)!,
) as { samplesPerSecond: number };
console.error('e2e: one worker through the cluster...');
const { status } = await clusterJob(1, spec);
const sps = status.result!.samplesPerSecond;
saveResult({
  name: 'e2e-overhead',
  title: 'End-to-end overhead: one worker through the cluster vs plain `model.fit`',
  baselineName: '`model.fit`, one process',
  rows: [
    {
      case: 'mnist-mlp, batch 32, wasm',
      value: sps,
      baseline: fit.samplesPerSecond,
      unit: 'samples/s',
      ratio: sps / fit.samplesPerSecond,
      target: 0.9,
    },
  ],
  notes: [`Step time split (cluster, moving averages): ${JSON.stringify(status.timing)}`],
});
