#!/usr/bin/env node
// The `gradfleet` bin. npm links bins at install time, before anything is built, so the
// linked file must be committed: this launcher loads the compiled CLI and, when it is not
// built yet, says what to run instead of failing with "could not determine executable".
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write(
    'gradfleet: the CLI is not built yet. Run `npm run build` (or `npm start`) in the repository, then try again.\n',
  );
  process.exit(1);
}
await import(main);
