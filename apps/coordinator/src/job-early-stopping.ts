import { readdir, rm } from 'node:fs/promises';
import { EarlyStopper, type EarlyStoppingState, type EpochLogs, type EpochResult } from '@gradfleet/core';
import { readModelArtifact } from './checkpoint-store.js';
import type { JobRecord } from './job-record.js';

/** The logs `model.fit` would hand its callbacks for an epoch (tfjs and Keras names). */
export function epochLogs(result: EpochResult): EpochLogs {
  return {
    loss: result.loss,
    acc: result.accuracy,
    accuracy: result.accuracy,
    ...(result.valLoss === undefined ? {} : { val_loss: result.valLoss }),
    ...(result.valAccuracy === undefined ? {} : { val_acc: result.valAccuracy, val_accuracy: result.valAccuracy }),
  };
}

/**
 * A job's `earlyStopping`: the stopper, its state in the job's status (and, through the
 * runner's counters, in every checkpoint), and with `restoreBestWeights` the best epoch's
 * weights, streamed from a replica to `<job dir>/best/epoch-N/` (a model artifact: never whole
 * in memory, whatever the model's size) so that a resumed job still has them.
 */
export class JobEarlyStopping {
  /** The epoch whose weights are saved in `bestDir`, once there are any. */
  private saved: number | undefined;
  /** Why the job stopped before `epochs`, once it did. */
  reason: string | undefined;

  private constructor(
    private readonly job: JobRecord,
    private readonly stopper: EarlyStopper,
  ) {}

  /** Undefined when the spec has no `earlyStopping`; `state` continues a checkpoint's. */
  static async open(job: JobRecord, state?: EarlyStoppingState): Promise<JobEarlyStopping | undefined> {
    const options = job.spec.earlyStopping;
    if (!options) return undefined;
    const es = new JobEarlyStopping(job, new EarlyStopper(options, state));
    job.status.earlyStopping = es.stopper.state();
    if (options.restoreBestWeights && state?.bestEpoch !== undefined) {
      const dir = es.bestDir(state.bestEpoch);
      if (!(await readModelArtifact(dir)))
        throw new Error(`the best weights of epoch ${state.bestEpoch + 1} are missing from ${dir}`);
      es.saved = state.bestEpoch;
    }
    return es;
  }

  /**
   * One directory per best epoch: a checkpoint's state names the best epoch as of its
   * epoch end, so the previous best stays until a newer one is written after it.
   */
  bestDir(epoch: number): string {
    return `${this.job.dir}/best/epoch-${epoch}`;
  }

  state(): EarlyStoppingState {
    return this.stopper.state();
  }

  /**
   * Takes an epoch's results; `saveWeights` writes the replicas' current weights as a model
   * artifact in the directory it is given (called only when this epoch is the best so far and
   * they are to be restored). True: stop training.
   */
  async afterEpoch(result: EpochResult, saveWeights: (dir: string) => Promise<void>): Promise<boolean> {
    const previousBest = this.stopper.state().bestEpoch;
    const decision = this.stopper.onEpochEnd(result.epoch, epochLogs(result));
    this.job.status.earlyStopping = this.stopper.state();
    const { monitor, restoreBestWeights } = this.stopper.options;
    if (decision === 'missing')
      this.job.log(`early stopping: no ${monitor} this epoch (no validation examples?); not counted`);
    if (decision === 'improved' && restoreBestWeights) {
      await saveWeights(this.bestDir(result.epoch));
      this.saved = result.epoch;
      const keep = new Set([`epoch-${result.epoch}`, `epoch-${previousBest}`]);
      for (const name of await readdir(`${this.job.dir}/best`))
        if (!keep.has(name)) await rm(`${this.job.dir}/best/${name}`, { recursive: true, force: true });
    }
    if (decision !== 'stop') return false;
    this.reason = this.stopper.describe();
    this.job.log(this.reason);
    return true;
  }

  /** After the final model is written: the best weights' copies are no longer needed. */
  async finish(): Promise<void> {
    await rm(`${this.job.dir}/best`, { recursive: true, force: true });
  }

  /** The weights to load before the final evaluation (their artifact's directory): the best epoch's, unless it is the last one trained. */
  weightsToRestore(lastEpoch: number): { dir: string; epoch: number } | undefined {
    const { bestEpoch } = this.stopper.state();
    if (this.saved === undefined || bestEpoch !== this.saved || bestEpoch === lastEpoch) return undefined;
    return { dir: this.bestDir(bestEpoch), epoch: bestEpoch };
  }
}
