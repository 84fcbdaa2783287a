import { describe, expect, it } from 'vitest';
import { explainTensorflowLoadError } from './tensorflow-requirements.js';

describe('explainTensorflowLoadError', () => {
  const gpu = '@tensorflow/tfjs-node-gpu';
  it('names the missing CUDA/cuDNN library and the version that provides it', () => {
    expect(
      explainTensorflowLoadError(gpu, 'libcudnn.so.8: cannot open shared object file: No such file or directory'),
    ).toMatch(/could not load libcudnn\.so\.8: it needs cuDNN 8\.x/);
    expect(
      explainTensorflowLoadError(
        gpu,
        "Could not load dynamic library 'libcudart.so.11.0'; dlerror: libcudart.so.11.0: cannot open shared object file",
      ),
    ).toMatch(/libcudart\.so\.11\.0: it needs the CUDA 11\.x \(>= 11\.2\) runtime/);
    expect(explainTensorflowLoadError(gpu, 'libcublasLt.so.11: cannot open shared object file')).toMatch(/cuBLAS/);
  });
  it('says when the package itself is missing or its binding was never built', () => {
    expect(
      explainTensorflowLoadError(gpu, "Cannot find package '@tensorflow/tfjs-node-gpu' imported from /x.js"),
    ).toMatch(/is not installed .*CUDA 11\.x/);
    expect(
      explainTensorflowLoadError(
        '@tensorflow/tfjs-node',
        "Cannot find module '/app/node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node'",
      ),
    ).toMatch(/native binding/);
  });
  it('keeps an unknown error, with the requirements', () => {
    expect(explainTensorflowLoadError(gpu, 'segfault\nmore')).toBe(
      `${gpu} failed to load (segfault); it needs CUDA 11.x (>= 11.2) and cuDNN 8.x (>= 8.1), NVIDIA driver >= 450.80.02`,
    );
  });
});
