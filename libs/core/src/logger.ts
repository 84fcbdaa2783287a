import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stderr (stdout stays free for program output). Level from
 * `GRADFLEET_LOG_LEVEL` (default `info`).
 */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    { name, level: process.env['GRADFLEET_LOG_LEVEL'] ?? 'info', base: { pid: process.pid, ...bindings } },
    pino.destination(2),
  );
}
