import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const core = fileURLToPath(new URL('./libs/core/src/index.ts', import.meta.url));
const dataplane = fileURLToPath(new URL('./libs/core/src/dataplane/index.ts', import.meta.url));
const client = fileURLToPath(new URL('./libs/core/src/client/index.ts', import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@gradfleet\/core$/, replacement: core },
      { find: /^@gradfleet\/core\/dataplane$/, replacement: dataplane },
      { find: /^@gradfleet\/core\/client$/, replacement: client },
    ],
  },
  test: {
    // One JSON report per vitest process, summed by .ci/summary.mjs into CI's closing line.
    reporters: ['default', 'json'],
    outputFile: { json: `.vitest-reports/${process.pid}.json` },
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['libs/*/src/**/*.spec.ts', 'apps/*/src/**/*.spec.ts'], testTimeout: 30_000 },
      },
      {
        extends: true,
        test: {
          name: 'cross-process',
          include: ['tests/**/*.spec.ts'],
          testTimeout: 240_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
