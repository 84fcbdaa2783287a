/**
 * Wire efficiency: bytes on the wire per step (whole gradient and update frames, headers
 * included, both directions, as counted by the coordinator) against the raw fp32 gradient
 * bytes they carry (2 workers x 2 directions x params x 4), for each compression mode.
 */
import { COMPRESSIONS } from '@gradfleet/core';
import { writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, saveResult, type Row } from './bench-lib.js';
import { clusterJob, counterTotal } from './cluster-job.js';

const PARAMS = 101_770; // mnist-mlp
const TARGETS = { none: 1.02, fp16: 0.51, int8: 0.27, topk: 0.05 };
const { dataset } = await writeSmallMnist(QUICK ? 640 : 3200, 100);
const rows: Row[] = [];
for (const compression of COMPRESSIONS) {
  console.error(`wire: ${compression}...`);
  const { status, metrics } = await clusterJob(2, {
    model: 'mnist-mlp',
    dataset,
    epochs: 1,
    batchSize: 32,
    validationSplit: 0,
    compression,
    topkRatio: 0.01,
  });
  const steps = status.result!.steps;
  const wire =
    counterTotal(metrics, 'gradfleet_gradient_received_bytes_total') +
    counterTotal(metrics, 'gradfleet_gradient_sent_bytes_total');
  const raw = steps * 2 * 2 * PARAMS * 4;
  rows.push({
    case: compression === 'topk' ? 'topk (1 %)' : compression,
    value: wire / steps / 1e6,
    baseline: raw / steps / 1e6,
    unit: 'MB/step',
    ratio: wire / raw,
    target: TARGETS[compression],
    lowerIsBetter: true,
  });
}
saveResult({
  name: 'wire',
  title: 'Wire efficiency: bytes per step vs raw fp32 gradients (mnist-mlp, 2 workers)',
  baselineName: 'raw fp32',
  rows,
  notes: [
    "Top-k sends 1 % of each bucket as (uint32 index, float32 value) pairs; the averaged update carries the union of the workers' entries (up to 2 % here).",
  ],
});
