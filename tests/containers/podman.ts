import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GenericContainer } from 'testcontainers';
import { ROOT } from '../helpers/cluster.js';

/**
 * Real containers on a machine with no Docker engine: podman serving the Docker API
 * (tests/containers/setup-podman.sh, a copy of shared/containers/setup-podman.sh: local
 * Debian images, no registry, Ryuk off). Sets DOCKER_HOST and friends for testcontainers
 * unless a container engine is already configured.
 */
export function ensureContainerEngine(): void {
  if (process.env['DOCKER_HOST']) return;
  const script = join(ROOT, 'tests', 'containers', 'setup-podman.sh');
  const out = execFileSync('bash', [script], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  });
  for (const m of out.matchAll(/([A-Z_]+)=(\S+)/g)) process.env[m[1]!] = m[2]!;
  if (!process.env['DOCKER_HOST']) throw new Error(`setup-podman.sh printed no DOCKER_HOST:\n${out}`);
}

/** Runs the podman CLI (pause, network disconnect: what the Docker API client lacks here). */
export function podman(...args: string[]): string {
  return execFileSync('podman', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export const IMAGES = {
  artifacts: 'localhost/gradfleet-artifacts:test',
  coordinator: 'localhost/gradfleet-coordinator:test',
  worker: 'localhost/gradfleet-worker:test',
  node: 'localhost/debian-node',
  prometheus: 'localhost/prometheus',
};

/**
 * Builds the project's images from deploy/docker/Dockerfile on the local Debian base. The
 * builder stage (npm ci, nx build) is swapped for an image of this workspace's own build
 * output and production dependencies (ARTIFACTS build arg): same runtime stages, no registry.
 */
export async function buildImages(): Promise<void> {
  const stage = mkdtempSync(join(tmpdir(), 'gradfleet-artifacts-'));
  const app = join(stage, 'app');
  const copy = (rel: string) => {
    mkdirSync(dirname(join(app, rel)), { recursive: true });
    cpSync(join(ROOT, rel), join(app, rel), { recursive: true, verbatimSymlinks: true });
  };
  for (const f of ['package.json', 'package-lock.json', 'libs/core/package.json', 'libs/core/dist']) copy(f);
  for (const a of ['coordinator', 'worker', 'cli']) for (const f of ['package.json', 'dist']) copy(`apps/${a}/${f}`);
  const prod = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  }).split('\n');
  const tops = new Set(
    prod
      .map((p) => /^.*?(node_modules\/(?:@[^/]+\/)?[^/]+)/.exec(p.slice(ROOT.length + 1))?.[1])
      .filter((p): p is string => !!p),
  );
  for (const t of [...tops, 'node_modules/@gradfleet']) if (existsSync(join(ROOT, t))) copy(t);
  writeFileSync(join(stage, 'Containerfile'), 'FROM scratch\nCOPY app /app\n');
  await GenericContainer.fromDockerfile(stage, 'Containerfile').build(IMAGES.artifacts, { deleteOnExit: false });
  const args = { NODE_IMAGE: IMAGES.node, ARTIFACTS: IMAGES.artifacts };
  for (const target of ['coordinator', 'worker'] as const) {
    await GenericContainer.fromDockerfile(ROOT, 'deploy/docker/Dockerfile')
      .withBuildArgs(args)
      .withTarget(target)
      .build(IMAGES[target], { deleteOnExit: false });
  }
}
