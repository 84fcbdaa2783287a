import { execFileSync } from 'node:child_process';

/** Installs Debian's `pkg` when `binary` is missing (CI and test machines run as root). */
export function ensureDebianPackage(binary: string, pkg: string, versionArgs = ['--version']): void {
  try {
    execFileSync(binary, versionArgs, { stdio: 'ignore' });
    return;
  } catch {
    // not installed
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], { stdio: 'inherit', env });
}
