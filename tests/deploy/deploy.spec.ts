import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { ROOT } from '../helpers/cluster.js';
import { ensureDebianPackage } from '../helpers/apt.js';
import { generatedManifests } from './k8s-generated.js';

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; spec?: Record<string, unknown> };

/** The Kubernetes OpenAPI schemas (kubernetes-models, Prometheus Operator CRDs) by kind. */
const MODELS: Record<string, new (m: never) => { validate(): void }> = {
  Namespace,
  Deployment,
  Service,
  PersistentVolumeClaim,
  Secret,
  ConfigMap,
  ServiceMonitor,
  PodMonitor,
  PrometheusRule,
};

function validate(m: Manifest): void {
  const Model = MODELS[m.kind];
  if (!Model) throw new Error(`no schema for ${m.apiVersion} ${m.kind}`);
  new Model(m as never).validate();
}

/** `kubectl kustomize deploy/k8s`, rendered offline from a copy holding the example tokens. */
function renderKustomize(): Manifest[] {
  const dir = mkdtempSync(join(tmpdir(), 'gradfleet-k8s-'));
  cpSync(join(ROOT, 'deploy'), dir, { recursive: true });
  cpSync(join(dir, 'k8s/tokens.env.example'), join(dir, 'k8s/tokens.env'));
  const out = execFileSync('kubectl', ['kustomize', join(dir, 'k8s')], { encoding: 'utf8' });
  return parseAllDocuments(out).map((d) => d.toJS() as Manifest);
}

type Container = {
  name: string;
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
};

describe('deploy/k8s (kustomize) and deploy/compose', () => {
  it('the generated dashboard ConfigMap and PrometheusRule match their sources', () => {
    for (const [file, text] of Object.entries(generatedManifests())) {
      expect(
        readFileSync(join(ROOT, 'deploy/k8s', file), 'utf8'),
        `${file} is stale: run npx tsx tests/deploy/k8s-generated.ts`,
      ).toBe(text);
    }
  });

  it('kustomize renders manifests that pass the Kubernetes schemas, with probes, resources and a GPU request', () => {
    const docs = renderKustomize();
    for (const m of docs) expect(() => validate(m), `${m.kind}/${m.metadata.name}`).not.toThrow();
    expect(docs.map((m) => m.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'Deployment',
      'Namespace',
      'PersistentVolumeClaim',
      'PodMonitor',
      'PrometheusRule',
      'Secret',
      'Service',
      'ServiceMonitor',
    ]);
    const deployments = docs.filter((m) => m.kind === 'Deployment');
    for (const d of deployments) {
      const pod = (
        d.spec!['template'] as { spec: { containers: Container[]; securityContext: { runAsNonRoot: boolean } } }
      ).spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      for (const c of pod.containers) {
        expect(c.resources?.requests, `${d.metadata.name} requests`).toBeDefined();
        expect(c.resources?.limits, `${d.metadata.name} limits`).toBeDefined();
        expect(c.readinessProbe?.httpGet?.path).toBe('/readyz'); // served by coordinator and worker
        expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
      }
    }
    const worker = deployments.find((d) => d.metadata.name === 'gradfleet-worker-gpu')!;
    const wc = (worker.spec!['template'] as { spec: { containers: Container[] } }).spec.containers[0]!;
    expect(wc.resources!.limits!['nvidia.com/gpu']).toBe(1);
    // The Secret comes from the generator (hashed name) and both deployments reference that name.
    const secret = docs.find((m) => m.kind === 'Secret')!;
    expect(secret.metadata.name).toMatch(/^gradfleet-tokens-/);
    expect(JSON.stringify(deployments)).toContain(secret.metadata.name);
  });

  it('the schema check is not vacuous: a wrong type is refused', () => {
    const broken = renderKustomize().find((m) => m.kind === 'Deployment')!;
    (
      broken.spec!['template'] as { spec: { containers: { ports: { containerPort: unknown }[] }[] } }
    ).spec.containers[0]!.ports[0]!.containerPort = 'seventy';
    expect(() => validate(broken)).toThrow(/containerPort/);
  });

  it('docker-compose config accepts the compose file, its commented GPU worker included', () => {
    ensureDebianPackage('docker-compose', 'docker-compose', ['version']);
    const dir = join(ROOT, 'deploy/compose');
    const config = (file: string) =>
      execFileSync('docker-compose', ['--env-file', join(dir, '.env.example'), '-f', file, 'config'], {
        cwd: dir,
        encoding: 'utf8',
      });
    const rendered = config(join(dir, 'docker-compose.yml'));
    for (const s of ['coordinator:', 'worker-1:', 'worker-2:', 'prometheus:', 'grafana:', 'coordinator-data:'])
      expect(rendered).toContain(s);
    expect(rendered).toMatch(/prometheus\/alerts\.yml:\/etc\/prometheus\/alerts\.yml:ro/);
    // Uncomment the GPU worker and check it too.
    const source = readFileSync(join(dir, 'docker-compose.yml'), 'utf8');
    const start = source.indexOf('  # worker-gpu:');
    const end = source.indexOf('\n\n', start);
    const withGpu =
      source.slice(0, start) +
      source
        .slice(start, end)
        .replace(/^ {2}# ?/gm, '  ')
        .replace(/^ {2}worker-gpu/m, '  worker-gpu') +
      source.slice(end);
    const file = join(dir, '.docker-compose.gpu-check.yml');
    writeFileSync(file, withGpu);
    try {
      const gpu = config(file);
      expect(gpu).toMatch(/capabilities:\s*\n\s*- gpu/);
      expect(gpu).toContain('driver: nvidia');
    } finally {
      execFileSync('rm', ['-f', file]);
    }
  });
});
