import { printable } from '@gradfleet/core/client';

/**
 * Text from a coordinator (job names, reasons, log lines, worker names) made safe for a
 * terminal: every control character but the line breaks this CLI writes itself is shown
 * as `\u{..}`, so a job or worker name cannot move the cursor, recolour or rewrite output.
 */
export function terminalSafe(text: string): string {
  return text.split('\n').map(printable).join('\n');
}

/** `console.log` of terminal-safe text. */
export function print(text: string): void {
  console.log(terminalSafe(text));
}

/** `console.error` of terminal-safe text. */
export function printError(text: string): void {
  console.error(terminalSafe(text));
}
