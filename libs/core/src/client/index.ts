/**
 * `@gradfleet/core/client`: what a program that talks to a coordinator needs (the TypeScript
 * client, job spec and status types, terminal-safe text), without loading TensorFlow.js or
 * any of the training code: the CLI and user scripts start in milliseconds.
 * `tests/client-entry.spec.ts` fails if anything here pulls in `@tensorflow/*`.
 */
export { ApiError, GradfleetClient, type GradfleetClientOptions } from './gradfleet-client.js';
export { parseJobSpec, InvalidJobSpecError, type JobSpec, type JobSpecInput } from '../job/job-spec.js';
export {
  JOB_STATES,
  TERMINAL_STATES,
  type EpochResult,
  type JobState,
  type JobStatus,
  type JobSummary,
  summarizeJob,
  type WorkerInfo,
  type WorkerStats,
} from '../job/job-status.js';
export type { CheckpointInfo } from '../job/checkpoint-info.js';
export type {
  DatasetInfo,
  DatasetState,
  IngestProgress,
  IngestRequestInput,
  IngestSource,
} from '../data/ingest-request.js';
export { printable } from '../protocol/printable.js';
/** Allocator settings the CLI passes to the coordinator and worker processes it launches. */
export { ALLOCATOR_ENV } from '../protocol/constants.js';
