import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradfleetClient, buildModel, maxRelativeDifference, selectBackend, type JobSpecInput } from '@gradfleet/core';
import { refusal } from './helpers/api.js';
import { modelWeightsByName, saveToDir, weightsByName } from './helpers/artifacts.js';
import { ROOT, TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';

/**
 * Fine-tuning across processes (docs/api.md, "Fine-tuning"): a job starts from another job's
 * final weights or from an uploaded TensorFlow.js artifact, with some layers frozen; and
 * every documented refusal of `initialModel` and `trainableLayers`.
 */

const TOKENS = { alice: 'alice-token-0123456789abcdef', bob: 'bob-token-0123456789abcdef' };
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const sha256 = (t: string) => createHash('sha256').update(t).digest('hex');
const SEED = 7;

/** A 784-16-10 MLP with named layers `hidden` and `out` (`units`: the output width). */
function topology(units = 10): Record<string, unknown> {
  const m = tfl.sequential({
    layers: [
      tfl.layers.dense({ name: 'hidden', inputShape: [784], units: 16, activation: 'relu' }),
      tfl.layers.dense({ name: 'out', units, activation: 'softmax' }),
    ],
  });
  const json = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  return json;
}

/** The CLI's exit code, stdout and stderr. */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'apps/cli/dist/main.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

const bitEqual = (a: Float32Array, b: Float32Array) =>
  Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer)) === 0;

describe('fine-tuning: initialModel and trainableLayers', () => {
  const cluster = new TestCluster();
  let alice: GradfleetClient;
  let bob: GradfleetClient;
  let data: SmallMnist;
  let seeded: Map<string, Float32Array>;
  /** alice's finished job, its weights by name. */
  let jobA: string;
  let finalA: Map<string, Float32Array>;

  const spec = (more: JobSpecInput = {}): JobSpecInput => ({
    model: { topology: topology() },
    dataset: data.dataset,
    epochs: 1,
    batchSize: 50,
    validationSplit: 0,
    seed: SEED,
    minWorkers: 2,
    maxWorkers: 2,
    ...more,
  });

  async function train(client: GradfleetClient, s: JobSpecInput): Promise<Map<string, Float32Array>> {
    const done = await client.waitForJob((await client.submit(s)).id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-4000)}`).toBe('SUCCEEDED');
    expect(done.replicas.divergences).toBe(0);
    const { modelJson, weights } = await client.model(done.id);
    return weightsByName(modelJson, weights);
  }

  /** Gradient bytes the coordinator has received, all workers together. */
  async function gradientBytes(): Promise<number> {
    const text = await (await fetch(`${cluster.url}/metrics`)).text();
    return [...text.matchAll(/^gradfleet_gradient_received_bytes_total\{[^}]*\} (\S+)$/gm)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
  }

  beforeAll(async () => {
    await selectBackend('cpu');
    data = await writeSmallMnist(300, 64);
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-finetune-'));
    writeFileSync(join(dir, 'tokens'), `alice ${sha256(TOKENS.alice)} submit\nbob ${sha256(TOKENS.bob)} submit\n`);
    await cluster.startCoordinator(['--api-tokens', join(dir, 'tokens')], 0, { GRADFLEET_API_TOKEN: ADMIN_TOKEN });
    cluster.client = new GradfleetClient({ url: cluster.url, token: ADMIN_TOKEN });
    alice = new GradfleetClient({ url: cluster.url, token: TOKENS.alice });
    bob = new GradfleetClient({ url: cluster.url, token: TOKENS.bob });
    await cluster.startWorkers(2);
    const model = await buildModel({ topology: topology() }, SEED);
    seeded = modelWeightsByName(model);
    model.dispose();
    finalA = await train(alice, spec({ optimizer: 'adam', learningRate: 0.01 }));
    jobA = (await alice.jobs()).find((j) => j.state === 'SUCCEEDED')!.id;
  });
  afterAll(() => cluster.stop());

  it("a job started from another job's weights begins where that job ended", async () => {
    for (const name of ['hidden/kernel', 'out/kernel'])
      expect(maxRelativeDifference(finalA.get(name)!, seeded.get(name)!), name).toBeGreaterThan(1e-2);
    // All layers, a negligible rate: B ends where A ended, far from the seeded initialisation.
    const b = await train(alice, spec({ initialModel: { job: jobA }, optimizer: 'sgd', learningRate: 1e-7 }));
    for (const [name, values] of b) {
      expect(maxRelativeDifference(values, finalA.get(name)!), name).toBeLessThan(1e-3);
      expect(maxRelativeDifference(values, seeded.get(name)!), name).toBeGreaterThan(1e-2);
    }
  });

  it('frozen layers keep the initial weights bit for bit and send no gradient', async () => {
    const before = await gradientBytes();
    const full = await train(alice, spec({ initialModel: { job: jobA }, optimizer: 'sgd', learningRate: 0.1 }));
    const middle = await gradientBytes();
    const tuned = await train(
      alice,
      spec({ initialModel: { job: jobA }, optimizer: 'sgd', learningRate: 0.1, trainableLayers: ['out'] }),
    );
    const after = await gradientBytes();
    for (const name of ['hidden/kernel', 'hidden/bias'])
      expect(bitEqual(tuned.get(name)!, finalA.get(name)!)).toBe(true);
    for (const name of ['out/kernel', 'out/bias'])
      expect(maxRelativeDifference(tuned.get(name)!, finalA.get(name)!), name).toBeGreaterThan(1e-3);
    expect(maxRelativeDifference(full.get('hidden/kernel')!, finalA.get('hidden/kernel')!)).toBeGreaterThan(1e-4);
    // 170 trainable values instead of 12,730: the frozen layer's gradient is not on the wire.
    const fullBytes = middle - before;
    const frozenBytes = after - middle;
    console.log(`gradient bytes received: all layers ${fullBytes}, only 'out' ${frozenBytes}`);
    expect(fullBytes).toBeGreaterThan(6 * 12_730 * 4);
    expect(frozenBytes).toBeLessThan(fullBytes / 10);
  });

  it('starts from an artifact saved by TensorFlow.js and uploaded with gradfleet submit --initial-model-dir', async () => {
    const model = await buildModel({ topology: topology() }, SEED + 100);
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-artifact-'));
    await saveToDir(model, dir);
    const saved = modelWeightsByName(model);
    model.dispose();
    const file = join(dir, 'job.json');
    writeFileSync(file, JSON.stringify(spec({ optimizer: 'sgd', learningRate: 0.1, trainableLayers: ['out'] })));
    const r = await cli([
      'submit',
      file,
      '--initial-model-dir',
      dir,
      '--coordinator',
      cluster.url,
      '--token',
      TOKENS.alice,
      '--json',
    ]);
    expect(r.code, r.err).toBe(0);
    const id = (JSON.parse(r.out) as { id: string; spec: { initialModel: { modelJson: string } } }).id;
    const done = await alice.waitForJob(id);
    expect(done.state, done.reason).toBe('SUCCEEDED');
    expect(done.spec.initialModel).toMatchObject({ modelJson: expect.stringMatching(/^upload:/) });
    const { modelJson, weights } = await alice.model(id);
    const got = weightsByName(modelJson, weights);
    for (const name of ['hidden/kernel', 'hidden/bias'])
      expect(bitEqual(got.get(name)!, saved.get(name)!), name).toBe(true);
    expect(maxRelativeDifference(got.get('hidden/kernel')!, seeded.get('hidden/kernel')!)).toBeGreaterThan(1e-2);
    expect(maxRelativeDifference(got.get('out/kernel')!, saved.get('out/kernel')!)).toBeGreaterThan(1e-3);
    // `--initial-model JOB` names a job.
    const byJob = await cli([
      'submit',
      file,
      '--initial-model',
      jobA,
      '--coordinator',
      cluster.url,
      '--token',
      TOKENS.alice,
      '--json',
    ]);
    expect(byJob.code, byJob.err).toBe(0);
    expect((JSON.parse(byJob.out) as { spec: { initialModel: unknown } }).spec.initialModel).toEqual({ job: jobA });
    await alice.waitForJob((JSON.parse(byJob.out) as { id: string }).id);
  });

  /** An artifact of `topology(units)` with its manifest edited by `edit`, uploaded; answers the `initialModel`. */
  async function upload(
    edit?: (json: Record<string, unknown>) => void,
    units = 10,
    weights?: (w: Buffer) => Buffer,
  ): Promise<{ modelJson: string; weights: string }> {
    const model = await buildModel({ topology: topology(units) }, SEED);
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-artifact-'));
    await saveToDir(model, dir);
    model.dispose();
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
    edit?.(json);
    const bin = readFileSync(join(dir, 'weights.bin'));
    return alice.uploadModel(json, weights ? weights(bin) : bin);
  }
  const firstWeight = (json: Record<string, unknown>) =>
    (json['weightsManifest'] as { weights: Record<string, unknown>[] }[])[0]!.weights[0]!;

  const cases: Record<string, () => Promise<unknown>> = {
    'initial-model-unknown-job': () => alice.submit(spec({ initialModel: { job: 'no-such-job' } })),
    'initial-model-other-users-job': () => bob.submit(spec({ initialModel: { job: jobA } })),
    'initial-model-job-not-done': async () => {
      const queued = await alice.submit(spec({ minWorkers: 9, maxWorkers: 9 }));
      try {
        return await alice.submit(spec({ initialModel: { job: queued.id } }));
      } finally {
        await alice.cancel(queued.id);
      }
    },
    'initial-model-unknown-upload': async () =>
      alice.submit(spec({ initialModel: { ...(await upload()), weights: 'upload:no-such-upload' } })),
    'initial-model-not-json': async () =>
      alice.submit(
        spec({
          initialModel: { ...(await upload()), modelJson: (await alice.upload(new Uint8Array([123, 1]), 'x')).source },
        }),
      ),
    'initial-model-not-float32': async () =>
      alice.submit(spec({ initialModel: await upload((json) => (firstWeight(json)['dtype'] = 'int32')) })),
    'initial-model-too-large': async () =>
      alice.submit(spec({ initialModel: await upload((json) => (firstWeight(json)['shape'] = [1_000_000, 1_000])) })),
    'initial-model-weights-size': async () =>
      alice.submit(spec({ initialModel: await upload(undefined, 10, (w) => w.subarray(0, w.length - 4)) })),
    'initial-model-topology': async () => alice.submit(spec({ initialModel: await upload(undefined, 5) })),
    'trainable-layers-unknown-name': () => alice.submit(spec({ trainableLayers: ['out', 'no-such-layer'] })),
    'trainable-layers-empty': () => alice.submit(spec({ trainableLayers: [] })),
  };

  it('refuses each documented initialModel and trainableLayers case with its status, code and field path', async () => {
    const doc = readFileSync(join(ROOT, 'docs/api.md'), 'utf8').split('## Fine-tuning')[1]!.split('\n## ')[0]!;
    const rows = [...doc.matchAll(/^\| ([a-z0-9-]+) +\| (\d{3}) +\| `([A-Z_]+)` +\| (.*) \|$/gm)].map((m) => ({
      name: m[1]!,
      status: Number(m[2]),
      code: m[3]!,
      path: m[4]!.trim().replaceAll('`', ''),
    }));
    expect(rows.map((r) => r.name).sort()).toEqual(Object.keys(cases).sort());
    const secret = 'SECRET-NAME-0123';
    for (const row of rows) {
      const got = await refusal(cases[row.name]!());
      console.log(`${row.name}: ${got.issues[0]?.path}: ${got.issues[0]?.message}`);
      expect({ case: row.name, status: got.status, code: got.code, path: got.issues[0]?.path }).toEqual({
        case: row.name,
        status: row.status,
        code: row.code,
        path: row.path,
      });
      expect(got.message, row.name).not.toContain(secret);
    }
    // The artifact is never quoted: a name in it does not come back in any refusal.
    const named = await refusal(
      alice.submit(
        spec({
          initialModel: await upload((json) => {
            firstWeight(json)['name'] = secret;
          }),
        }),
      ),
    );
    expect(named.issues[0]?.path).toBe('initialModel');
    expect(named.message).toContain('hidden/kernel');
    expect(named.message).not.toContain(secret);
    const shape = await refusal(alice.submit(spec({ initialModel: await upload(undefined, 5) })));
    expect(shape.message).toContain('weight out/kernel has shape [16,5] in the initial model, [16,10]');
  });
});
