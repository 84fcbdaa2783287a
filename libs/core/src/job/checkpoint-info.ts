import type { EarlyStoppingState } from './early-stopping.js';
import type { EpochResult } from './job-status.js';

/**
 * One kept checkpoint of a job, as `GET /v1/jobs/:id/checkpoints` lists it (`docs/api.md`,
 * "Checkpoints and resume"): what the coordinator recorded when it wrote the checkpoint.
 * Its weights download as a TensorFlow.js artifact from `.../checkpoints/:step/model/`.
 */
export interface CheckpointInfo {
  /** Steps completed when it was taken: the name to download it by. */
  step: number;
  /** The epoch it resumes in (0-based, as the job's `checkpoint.epoch`). */
  epoch: number;
  /** Taken at the end of epoch `epoch - 1`: nothing of `epoch` is trained yet. */
  epochEnd: boolean;
  /** Examples of `epoch` already trained (0 at an epoch end). */
  samplesInEpoch: number;
  /** When it was written (ISO 8601). */
  time: string;
  /** Bytes on disk: weights and optimizer state. */
  bytes: number;
  /** Size of the weights (`weights.bin` of the download). */
  weightsBytes: number;
  /** SHA-256 (hex) of the weights, to check a download against. */
  weightsSha256: string;
  /** The results of the last epoch completed before it (loss, accuracy, validation...), once one was. */
  lastEpoch?: EpochResult;
  /** With `earlyStopping`: where it stood then (best value so far, its epoch, epochs waited). */
  earlyStopping?: EarlyStoppingState;
}
