import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const core = fileURLToPath(new URL('./libs/core/src/index.ts', import.meta.url));

export default defineConfig({
  resolve: { alias: { '@gradfleet/core': core } },
  test: {
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
