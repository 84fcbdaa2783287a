import type { StepTiming } from '@gradfleet/core';
import type { CoordinatorMetrics } from './metrics.js';

/** Weight of the newest step in the moving averages of `timing`. */
const TIMING_EMA_ALPHA = 0.05;

interface Arrival {
  worker: string;
  at: number;
  computeMs: number;
}

/** A worker is a straggler in a step when the others waited for it at least this long, in ms... */
const STRAGGLER_MIN_WAIT_MS = 2;
/** ...and at least this fraction of the median compute time. */
const STRAGGLER_WAIT_RATIO = 0.25;

/**
 * Measures the phases of each step of one job and feeds the metrics:
 * - compute, apply, data_wait: reported in-band by each worker with its gradient (data_wait:
 *   its compute waiting for the slice's examples, chunks of a chunked dataset fetched; 0 for
 *   in-memory data);
 * - upload: round trip (train sent → gradient received) minus compute, apply and data wait;
 * - straggler_wait: first gradient in → last gradient in;
 * - aggregate: coordinator time adding gradients and scaling the mean;
 * - broadcast: update sent → every socket has written it.
 */
export class StepTelemetry {
  private readonly sentAt = new Map<string, number>();
  private arrivals: Arrival[] = [];
  private aggregateMs = 0;
  private stepStart = 0;
  private perWorker = { compute: 0, apply: 0, upload: 0, dataWait: 0 };
  /** Moving averages of the phases, in ms (job status, `gradfleet status`). */
  readonly timing: StepTiming = {
    stepMs: 0,
    computeMs: 0,
    applyMs: 0,
    uploadMs: 0,
    stragglerWaitMs: 0,
    aggregateMs: 0,
    broadcastMs: 0,
    dataWaitMs: 0,
  };
  private timed = 0;

  constructor(
    private readonly metrics: CoordinatorMetrics,
    private readonly job: string,
  ) {}

  begin(): void {
    this.stepStart = performance.now();
    this.sentAt.clear();
    this.arrivals = [];
    this.aggregateMs = 0;
    this.perWorker = { compute: 0, apply: 0, upload: 0, dataWait: 0 };
  }

  private ema(key: keyof StepTiming, ms: number): void {
    const prev = this.timing[key] ?? 0;
    this.timing[key] = this.timed === 0 ? ms : prev + TIMING_EMA_ALPHA * (ms - prev);
  }

  sent(worker: string): void {
    this.sentAt.set(worker, performance.now());
  }

  arrived(
    worker: string,
    computeMs: number,
    applyMs: number,
    samples: number,
    bytes: number,
    aggregateMs: number,
    dataWaitMs = 0,
  ): void {
    const at = performance.now();
    const m = this.metrics;
    const job = this.job;
    const roundTrip = at - (this.sentAt.get(worker) ?? at);
    const uploadMs = Math.max(0, roundTrip - computeMs - applyMs - dataWaitMs);
    this.perWorker.compute += computeMs;
    this.perWorker.apply += applyMs;
    this.perWorker.upload += uploadMs;
    this.perWorker.dataWait += dataWaitMs;
    m.stepPhase.observe({ job_id: job, phase: 'compute' }, computeMs / 1000);
    m.stepPhase.observe({ job_id: job, phase: 'apply' }, applyMs / 1000);
    m.stepPhase.observe({ job_id: job, phase: 'data_wait' }, dataWaitMs / 1000);
    m.stepPhase.observe({ job_id: job, phase: 'upload' }, uploadMs / 1000);
    m.workerSamples.inc({ job_id: job, worker }, samples);
    m.workerSteps.inc({ job_id: job, worker });
    m.workerComputeSeconds.inc({ job_id: job, worker }, computeMs / 1000);
    m.gradientReceivedBytes.inc({ worker }, bytes);
    this.aggregateMs += aggregateMs;
    this.arrivals.push({ worker, at, computeMs: computeMs + dataWaitMs }); // its time to the gradient, for the straggler test
  }

  /** The worker's slice went back to the pool: past the straggler deadline, with backup workers, or the step timeout. */
  excused(worker: string): void {
    this.metrics.excusedSlices.inc({ job_id: this.job, worker });
  }

  /**
   * The mean is ready: records the step. Returns the straggler of the step, if any, and the
   * callback to run after each of the `n` sends of the update.
   */
  finish(samples: number, finishMs: number, n: number): { straggler: string | undefined; sent: () => void } {
    const m = this.metrics;
    const job = this.job;
    const now = performance.now();
    const aggregateMs = this.aggregateMs + finishMs;
    m.stepPhase.observe({ job_id: job, phase: 'aggregate' }, aggregateMs / 1000);
    const a = [...this.arrivals].sort((x, y) => x.at - y.at);
    let straggler: string | undefined;
    let waitMs = 0;
    if (a.length > 1) {
      waitMs = a[a.length - 1]!.at - a[0]!.at;
      m.stepPhase.observe({ job_id: job, phase: 'straggler_wait' }, waitMs / 1000);
      const last = a[a.length - 1]!;
      const lead = last.at - a[a.length - 2]!.at;
      const median = [...a].sort((x, y) => x.computeMs - y.computeMs)[a.length >> 1]!.computeMs;
      if (lead > Math.max(STRAGGLER_MIN_WAIT_MS, STRAGGLER_WAIT_RATIO * median)) {
        straggler = last.worker;
        m.stragglerEvents.inc({ job_id: job, worker: last.worker });
      }
    }
    const k = Math.max(1, a.length);
    this.ema('stepMs', now - this.stepStart);
    this.ema('computeMs', this.perWorker.compute / k);
    this.ema('applyMs', this.perWorker.apply / k);
    this.ema('uploadMs', this.perWorker.upload / k);
    this.ema('dataWaitMs', this.perWorker.dataWait / k);
    this.ema('stragglerWaitMs', waitMs);
    this.ema('aggregateMs', aggregateMs);
    m.steps.inc({ job_id: job });
    m.samples.inc({ job_id: job }, samples);
    m.stepDuration.observe({ job_id: job }, (now - this.stepStart) / 1000);
    m.lastStep.set({ job_id: job }, Date.now() / 1000);
    this.timed++;
    let left = n;
    const start = performance.now();
    const sent = () => {
      if (--left !== 0) return;
      const ms = performance.now() - start;
      m.stepPhase.observe({ job_id: job, phase: 'broadcast' }, ms / 1000);
      this.ema('broadcastMs', ms);
    };
    return { straggler, sent };
  }
}
