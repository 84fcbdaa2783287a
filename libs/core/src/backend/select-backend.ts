import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// Its Node bundle registers every op's gradient (tfjs-core's alone registers none).
import '@tensorflow/tfjs-layers';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { TFJS_NODE_GPU_REQUIREMENTS, explainTensorflowLoadError } from './tensorflow-requirements.js';
import { registerWasmConv2DBackpropFilter } from './wasm-conv2d-backprop-filter.js';

/** `auto` tries tensorflow (GPU build, then CPU build), then wasm, then cpu. */
export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendSelection {
  backend: BackendName;
  /** Which package provided it, e.g. `@tensorflow/tfjs-node-gpu`. */
  provider: string;
  /** A human-readable device, e.g. `GPU 0` or `wasm-simd (1 thread)`. */
  device: string;
  /** Why this backend: the failures of the better ones, in order. */
  reason: string;
}

export interface SelectBackendOptions {
  /** Pin the tensorflow backend to one GPU (sets CUDA_VISIBLE_DEVICES before loading). */
  gpu?: number;
}

/** Thrown when `--backend tensorflow` was asked for and no TensorFlow binding loads. */
export class BackendUnavailableError extends Error {
  readonly code = 'BACKEND_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

const require = createRequire(import.meta.url);

async function tryTensorflow(pkg: string): Promise<string> {
  // A variable specifier: the package is optional and must not be resolved at build time.
  const name: string = pkg;
  await import(name);
  const ok = await tf.setBackend('tensorflow');
  if (!ok) throw new Error(`${pkg} loaded but the tensorflow backend failed to initialise`);
  return pkg;
}

function shortError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.slice(0, 300);
}

async function useWasm(): Promise<void> {
  setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
  registerWasmConv2DBackpropFilter();
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend failed to initialise');
}

/**
 * Picks the fastest available TensorFlow.js backend (or the one asked for) and makes it
 * the active backend. `reason` records why better ones were skipped, for the logs.
 */
export async function selectBackend(
  pref: BackendPreference,
  options: SelectBackendOptions = {},
): Promise<BackendSelection> {
  const failures: string[] = [];
  if (pref === 'auto' || pref === 'tensorflow') {
    if (options.gpu !== undefined) process.env['CUDA_VISIBLE_DEVICES'] = String(options.gpu);
    process.env['TF_FORCE_GPU_ALLOW_GROWTH'] ??= 'true';
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        const provider = await tryTensorflow(pkg);
        const gpu = pkg.endsWith('-gpu');
        const device = gpu ? `GPU ${options.gpu ?? process.env['CUDA_VISIBLE_DEVICES'] ?? 0}` : 'CPU (libtensorflow)';
        return {
          backend: 'tensorflow',
          provider,
          device,
          reason: failures.length ? failures.join('; ') : `${pkg} loaded`,
        };
      } catch (err) {
        failures.push(explainTensorflowLoadError(pkg, err instanceof Error ? err.message : String(err)));
      }
    }
    if (pref === 'tensorflow') {
      throw new BackendUnavailableError(
        `--backend tensorflow: no TensorFlow binding could be loaded: ${failures.join('; ')}. ` +
          `Install @tensorflow/tfjs-node-gpu (${TFJS_NODE_GPU_REQUIREMENTS}) or @tensorflow/tfjs-node, or use --backend auto.`,
      );
    }
  }
  if (pref === 'auto' || pref === 'wasm') {
    try {
      await useWasm();
      return {
        backend: 'wasm',
        provider: '@tensorflow/tfjs-backend-wasm',
        device: 'wasm-simd (1 thread)',
        reason: failures.length ? failures.join('; ') : 'wasm requested',
      };
    } catch (err) {
      if (pref === 'wasm') throw new BackendUnavailableError(`--backend wasm failed: ${shortError(err)}`);
      failures.push(`wasm unavailable (${shortError(err)})`);
    }
  }
  await tf.setBackend('cpu');
  return {
    backend: 'cpu',
    provider: '@tensorflow/tfjs-backend-cpu',
    device: 'cpu (plain JS)',
    reason: failures.length ? failures.join('; ') : 'cpu requested',
  };
}
