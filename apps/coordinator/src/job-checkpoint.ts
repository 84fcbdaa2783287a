import type { EarlyStoppingState, EpochResult } from '@gradfleet/core';
import type { Checkpoint } from './checkpoint-store.js';
import type { JobRecord } from './job-record.js';
import { modelArtifactJson, type ModelInfo } from './model-info.js';

export interface EpochTotals {
  lossSum: number;
  correct: number;
  samples: number;
  steps: number;
  /**
   * Samples whose loss and accuracy never reached the coordinator (data plane: the worker's
   * stats were lost after its gradient was averaged); the epoch's loss and accuracy are over
   * the others. Absent in checkpoints written before it existed: 0.
   */
  unreported?: number;
}

/** The epoch's mean training loss and accuracy, over the samples whose stats were reported. */
export function epochMeans(t: EpochTotals): { loss: number; accuracy: number } {
  const n = t.samples - (t.unreported ?? 0);
  return { loss: t.lossSum / n, accuracy: t.correct / n };
}

/** The runner's counters saved in a checkpoint. */
export interface RunnerCounters {
  stepNo: number;
  epochTotals: EpochTotals;
  trainSamples: number;
  trainMs: number;
  elapsedMs: number;
  history: EpochResult[];
  /** With `earlyStopping`: where it stood (best so far, epochs waited). */
  earlyStopping?: EarlyStoppingState;
}

/** What `job-start` carries: the weights to start from, then the optimizer state when resuming. */
export function startValues(model: ModelInfo, resume?: Checkpoint): Float32Array {
  if (!resume) return model.initialWeights; // sent as is (never modified), not copied
  const weights = resume?.weights ?? model.initialWeights;
  const optimizer = resume?.optimizer ?? new Float32Array(0);
  const values = new Float32Array(weights.length + optimizer.length);
  values.set(weights);
  values.set(optimizer, weights.length);
  return values;
}

/** Writes a checkpoint of the job and records it in the job's status and log. */
export async function saveCheckpoint(job: JobRecord, model: ModelInfo, ckpt: Checkpoint): Promise<void> {
  const t0 = performance.now();
  await job.checkpoints.write(ckpt, modelArtifactJson(model));
  job.status.checkpoint = { step: ckpt.step, epoch: ckpt.epoch, time: new Date().toISOString() };
  job.log(
    `checkpoint at step ${ckpt.step} (epoch ${ckpt.epoch + 1}) written in ${(performance.now() - t0).toFixed(0)} ms`,
  );
  job.persist();
}
