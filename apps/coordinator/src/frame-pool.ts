import { FrameWriter } from '@gradfleet/core';

/**
 * Recycles the averaged-gradient frames of a job. A frame goes back to the pool once every
 * socket it was sent to has written it out, so steady state allocates nothing per step
 * (fresh 100 MB allocations are what make large messages crawl) and a slow reader holds
 * at most its own frames.
 */
export class FramePool {
  private readonly free: FrameWriter[] = [];

  constructor(private readonly payloadBytes: number) {}

  acquire(): FrameWriter {
    return this.free.pop() ?? new FrameWriter(this.payloadBytes);
  }

  /** Returns a callback to pass to `n` sends; the frame is recycled after the n-th call. */
  releaseAfter(writer: FrameWriter, n: number): () => void {
    let left = n;
    if (left === 0) this.free.push(writer);
    return () => {
      if (--left === 0) this.free.push(writer);
    };
  }

  /** Gives a frame back without sending it. */
  release(writer: FrameWriter): void {
    this.free.push(writer);
  }
}
