/**
 * Aggregation: averaging N gradient vectors the way the coordinator does (GradientReducer:
 * bucket by bucket into the WebAssembly SIMD accumulator, weighted, then scaled), as
 * gradient bytes read per second, against a plain `Float32Array.set` copy of the same
 * bytes (the memory-bandwidth ceiling). Best of 3 for each, interleaved.
 */
import { Accumulator, BucketPlan, GradientReducer, STAGE_FLOATS, bucketCodec } from '@gradfleet/core';
import { QUICK, saveResult, type Row } from './bench-lib.js';

const sizes = QUICK ? [1 << 20] : [1 << 20, 25 << 20];
const counts = QUICK ? [2] : [2, 8, 32];
const rows: Row[] = [];

/** The plain JS loop the reducer used before the SIMD kernels (for reference). */
function jsAxpy(acc: Float32Array, g: Float32Array, w: number): void {
  for (let i = 0; i < g.length; i++) acc[i]! += g[i]! * w;
}

const best = (f: () => void) => {
  let t = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    f();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
};

for (const n of sizes) {
  for (const N of counts) {
    // Distinct vectors (cycled past 4 at 25M floats to stay in memory; 100 MB each is far beyond cache).
    const distinct = n > 4 << 20 ? Math.min(N, 4) : N;
    const grads = Array.from({ length: distinct }, (_, k) =>
      Float32Array.from({ length: n }, (_, i) => ((i * 7 + k) % 13) - 6),
    );
    const payloads = grads.map((g) => new Uint8Array(g.buffer));
    const plan = new BucketPlan(n);
    const reducer = new GradientReducer(plan, bucketCodec('none'));
    const dst = new Float32Array(n);
    const acc = new Float32Array(n);
    const bytes = N * n * 4;
    const reduce = () => {
      reducer.begin();
      for (let k = 0; k < N; k++) {
        const p = payloads[k % distinct]!;
        for (let b = 0; b < plan.count; b++)
          reducer.add(
            b,
            p.subarray(plan.start(b) * 4, (plan.start(b) + plan.length(b)) * 4),
            16,
            k === N - 1 ? 16 * N : undefined,
          );
      }
      for (let b = 0; b < plan.count; b++) reducer.finishBucket(b, 16 * N);
    };
    const copy = () => {
      for (let k = 0; k < N; k++) dst.set(grads[k % distinct]!);
    };
    const js = () => {
      for (let k = 0; k < N; k++) jsAxpy(acc, grads[k % distinct]!, 16);
    };
    // The SIMD kernel alone, its input already in wasm memory (as if frames were received
    // there): what the reducer would reach without the staging copy.
    const kernelAcc = new Accumulator(n);
    const stage = kernelAcc.staging();
    stage.fill(1.5);
    const kernel = () => {
      for (let k = 0; k < N; k++)
        for (let o = 0; o < n; o += STAGE_FLOATS) kernelAcc.addStaged(o, Math.min(STAGE_FLOATS, n - o), 16, k === 0);
    };
    const tr = best(reduce);
    const tk = best(kernel);
    const tc = best(copy);
    const tj = N <= 8 ? best(js) : NaN;
    const gbps = (ms: number) => bytes / ms / 1e6;
    const label = `N=${N}, ${n >> 20}M floats`;
    rows.push({
      case: `${label}: reducer (SIMD)`,
      value: gbps(tr),
      baseline: gbps(tc),
      unit: 'GB/s',
      ratio: tc / tr,
      target: 0.8,
    });
    rows.push({
      case: `${label}: SIMD kernel, input already in wasm memory`,
      value: gbps(tk),
      baseline: gbps(tc),
      unit: 'GB/s',
      ratio: tc / tk,
    });
    if (!Number.isNaN(tj))
      rows.push({ case: `${label}: plain JS loop`, value: gbps(tj), baseline: gbps(tc), unit: 'GB/s', ratio: tc / tj });
    console.error(
      `aggregation ${label}: reducer ${gbps(tr).toFixed(2)} GB/s, copy ${gbps(tc).toFixed(2)} GB/s, js ${gbps(tj).toFixed(2)} GB/s`,
    );
  }
}

saveResult({
  name: 'aggregation',
  title: 'Aggregation: averaging N gradients (bytes read per second)',
  baselineName: '`Float32Array.set` copy',
  rows,
  notes: [
    'The reducer reads each gradient from the JS heap into an L2-sized staging buffer in wasm memory and adds it to the accumulator there with f32x4 SIMD, the finiteness check riding in the same pass; the add of the last gradient folds in the final 1/total scale.',
  ],
});
