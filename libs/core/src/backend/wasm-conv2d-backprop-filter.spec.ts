import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { maxRelativeDifference } from '../math/gradient-math.js';
import { selectBackend } from './select-backend.js';

const cases: {
  x: [number, number, number, number];
  f: [number, number, number, number];
  strides: number;
  pad: 'same' | 'valid';
}[] = [
  { x: [2, 8, 8, 3], f: [3, 3, 3, 4], strides: 1, pad: 'valid' },
  { x: [2, 8, 8, 3], f: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { x: [1, 9, 7, 2], f: [3, 2, 2, 5], strides: 2, pad: 'valid' },
  { x: [3, 10, 10, 1], f: [5, 5, 1, 2], strides: 2, pad: 'same' },
  { x: [2, 11, 11, 4], f: [2, 2, 4, 3], strides: 3, pad: 'valid' },
];

function filterGrad(backend: string, c: (typeof cases)[number], xv: Float32Array, dyv: Float32Array): Float32Array {
  void tf.setBackend(backend); // both backends are initialised: the switch is immediate
  expect(tf.getBackend()).toBe(backend);
  return tf.tidy(() => {
    const x = tf.tensor4d(xv, c.x);
    const f = tf.zeros(c.f) as tf.Tensor4D;
    const dy = tf.tensor4d(dyv, tf.conv2d(x, f, c.strides, c.pad).shape);
    // d/dW of sum(conv2d(x, W) * dy) is exactly Conv2DBackpropFilter(x, dy).
    const dW = tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, w as tf.Tensor4D, c.strides, c.pad), dy)))(f);
    return dW.dataSync() as Float32Array;
  });
}

describe('wasm Conv2DBackpropFilter', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('matches the cpu backend for strides 1-3 and same/valid padding', () => {
    for (const c of cases) {
      const xv = Float32Array.from({ length: c.x.reduce((a, b) => a * b) }, (_, i) => Math.sin(i * 0.7));
      void tf.setBackend('cpu'); // initialised in beforeAll: the switch is immediate
      const outShape = tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.f) as tf.Tensor4D, c.strides, c.pad).shape;
      const dyv = Float32Array.from({ length: outShape.reduce((a, b) => a * b) }, (_, i) => Math.cos(i * 0.3));
      const cpu = filterGrad('cpu', c, xv, dyv);
      const wasm = filterGrad('wasm', c, xv, dyv);
      expect(wasm.length).toBe(cpu.length);
      expect(maxRelativeDifference(wasm, cpu)).toBeLessThan(1e-5);
    }
  });

  it('is registered for wasm, which ships none', () => {
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  it('lets a conv model train on wasm', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([4, 6, 6, 1]);
    const f = tf.variable(tf.randomNormal([3, 3, 1, 2]));
    const { grads } = tf.variableGrads(() => tf.sum(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'same')), [f]);
    expect(grads[f.name]!.shape).toEqual([3, 3, 1, 2]);
  });
});
