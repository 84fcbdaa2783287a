import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '@gradfleet/core';
import { WorkerMetrics } from './worker-metrics.js';

describe('worker metrics', () => {
  it('registers exactly the metrics catalogued in docs/metrics.md and serves them', async () => {
    await selectBackend('cpu');
    const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');
    const section = doc.split(/^## /m).find((s) => s.startsWith('Worker'))!;
    const catalogued = [...section.matchAll(/^\| `(gradfleet_[a-z_]+)` +\|/gm)].map((m) => m[1]!).sort();
    const m = new WorkerMetrics('w', { backend: 'cpu', provider: 'p', device: 'd', reason: 'r' });
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name);
    expect(names.filter((n) => n.startsWith('gradfleet_')).sort()).toEqual(catalogued);
    const port = await m.serve(0, '127.0.0.1');
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    m.close();
    expect(text).toMatch(/gradfleet_replica_info\{name="w",host="[^"]+",backend="cpu",provider="p",device="d"\} 1/);
    expect(text).toMatch(/gradfleet_replica_backend_tensors \d+/);
  });

  it('binds loopback unless told otherwise (--metrics-host)', async () => {
    const m = new WorkerMetrics('w', { backend: 'cpu', provider: 'p', device: 'd', reason: 'r' });
    await m.serve(0);
    const address = (m as unknown as { server: { address(): { address: string } } }).server.address().address;
    m.close();
    expect(address).toBe('127.0.0.1');
  });
});
