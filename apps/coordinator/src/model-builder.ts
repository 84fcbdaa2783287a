import { Worker } from 'node:worker_threads';
import { InvalidJobSpecError, type FieldIssue, type JobSpec } from '@gradfleet/core';
import type { PreparedDataset } from './dataset-ingest.js';
import type { InitialArtifact, ModelInfo } from './model-info.js';

type DataShape = Pick<PreparedDataset, 'featureShape' | 'numClasses'>;
export type ModelBuildReply = {
  id: number;
  info?: ModelInfo;
  /** `check` only: the model's trainable parameters (its weights stay in the thread and are dropped). */
  params?: number;
  issues?: FieldIssue[];
  error?: string;
};

/**
 * Builds job models (`describeModel`) on a worker thread: constructing a large model and
 * drawing its seeded initial weights takes seconds of synchronous TF.js work (1.5 s for
 * 25 M parameters here), which on the main thread would stall every socket, heartbeat and
 * running step for that long. The thread starts with the coordinator and is reused.
 */
export class ModelBuilder {
  private worker: Worker | undefined;
  /**
   * @param heapMb JS heap of the thread, in MiB (`--model-build-heap-mb`): a topology whose
   * build outgrows it ends that thread only (the job is refused on `model`, the next build
   * starts a fresh thread). Weights live outside the JS heap; `maxParams` bounds them before
   * anything is built.
   */
  constructor(private readonly heapMb = 2048) {}

  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: ModelBuildReply) => void; reject: (e: Error) => void }>();

  /** Starts the thread now (loading TF.js there takes a moment), so the first job does not wait for it. */
  warm(): void {
    this.worker ??= this.start();
  }

  /**
   * Builds the job's model and brings back its initial weights (when the job starts); a
   * topology over `maxParams` weights is refused before it is built.
   */
  async describe(spec: JobSpec, data?: DataShape, maxParams?: number, initial?: InitialArtifact): Promise<ModelInfo> {
    return (await this.request(spec, data, maxParams, false, initial)).info!;
  }

  /**
   * Validates the job's model against its data (at submission) and answers its trainable
   * parameters; the weights drawn stay in the thread and are dropped, so a queued job holds
   * no model.
   */
  async check(spec: JobSpec, data?: DataShape, maxParams?: number, initial?: InitialArtifact): Promise<number> {
    return (await this.request(spec, data, maxParams, true, initial)).params!;
  }

  private request(
    spec: JobSpec,
    data: DataShape | undefined,
    maxParams: number | undefined,
    check: boolean,
    initial?: InitialArtifact,
  ) {
    const worker = (this.worker ??= this.start());
    const id = this.nextId++;
    return new Promise<ModelBuildReply>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({
        id,
        spec,
        data: data ? { featureShape: data.featureShape, numClasses: data.numClasses } : undefined,
        maxParams,
        check,
        initial,
      });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }

  private start(): Worker {
    const worker = new Worker(new URL('./model-builder-thread.js', import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: this.heapMb },
    });
    worker.unref(); // never keeps the coordinator alive
    worker.on('message', (r: ModelBuildReply) => {
      const w = this.waiting.get(r.id);
      if (!w) return;
      this.waiting.delete(r.id);
      if (r.info || r.params !== undefined) w.resolve(r);
      else if (r.issues) w.reject(new InvalidJobSpecError(r.issues));
      else w.reject(new Error(r.error ?? 'model build failed'));
    });
    const fail = (why: string) => {
      if (this.worker === worker) this.worker = undefined; // the next request starts a fresh thread
      for (const w of this.waiting.values()) w.reject(new Error(`model builder thread ${why}`));
      this.waiting.clear();
    };
    worker.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ERR_WORKER_OUT_OF_MEMORY') return fail(`failed: ${err.message}`);
      if (this.worker === worker) this.worker = undefined;
      const issue = {
        path: 'model',
        message: `building the model outgrew the model builder's ${this.heapMb} MiB heap (--model-build-heap-mb); make the topology smaller`,
      };
      for (const w of this.waiting.values()) w.reject(new InvalidJobSpecError([issue]));
      this.waiting.clear();
    });
    worker.on('exit', (code) => fail(`exited (${code})`));
    return worker;
  }
}
