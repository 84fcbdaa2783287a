import { MAX_PREFETCH_CHUNKS, type EpochSampler } from '@gradfleet/core';
import type { WorkerConnection } from './worker-connection.js';

/** Steps ahead a chunked-dataset job tells its workers about: the next two batches. */
export const PREFETCH_STEPS = 2;

/**
 * Plans ahead for a job on a chunked dataset: after each step's slices are sent, the next
 * `PREFETCH_STEPS` batches are peeked from the sampler (nothing is handed out) and split as
 * they would be with today's members and weights; each worker is told the chunks of its
 * predicted slices it was not told of last time (`prefetch`), and fetches them while it
 * computes. A member change makes a plan wrong, never a step: steps train on their `train`
 * slices, and a mispredicted chunk costs one fetch.
 */
export class PrefetchPlanner {
  private hinted = new Map<WorkerConnection, Set<number>>();

  constructor(
    private readonly jobId: string,
    private readonly chunkExamples: number,
  ) {}

  plan(sampler: EpochSampler, batchSize: number, members: readonly WorkerConnection[], weights: number[]): void {
    const ahead = sampler.peek(PREFETCH_STEPS * batchSize);
    const want = members.map(() => new Set<number>());
    for (let at = 0; at < ahead.length; at += batchSize)
      sampler.split(ahead.subarray(at, at + batchSize), weights).forEach((slice, i) => {
        for (const idx of slice) want[i]!.add(Math.floor(idx / this.chunkExamples));
      });
    const next = new Map<WorkerConnection, Set<number>>();
    members.forEach((m, i) => {
      const before = this.hinted.get(m);
      const fresh = [...want[i]!].filter((c) => !before?.has(c)).slice(0, MAX_PREFETCH_CHUNKS);
      next.set(m, want[i]!);
      if (fresh.length > 0) m.send({ t: 'prefetch', jobId: this.jobId, chunks: fresh });
    });
    this.hinted = next;
  }
}
