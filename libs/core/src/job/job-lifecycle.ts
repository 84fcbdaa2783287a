import type { JobState } from './job-status.js';

/**
 * The legal transitions of a job (docs/architecture.md, "Job lifecycle"): for each state,
 * the states it may move to. Terminal states move nowhere. `PAUSED → PAUSED` records a new
 * reason (a job paused in place that then loses its last worker).
 */
export const JOB_TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  /** Workers assigned; or cancelled before it ever ran. */
  QUEUED: ['RUNNING', 'CANCELLED'],
  /** Lost workers or its coordinator (pauses); or ends. */
  RUNNING: ['PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED'],
  /** Resumes; a new pause reason; or ends without running again. */
  PAUSED: ['RUNNING', 'PAUSED', 'FAILED', 'CANCELLED'],
  SUCCEEDED: [],
  FAILED: [],
  CANCELLED: [],
};

/** A job was asked to move between two states that `JOB_TRANSITIONS` does not connect (a bug, not a user error). */
export class IllegalTransitionError extends Error {
  readonly code = 'ILLEGAL_TRANSITION';

  constructor(
    readonly from: JobState,
    readonly to: JobState,
    readonly jobId: string,
  ) {
    super(
      `job ${jobId}: illegal transition ${from} → ${to} (allowed from ${from}: ${JOB_TRANSITIONS[from].join(', ') || 'none, it has ended'})`,
    );
    this.name = 'IllegalTransitionError';
  }
}

export function canTransition(from: JobState, to: JobState): boolean {
  return JOB_TRANSITIONS[from].includes(to);
}

/** Throws `IllegalTransitionError` unless `from → to` is in `JOB_TRANSITIONS`. */
export function assertTransition(jobId: string, from: JobState, to: JobState): void {
  if (!canTransition(from, to)) throw new IllegalTransitionError(from, to, jobId);
}
