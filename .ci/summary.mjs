// Sums the JSON reports every vitest run wrote (see vitest.config.ts) into one closing line.
import { readFileSync, readdirSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;
let files = [];
try {
  files = readdirSync('.vitest-reports').filter((f) => f.endsWith('.json'));
} catch {
  // no report: no test ran
}
for (const f of files) {
  const r = JSON.parse(readFileSync(`.vitest-reports/${f}`, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
// In CI nothing may skip: a skipped suite is a missing install step (tests/helpers/requirements.ts).
if (process.env.CI && skipped > 0) console.log(`${skipped} tests skipped in CI: each names what is missing`);
process.exit(failed > 0 || passed === 0 || (process.env.CI && skipped > 0) ? 1 : 0);
