/**
 * Suites that need something of the machine (root, a system tool) skip where it is missing on a
 * developer's machine, but never in CI: there a skip would turn a missing install step into a
 * green run, so the suite fails instead and names what is missing.
 */
export function skipUnlessAvailable(suite: string, missing: string | undefined): boolean {
  if (missing === undefined) return false;
  if (process.env['CI']) throw new Error(`${suite} cannot run in CI: ${missing}. .ci/run must install it.`);
  return true;
}
