/**
 * A level-free wake-up: the job loop awaits `wait(ms)` and message handlers call `notify()`
 * after changing state; the loop then re-checks its condition. Every wait has a deadline.
 */
export class Signal {
  private resolve: ((timedOut: boolean) => void) | undefined;

  /** Resolves true when `ms` passed without a notify. */
  wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.resolve = undefined;
          resolve(true);
        },
        Math.max(0, ms),
      );
      this.resolve = (timedOut) => {
        clearTimeout(timer);
        resolve(timedOut);
      };
    });
  }

  notify(): void {
    const r = this.resolve;
    this.resolve = undefined;
    r?.(false);
  }
}
