import { BucketPlan } from '@gradfleet/core';
import { RawWorker, type Closed } from './raw-worker.js';

/** What a lying peer gets wrong once it is a member of the training job. */
export type InJobLie =
  | 'wrong-step'
  | 'wrong-bucket'
  | 'wrong-samples'
  | 'nan-gradient'
  | 'oversized-gradient'
  | 'wrong-size-weights'
  | 'wrong-checksum';

/** The documented close code each lie must get (docs/protocol.md); a wrong checksum is a divergence, not a close. */
export const CLOSE_FOR_LIE: Partial<Record<InJobLie, string>> = {
  'wrong-step': 'UNKNOWN_STEP',
  'wrong-bucket': 'MALFORMED_FRAME',
  'wrong-samples': 'MALFORMED_FRAME',
  'nan-gradient': 'NON_FINITE_GRADIENT',
  'oversized-gradient': 'GRADIENT_SIZE_MISMATCH',
  'wrong-size-weights': 'TRANSFER_MISMATCH',
};

/** The weights hash a `wrong-checksum` liar reports: no replica's weights hash to it. */
const WRONG_HASH = '0'.repeat(64);

/** Floats the lying peer adds to a bucket to make it oversized. */
const OVERSIZE_FLOATS = 1024;

/**
 * A peer speaking the protocol by hand that joins a training job as a real worker would
 * (`ready` with the dataset's counts, then `train` slices) and then lies in-job. Until
 * its lie is due (`wrong-size-weights` waits to be asked for weights, `wrong-checksum` for
 * an update that asks for checksums) it answers `train` with a well-formed zero gradient,
 * which no coordinator can tell from a real one.
 */
export class LyingWorker {
  readonly raw: RawWorker;
  /** Resolves with the close code and reason the coordinator chose. */
  readonly closed: Promise<Closed>;
  /** Steps it trained in (answered honestly in form) before lying. */
  stepsAnswered = 0;
  lied = false;

  constructor(
    wsUrl: string,
    readonly lie: InJobLie,
    counts: { trainCount: number; testCount: number },
  ) {
    this.raw = new RawWorker(wsUrl);
    this.closed = this.raw.closed;
    let plan: BucketPlan | undefined;
    this.raw.onMessage = (msg, payload) => {
      if (this.raw.ws.readyState !== this.raw.ws.OPEN) return;
      if (msg.t === 'job-start') {
        const params = msg.layout.reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
        plan = new BucketPlan(params, msg.spec['bucketBytes'] as number);
        this.raw.send({ t: 'ready', jobId: msg.jobId, ...counts });
      } else if (msg.t === 'train' && plan) {
        this.answerTrain(msg.jobId, msg.step, payload.byteLength / 4, plan);
      } else if (msg.t === 'update' && msg.checksum && this.lie === 'wrong-checksum' && plan) {
        if (msg.bucket + 1 < plan.count) return;
        this.lied = true;
        this.raw.send({ t: 'checksum', jobId: msg.jobId, step: msg.step, hash: WRONG_HASH, sum: 0 });
      } else if (msg.t === 'fetch-weights' && this.lie === 'wrong-size-weights') {
        this.lied = true;
        const state = { transfer: 1, bytes: 28, chunkBytes: 1024 };
        this.raw.send({ t: 'weights', jobId: msg.jobId, requestId: msg.requestId, state });
        this.raw.send({ t: 'state-chunk', transfer: 1, index: 0 }, new Float32Array(7));
      }
    };
  }

  async join(): Promise<void> {
    await this.raw.hello(`liar-${this.lie}`);
  }

  private answerTrain(jobId: string, step: number, samples: number, plan: BucketPlan): void {
    const header = { t: 'gradient' as const, jobId, step, bucket: 0, samples, lossSum: 0, correct: 0, computeMs: 1 };
    const bucket = (b: number) => new Float32Array(plan.length(b));
    if (this.lie === 'wrong-size-weights' || this.lie === 'wrong-checksum') {
      for (let b = 0; b < plan.count; b++) this.raw.send({ ...header, bucket: b }, bucket(b));
      this.stepsAnswered++;
      return;
    }
    this.lied = true;
    switch (this.lie) {
      case 'wrong-step':
        return this.raw.send({ ...header, step: step + 1 }, bucket(0));
      case 'wrong-bucket':
        return this.raw.send({ ...header, bucket: plan.count }, bucket(0));
      case 'wrong-samples':
        return this.raw.send({ ...header, samples: samples + 1 }, bucket(0));
      case 'nan-gradient': {
        const values = bucket(0);
        values[values.length >> 1] = Number.NaN;
        return this.raw.send(header, values);
      }
      case 'oversized-gradient':
        return this.raw.send(header, new Float32Array(plan.length(0) + OVERSIZE_FLOATS));
    }
  }

  close(): void {
    this.raw.ws.close();
  }
}
