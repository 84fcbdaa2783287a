/**
 * Scaling: 1 vs 2 workers on the compute-heavy `mnist-cnn`, same global batch, same data,
 * wasm backend, on this machine; training samples per second.
 */
import { writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, saveResult } from './bench-lib.js';
import { clusterJob } from './cluster-job.js';

const examples = QUICK ? 640 : 6400;
const { dataset } = await writeSmallMnist(examples, 100);
const spec = { model: 'mnist-cnn' as const, dataset, epochs: 1, batchSize: 64, validationSplit: 0 };
console.error(`scaling: mnist-cnn, ${examples} examples, 1 worker...`);
const one = (await clusterJob(1, spec)).status;
console.error('scaling: 2 workers...');
const two = (await clusterJob(2, spec)).status;
const s1 = one.result!.samplesPerSecond;
const s2 = two.result!.samplesPerSecond;
saveResult({
  name: 'scaling',
  title: 'Scaling: 2 workers vs 1 on `mnist-cnn` (global batch 64)',
  baselineName: '1 worker',
  rows: [{ case: 'mnist-cnn, wasm, 2 vCPUs', value: s2, baseline: s1, unit: 'samples/s', ratio: s2 / s1, target: 1.7 }],
  notes: [`Step time split, 1 worker: ${JSON.stringify(one.timing)}; 2 workers: ${JSON.stringify(two.timing)}`],
});
