import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidJobSpecError, buildModel, flattenWeights, selectBackend } from '@gradfleet/core';
import { loadInitialWeights, matchInitialWeights, parseWeightsManifest } from './initial-weights.js';

const SECRET = 'SECRET-0123';

function refusal(f: () => unknown): { path: string; message: string } {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidJobSpecError);
    const issue = (err as InvalidJobSpecError).issues[0]!;
    expect(issue.message).not.toContain(SECRET);
    return issue;
  }
  throw new Error('expected a refusal');
}

const manifest = (weights: unknown[]) => JSON.stringify({ weightsManifest: [{ paths: ['weights.bin'], weights }] });

describe('parseWeightsManifest', () => {
  it('lists the weights of every group in file order and counts their values', () => {
    const text = JSON.stringify({
      weightsManifest: [
        { paths: ['a.bin'], weights: [{ name: 'd/kernel', shape: [3, 2], dtype: 'float32' }] },
        { paths: ['b.bin'], weights: [{ name: 'd/bias', shape: [2], dtype: 'float32' }] },
      ],
    });
    expect(parseWeightsManifest(text, 'f')).toEqual({
      weights: [
        { name: 'd/kernel', shape: [3, 2] },
        { name: 'd/bias', shape: [2] },
      ],
      values: 8,
    });
  });

  it('refuses what is not a float32 layers-model manifest, quoting none of it', () => {
    const cases: [string, RegExp][] = [
      [`{"${SECRET}": `, /not a JSON model.json/],
      [JSON.stringify({ modelTopology: SECRET }), /no weightsManifest/],
      [manifest([{ name: 'a', shape: [2], dtype: SECRET }]), /weight 0 .* not plain float32/],
      [manifest([{ name: 'a', shape: [2], dtype: 'int32' }]), /weight 0 .* not plain float32/],
      [
        manifest([{ name: 'a', shape: [2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 1 } }]),
        /weight 0 .* not plain float32/,
      ],
      [manifest([{ name: 'a', shape: [2, -1], dtype: 'float32' }]), /weight 0 .* no valid shape/],
      [manifest([{ name: 'a', shape: SECRET, dtype: 'float32' }]), /weight 0 .* no valid shape/],
      [manifest([{ shape: [2], dtype: 'float32' }]), /weight 0 .* no name/],
      [
        manifest([
          { name: SECRET, shape: [2], dtype: 'float32' },
          { name: SECRET, shape: [2], dtype: 'float32' },
        ]),
        /weight 1 .* repeats the name/,
      ],
    ];
    for (const [text, message] of cases) {
      const issue = refusal(() => parseWeightsManifest(text, 'initialModel.modelJson'));
      expect(issue.path).toBe('initialModel.modelJson');
      expect(issue.message).toMatch(message);
    }
  });
});

describe('matchInitialWeights and loadInitialWeights', () => {
  beforeAll(() => selectBackend('cpu'));
  const spec = (units: number) => [
    { name: 'dense_1/kernel', shape: [784, 128] },
    { name: 'dense_1/bias', shape: [128] },
    { name: 'dense_2/kernel', shape: [128, units] },
    { name: 'dense_2/bias', shape: [units] },
  ];

  it('names the first mismatch by the job model: a missing weight, another shape, extra weights', async () => {
    const model = await buildModel('mnist-mlp', 1);
    expect(matchInitialWeights(model, spec(10))).toEqual([0, 784 * 128, 784 * 128 + 128, 784 * 128 + 128 + 1280]);
    const missing = refusal(() =>
      matchInitialWeights(model, [{ name: SECRET, shape: [784, 128] }, ...spec(10).slice(1)]),
    );
    expect(missing).toEqual({
      path: 'initialModel',
      message: expect.stringMatching(/^the initial model has no weight dense_1\/kernel \(shape \[784,128\]\)/),
    });
    expect(refusal(() => matchInitialWeights(model, spec(7))).message).toMatch(
      /^weight dense_2\/kernel has shape \[128,7\] in the initial model, \[128,10\] in the job's model/,
    );
    expect(refusal(() => matchInitialWeights(model, [...spec(10), { name: SECRET, shape: [1] }])).message).toMatch(
      /^the initial model has 1 weights the job's model does not have/,
    );
    model.dispose();
  });

  it('loads by name whatever the order: an artifact of the whole model starts a model with a frozen layer', async () => {
    const source = await buildModel('mnist-mlp', 5);
    const values = flattenWeights(source); // dense_1 then dense_2
    source.dispose();
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-initial-'));
    writeFileSync(join(dir, 'model.json'), manifest(spec(10).map((w) => ({ ...w, dtype: 'float32' }))));
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(values.buffer));
    const frozen = await buildModel('mnist-mlp', 1, { trainableLayers: ['dense_2'] }); // dense_2 listed first
    const loaded = await loadInitialWeights(frozen, dir);
    const d1 = 784 * 128 + 128;
    expect(Array.from(loaded.subarray(0, 1290))).toEqual(Array.from(values.subarray(d1)));
    expect(Array.from(loaded.subarray(1290))).toEqual(Array.from(values.subarray(0, d1)));
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(values.buffer, 0, values.byteLength - 4));
    await expect(loadInitialWeights(frozen, dir)).rejects.toThrow(/weights.bin has/);
    frozen.dispose();
  });
});
