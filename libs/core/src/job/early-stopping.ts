import { z } from 'zod';

/**
 * What early stopping can watch, under `model.fit`'s log names: TensorFlow.js logs accuracy
 * as `acc`/`val_acc`, Keras as `accuracy`/`val_accuracy`; both are accepted.
 */
export const EARLY_STOPPING_MONITORS = ['val_loss', 'val_acc', 'val_accuracy', 'loss', 'acc', 'accuracy'] as const;
export type EarlyStoppingMonitor = (typeof EARLY_STOPPING_MONITORS)[number];

/**
 * `earlyStopping` of a job spec: the options of `tf.callbacks.earlyStopping` (same names,
 * same defaults), plus `restoreBestWeights`, which TensorFlow.js refuses and Keras has.
 */
export const EarlyStoppingSchema = z
  .object({
    monitor: z.enum(EARLY_STOPPING_MONITORS).default('val_loss'),
    /** An epoch improves only when it beats the best by more than this (absolute value, as tfjs). */
    minDelta: z.number().min(0).max(1e9).default(0),
    /** Epochs without improvement after which training stops. */
    patience: z.number().int().min(0).max(10_000).default(0),
    /** `min`: lower is better, `max`: higher; `auto`: `max` for accuracy monitors, else `min`. */
    mode: z.enum(['auto', 'min', 'max']).default('auto'),
    /** The value to beat before the first epoch (instead of ±∞). */
    baseline: z.number().min(-1e9).max(1e9).optional(),
    /** The job's model is that of the best epoch, not of the last one (tests and download then use it). */
    restoreBestWeights: z.boolean().default(false),
  })
  .strict();

export type EarlyStoppingOptions = z.output<typeof EarlyStoppingSchema>;

/** An epoch's logged values, by monitor name. */
export type EpochLogs = Partial<Record<EarlyStoppingMonitor, number>>;

/** Where early stopping stands; JSON-safe (checkpoints carry it), `best` null while none. */
export interface EarlyStoppingState {
  best: number | null;
  wait: number;
  /** The epoch (0-based) that set `best`; undefined while only the baseline (or nothing) is best. */
  bestEpoch?: number;
  /** The epoch after which training stopped. */
  stoppedEpoch?: number;
}

/** What an epoch end decided: a new best, no improvement yet within patience, stop, or the value was not logged. */
export type EarlyStoppingDecision = 'improved' | 'waiting' | 'stop' | 'missing';

/**
 * `tf.callbacks.earlyStopping`'s rule, epoch by epoch (tfjs-layers `EarlyStopping.onEpochEnd`):
 * with `better` = `<` (min) or `>` (max) and `minDelta` signed against the direction,
 * an epoch whose `value − minDelta` is better than `best` sets `best = value` and `wait = 0`;
 * any other epoch increments `wait`, and training stops when `wait ≥ patience`.
 */
export class EarlyStopper {
  private readonly higherIsBetter: boolean;
  private readonly delta: number;
  private current: EarlyStoppingState;

  constructor(
    readonly options: EarlyStoppingOptions,
    state?: EarlyStoppingState,
  ) {
    const { mode, monitor } = options;
    this.higherIsBetter = mode === 'max' || (mode === 'auto' && monitor.includes('acc'));
    this.delta = this.higherIsBetter ? options.minDelta : -options.minDelta;
    this.current = state ? { ...state } : { best: options.baseline ?? null, wait: 0 };
  }

  state(): EarlyStoppingState {
    return { ...this.current };
  }

  /** Takes epoch `epoch`'s logs; `stop` means train no further epoch. */
  onEpochEnd(epoch: number, logs: EpochLogs): EarlyStoppingDecision {
    const value = logs[this.options.monitor];
    if (value === undefined) return 'missing';
    const s = this.current;
    const shifted = value - this.delta;
    // null is tfjs's ±Infinity: anything but NaN beats it.
    const best = s.best ?? (this.higherIsBetter ? -Infinity : Infinity);
    const better = this.higherIsBetter ? shifted > best : shifted < best;
    if (better) {
      Object.assign(s, { best: value, wait: 0, bestEpoch: epoch });
      return 'improved';
    }
    s.wait++;
    if (s.wait < this.options.patience) return 'waiting';
    s.stoppedEpoch = epoch;
    return 'stop';
  }

  /** Why training stopped, for the job's reason. */
  describe(): string {
    const { monitor, minDelta, patience } = this.options;
    const s = this.current;
    const best =
      s.bestEpoch === undefined
        ? `never beat the baseline ${this.options.baseline ?? ''}`.trimEnd()
        : `best ${s.best!.toPrecision(6)} at epoch ${s.bestEpoch + 1}`;
    return `early stopping after epoch ${(s.stoppedEpoch ?? 0) + 1}: ${monitor} did not improve by more than ${minDelta} for ${patience} epoch(s) (${best})`;
  }
}
