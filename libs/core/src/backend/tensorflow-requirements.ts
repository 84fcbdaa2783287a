/**
 * What `@tensorflow/tfjs-node-gpu` 4.22 needs at run time: it binds libtensorflow 2.9.1,
 * built against CUDA 11.2 and cuDNN 8.1. Any CUDA 11.x runtime from 11.2 on and any
 * cuDNN 8.x satisfy it (same sonames, minor-version compatibility); CUDA 12 and cuDNN 9
 * do not. docs/gpu.md has the full table.
 */
export const TFJS_NODE_GPU_REQUIREMENTS = 'CUDA 11.x (>= 11.2) and cuDNN 8.x (>= 8.1), NVIDIA driver >= 450.80.02';

/** Shared libraries libtensorflow 2.9 loads for the GPU, and what provides each. */
const LIBRARIES: [RegExp, string][] = [
  [/libcudnn[\w.]*\.so\.8|libcudnn\.so/, 'cuDNN 8.x (>= 8.1) for CUDA 11 (libcudnn.so.8)'],
  [/libcudart\.so\.11|libcudart\.so/, 'the CUDA 11.x (>= 11.2) runtime (libcudart.so.11.0)'],
  [/libcublas(Lt)?\.so\.11|libcublas/, 'CUDA 11.x cuBLAS (libcublas.so.11, libcublasLt.so.11)'],
  [/libcufft\.so\.10|libcufft/, 'CUDA 11.x cuFFT (libcufft.so.10)'],
  [/libcurand\.so\.10|libcurand/, 'CUDA 11.x cuRAND (libcurand.so.10)'],
  [/libcusolver\.so\.11|libcusolver/, 'CUDA 11.x cuSOLVER (libcusolver.so.11)'],
  [/libcusparse\.so\.11|libcusparse/, 'CUDA 11.x cuSPARSE (libcusparse.so.11)'],
  [/libcuda\.so/, 'the NVIDIA driver (libcuda.so.1, >= 450.80.02)'],
  [
    /libtensorflow[\w.]*\.so/,
    'libtensorflow 2.9.1, which the package downloads at install time (reinstall it with network access)',
  ],
  [
    /tfjs_binding\.node/,
    "the package's native binding, built or downloaded at install time (reinstall it with network access)",
  ],
];

/**
 * Turns a failure to load a TensorFlow binding into a sentence that names the missing
 * library and what provides it, e.g. "libcudnn.so.8 could not be loaded: install cuDNN 8.x".
 */
export function explainTensorflowLoadError(pkg: string, message: string): string {
  if (/Cannot find (package|module) '@tensorflow\/tfjs-node/.test(message) || /ERR_MODULE_NOT_FOUND/.test(message)) {
    return `${pkg} is not installed (optional dependency; npm install ${pkg}${pkg.endsWith('-gpu') ? `, needs ${TFJS_NODE_GPU_REQUIREMENTS}` : ''})`;
  }
  const lib = /([\w.+-]+\.(?:so(?:\.[\d.]+)?|node))\b/.exec(message)?.[1];
  const need = LIBRARIES.find(([re]) => re.test(message))?.[1];
  if (lib && need)
    return `${pkg} could not load ${lib}: it needs ${need}${pkg.endsWith('-gpu') ? `; ${pkg} 4.22 needs ${TFJS_NODE_GPU_REQUIREMENTS}` : ''}`;
  return `${pkg} failed to load (${message.split('\n')[0]!.slice(0, 300)})${pkg.endsWith('-gpu') ? `; it needs ${TFJS_NODE_GPU_REQUIREMENTS}` : ''}`;
}
