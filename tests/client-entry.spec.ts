import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cluster.js';

/**
 * A module hook that refuses to resolve any `@tensorflow/*` package: importing a module
 * under it fails as soon as anything on the import graph reaches for TensorFlow.js.
 */
const hooks = `export async function resolve(s, c, next) {
  if (s.startsWith('@tensorflow/')) throw new Error('TFJS_LOADED ' + s);
  return next(s, c);
}`;
const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;

function importUnderHook(file: string): { status: number | null; out: string } {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      `data:text/javascript,${encodeURIComponent(register)}`,
      '-e',
      `await import(${JSON.stringify(file)})`,
      '--input-type=module',
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('@gradfleet/core/client loads no TensorFlow.js', () => {
  it('imports the client entry with TensorFlow.js unresolvable; the main entry fails the same way (the hook works)', () => {
    const client = importUnderHook(join(ROOT, 'libs/core/dist/client/index.js'));
    expect(client.status, client.out).toBe(0);
    const main = importUnderHook(join(ROOT, 'libs/core/dist/index.js'));
    expect(main.status).not.toBe(0);
    expect(main.out).toMatch(/TFJS_LOADED @tensorflow\//);
  });

  it('the CLI starts without TensorFlow.js for client commands (gradfleet --help)', () => {
    const cli = importUnderHook(join(ROOT, 'apps/cli/dist/main.js'));
    expect(cli.out).not.toMatch(/TFJS_LOADED/);
  });
});
