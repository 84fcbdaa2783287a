import { createHash, type Hash } from 'node:crypto';

/**
 * Running hash of the update bytes a replica applied (worker) or that the coordinator sent
 * (reference), over a window of steps `[from, to]`: each encoded update bucket is hashed
 * (SHA-256), a step's digest is the SHA-256 of its bucket digests in bucket order, and the
 * step digests are chained, `chain = SHA-256(chain || digest(step))`, starting from an
 * empty chain at `from`. Hashing buckets one by one lets a side that receives them in any
 * order (data-plane replicas, from several shards) or produces them in several places
 * (the reducer shards) compute the same chain.
 *
 * Both sides compute it the same way, so a replica whose chain differs from the
 * coordinator's applied different bytes than were sent: it is the faulty one when replica
 * weights disagree (docs/fault-tolerance.md, "Replica checks").
 */
export class UpdateStreamHash {
  private step: Hash | undefined;
  private chain: Buffer = Buffer.alloc(0);
  /** First step of the current window; undefined while nothing was hashed since the last `take()`. */
  private first: number | undefined;

  /** Adds one bucket of step `step`'s update (buckets in order, bucket 0 first). */
  add(step: number, bucket: number, bytes: Uint8Array): void {
    this.addDigest(step, bucket, bucketDigest(bytes));
  }

  /** Adds the digest (`bucketDigest`) of one bucket of step `step`'s update (buckets in order). */
  addDigest(step: number, bucket: number, digest: Uint8Array): void {
    if (bucket === 0 || !this.step) this.step = createHash('sha256');
    this.step.update(digest);
    this.first ??= step;
  }

  /** Closes the current step (after its last bucket); returns its digest. */
  endStep(): Buffer {
    const digest = (this.step ?? createHash('sha256')).digest();
    this.step = undefined;
    this.chain = chainDigest(this.chain, digest);
    return digest;
  }

  /** The window's chain and first step, then starts a new window. Undefined when the window is empty. */
  take(): { from: number; hash: string } | undefined {
    const out = this.first === undefined ? undefined : { from: this.first, hash: this.chain.toString('hex') };
    this.reset();
    return out;
  }

  /** Forgets the window (the replica took a new state: `job-start`, `load-state`). */
  reset(): void {
    this.step = undefined;
    this.chain = Buffer.alloc(0);
    this.first = undefined;
  }
}

/** SHA-256 of one encoded update bucket. */
export function bucketDigest(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** One link of the chain: SHA-256 of the chain so far followed by a step digest. */
export function chainDigest(chain: Buffer, stepDigest: Buffer): Buffer {
  return createHash('sha256').update(chain).update(stepDigest).digest();
}
