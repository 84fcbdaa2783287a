/**
 * Deadlines for benchmark runs: a run that hangs fails with a diagnosis instead of
 * hanging the whole `npm run bench`. Every child process registered with `reap` is
 * SIGKILLed when the bench process exits (SIGTERM included).
 */
const reapers: (() => void)[] = [];
process.on('exit', () => {
  for (const kill of reapers) kill();
});
// `npm run bench` stops a suite past its deadline with SIGTERM: exit, so the reapers run.
process.once('SIGTERM', () => process.exit(143));

/** Kills `kill`'s target when this process exits (a watchdog failure included). */
export function reap(kill: () => void): void {
  reapers.push(kill);
}

/**
 * Resolves as `p`, or rejects after `ms` with `what`, plus whatever `diagnose` finds out
 * (where the run stands), so a hang is reported precisely instead of waited on forever.
 */
export async function withDeadline<T>(
  what: string,
  p: Promise<T>,
  ms: number,
  diagnose: () => Promise<string> = async () => '',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void diagnose()
        .catch((err: Error) => `(diagnosis failed: ${err.message})`)
        .then((d) => reject(new Error(`watchdog: ${what} did not finish within ${ms / 1000} s\n${d}`)));
    }, ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}
