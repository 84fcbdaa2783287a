import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../backend/select-backend.js';
import { InvalidJobSpecError, parseJobSpec } from '../job/job-spec.js';
import { buildModel, flattenWeights, trainableParameterCount } from './model-factory.js';

const issues = (p: Promise<unknown>) =>
  p.then(
    () => [],
    (err: unknown) => {
      expect(err).toBeInstanceOf(InvalidJobSpecError);
      return (err as InvalidJobSpecError).issues;
    },
  );

describe('trainableLayers', () => {
  beforeAll(() => selectBackend('cpu'));

  it('freezes the layers it does not name: fewer trainable values, frozen weights listed last', async () => {
    const all = await buildModel('mnist-mlp', 1);
    const tuned = await buildModel('mnist-mlp', 1, { trainableLayers: ['dense_2'] });
    expect(trainableParameterCount(all)).toBe(784 * 128 + 128 + 128 * 10 + 10);
    expect(trainableParameterCount(tuned)).toBe(128 * 10 + 10);
    expect(tuned.trainableWeights.map((w) => w.originalName)).toEqual(['dense_2/kernel', 'dense_2/bias']);
    expect(tuned.weights.map((w) => w.originalName)).toEqual([
      'dense_2/kernel',
      'dense_2/bias',
      'dense_1/kernel',
      'dense_1/bias',
    ]);
    // The same seeded values, only listed in another order.
    expect(flattenWeights(tuned).length).toBe(flattenWeights(all).length);
    all.dispose();
    tuned.dispose();
  });

  it('refuses an unknown layer on its index, listing the layers there are', async () => {
    const found = await issues(buildModel('mnist-mlp', 1, { trainableLayers: ['dense_2', 'dense_9'] }));
    expect(found).toEqual([
      {
        path: 'trainableLayers.1',
        message: "the job's model has no layer 'dense_9'; its layers: dense_1, dropout_1, dense_2",
      },
    ]);
  });

  it('refuses a list of layers without weights', async () => {
    const found = await issues(buildModel('mnist-mlp', 1, { trainableLayers: ['dropout_1'] }));
    expect(found.map((i) => i.path)).toEqual(['trainableLayers']);
    expect(found[0]!.message).toContain('dense_1, dense_2');
  });

  it('is optional in a job spec (absent: every layer trains); an empty or repeated list is refused', () => {
    expect(parseJobSpec({}).trainableLayers).toBeUndefined();
    expect(parseJobSpec({}).initialModel).toBeUndefined();
    expect(() => parseJobSpec({ trainableLayers: [] })).toThrow(/trainableLayers: name at least one layer/);
    expect(() => parseJobSpec({ trainableLayers: ['a', 'a'] })).toThrow(/trainableLayers: a layer is named twice/);
  });

  it('initialModel takes a job id or two upload sources, nothing else', () => {
    expect(parseJobSpec({ initialModel: { job: '6f96ff27-4df3-4a66-b156-30dcb266129a' } }).initialModel).toEqual({
      job: '6f96ff27-4df3-4a66-b156-30dcb266129a',
    });
    const upload = { modelJson: 'upload:1-model.json', weights: 'upload:2-weights.bin' };
    expect(parseJobSpec({ initialModel: upload }).initialModel).toEqual(upload);
    for (const bad of [
      { job: '../x' },
      { modelJson: '/etc/passwd', weights: 'upload:a' },
      { modelJson: 'upload:../a', weights: 'upload:a' },
      { modelJson: 'upload:.a', weights: 'upload:a' },
      { modelJson: 'upload:a' },
      { job: 'a', weights: 'upload:a' },
    ])
      expect(() => parseJobSpec({ initialModel: bad }), JSON.stringify(bad)).toThrow(/initialModel/);
  });
});
