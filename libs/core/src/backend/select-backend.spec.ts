import { afterEach, describe, expect, it } from 'vitest';
import { selectBackend } from './select-backend.js';

// Where tfjs-node(-gpu) cannot install (this project's CI), `--gpu N` must still pin the
// device for the binding and then fail over or fail with what to install.
describe('selectBackend with --gpu', () => {
  const saved = process.env['CUDA_VISIBLE_DEVICES'];
  afterEach(() => {
    if (saved === undefined) delete process.env['CUDA_VISIBLE_DEVICES'];
    else process.env['CUDA_VISIBLE_DEVICES'] = saved;
  });

  it('pins CUDA_VISIBLE_DEVICES before loading TensorFlow; --backend tensorflow without a binding fails naming the packages', async () => {
    await expect(selectBackend('tensorflow', { gpu: 3 })).rejects.toThrow(
      /no TensorFlow binding could be loaded.*Install @tensorflow\/tfjs-node-gpu/s,
    );
    expect(process.env['CUDA_VISIBLE_DEVICES']).toBe('3');
  });

  it('auto falls back past the missing bindings and says why, GPU pin included', async () => {
    const s = await selectBackend('auto', { gpu: 1 });
    expect(process.env['CUDA_VISIBLE_DEVICES']).toBe('1');
    expect(['wasm', 'cpu']).toContain(s.backend);
    expect(s.reason).toMatch(/@tensorflow\/tfjs-node-gpu/);
  });
});
