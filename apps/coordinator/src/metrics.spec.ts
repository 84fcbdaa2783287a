import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CoordinatorMetrics } from './metrics.js';

/** Metric names in the table under `## heading` of docs/metrics.md. */
function catalogue(heading: string): string[] {
  const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith(heading));
  if (!section) throw new Error(`no section ${heading} in docs/metrics.md`);
  return [...section.matchAll(/^\| `(gradfleet_[a-z_]+)` +\|/gm)].map((m) => m[1]!).sort();
}

describe('coordinator metrics', () => {
  it('registers exactly the metrics catalogued in docs/metrics.md', async () => {
    const m = new CoordinatorMetrics();
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name);
    expect(names.filter((n) => n.startsWith('gradfleet_')).sort()).toEqual(catalogue('Coordinator'));
    expect(names.filter((n) => !n.startsWith('gradfleet_')).every((n) => /^(process|nodejs)_/.test(n))).toBe(true);
  });
});
