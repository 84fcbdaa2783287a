/**
 * Exit codes of `gradfleet worker`. The GPU supervisor (`--gpus`) restarts a worker only
 * after `CRASHED` (or a signal); the others are configuration or environment failures that
 * a restart cannot fix, so it stops and reports them instead of restarting forever.
 */
export const EXIT_CODES = {
  OK: 0,
  /** An unexpected failure: a restart may help. */
  CRASHED: 1,
  /** Refused by the coordinator (wrong token, protocol version), or no such GPU / no nvidia-smi. */
  REFUSED: 2,
  /** The requested backend (`--backend tensorflow` or `wasm`) cannot be loaded on this machine. */
  BACKEND_UNAVAILABLE: 3,
  /** Bad configuration: an unreadable `--token-file` or `--ca`. */
  CONFIG: 4,
} as const;

/** Exit codes after which restarting cannot help, with what they mean (for the supervisor's log). */
export const FATAL_EXIT_REASONS: ReadonlyMap<number, string> = new Map([
  [EXIT_CODES.REFUSED, 'was refused by the coordinator (wrong token, protocol version)'],
  [EXIT_CODES.BACKEND_UNAVAILABLE, 'cannot load the requested backend'],
  [EXIT_CODES.CONFIG, 'has a configuration error (--token-file, --ca)'],
]);
