import type { CheckpointInfo, EarlyStoppingState, EpochResult } from '@gradfleet/core';
import { rm } from 'node:fs/promises';
import type { CheckpointMeta, ListedCheckpoint } from './checkpoint-store.js';
import type { StateFiles } from './state-files.js';
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

/** Completes a checkpoint whose state a replica streamed into `files`, and records it in the job's status and log. */
export async function saveCheckpoint(
  job: JobRecord,
  model: ModelInfo,
  files: StateFiles,
  meta: CheckpointMeta,
): Promise<void> {
  const t0 = performance.now();
  try {
    await job.checkpoints.commit(files, meta, modelArtifactJson(model));
  } catch (err) {
    await rm(files.dir, { recursive: true, force: true });
    throw err;
  }
  job.status.checkpoint = { step: meta.step, epoch: meta.epoch, time: new Date().toISOString() };
  job.log(
    `checkpoint at step ${meta.step} (epoch ${meta.epoch + 1}) written in ${(performance.now() - t0).toFixed(0)} ms`,
  );
  job.persist();
}

/** A kept checkpoint as the API lists it: the store's record with the runner's counters read. */
export function checkpointInfo(c: ListedCheckpoint): CheckpointInfo {
  const runner = c.runner as unknown as Partial<RunnerCounters>;
  const epochEnd = c.sampler.cursor === 0 && c.sampler.retry.length === 0;
  const lastEpoch = runner.history?.at(-1);
  return {
    step: c.step,
    epoch: c.epoch,
    epochEnd,
    samplesInEpoch: epochEnd ? 0 : (runner.epochTotals?.samples ?? 0),
    time: c.createdAt,
    bytes: c.weightsBytes + c.optimizerBytes,
    weightsBytes: c.weightsBytes,
    weightsSha256: c.weightsSha256,
    ...(lastEpoch ? { lastEpoch } : {}),
    ...(runner.earlyStopping ? { earlyStopping: runner.earlyStopping } : {}),
  };
}
