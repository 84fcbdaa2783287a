/**
 * The model of the coordinator benchmarks: one dense layer without bias on the (unused)
 * MNIST inputs, `params` weights in all. The coordinator builds it; simulated workers only
 * need its layout, so its size sets the gradient bytes per step (4 × params).
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { selectBackend } from '@gradfleet/core';

/** The model must accept MNIST examples: `params` must be a multiple of this. */
export const DENSE_INPUTS = 784;

await selectBackend('cpu');
const template = (() => {
  const m = tfl.sequential({
    layers: [tfl.layers.dense({ inputShape: [DENSE_INPUTS], units: 1, useBias: false, kernelInitializer: 'zeros' })],
  });
  const json = JSON.stringify(m.toJSON(null, false));
  m.dispose();
  return json;
})();

/** A one-layer model topology with `params` weights. */
export function denseTopology(params: number): Record<string, unknown> {
  if (params % DENSE_INPUTS !== 0) throw new RangeError(`${params} weights is not a multiple of ${DENSE_INPUTS}`);
  const t = JSON.parse(template) as { config: { layers: { config: { units: number } }[] } };
  t.config.layers[0]!.config.units = params / DENSE_INPUTS;
  return t as unknown as Record<string, unknown>;
}

/**
 * The benchmarks' job for `n` simulated workers of one example each on the dense model:
 * one step per `n` examples, nothing but the gradient exchange (no checksums, checkpoints,
 * shuffling or straggler deadline), a generous step timeout.
 */
export function simulatedJob(n: number, params: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model: { topology: denseTopology(params) },
    epochs: 1,
    batchSize: n,
    validationSplit: 0,
    minWorkers: n,
    maxWorkers: n,
    shuffle: false,
    checksumEverySteps: 0,
    checkpointEverySteps: 0,
    stragglerDeadlineFactor: 0,
    stepTimeoutMs: 600_000,
    ...extra,
  };
}
