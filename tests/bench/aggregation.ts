/**
 * Aggregation: averaging N gradient vectors the way the coordinator does (GradientReducer:
 * bucket by bucket into the WebAssembly SIMD accumulator, weighted, the mean folded into
 * each bucket's last add), as gradient bytes read per second, against the honest bound:
 * `acc += g` moves three memory streams (read g, read acc, write acc) where a copy moves
 * two, so the baseline is a plain three-stream pass of the same kernels (first add
 * `acc = g * w`, then `acc += g * w`, the last one scaled) over the same sizes with every
 * input already in wasm memory, i.e. the reducer minus its staging. Copy bandwidth × 2/3
 * is printed beside it as a second estimate of the bound. Two reducer rows: buckets in JS
 * buffers (what `ws` hands over today: staged through an L2-sized buffer) and buckets
 * received into the reducer's wasm memory (`receiveBytes`: added in place).
 *
 * Inputs come from main memory: each vector is 100 MB (25M floats) and 4 distinct ones are
 * cycled (400 MB), far beyond the 32 MiB L3; rows whose working set fits in L3 are labelled
 * "in cache". Each figure is the median of 5 interleaved repetitions (min–max beside it).
 * The fp16 and int8 rows compare the reducer's SIMD decode-and-add with the scalar decode
 * (fp16.ts / int8.ts into the staging buffer, then the float32 kernel) it replaced.
 */
import {
  Accumulator,
  BucketPlan,
  GradientReducer,
  STAGE_FLOATS,
  bucketCodec,
  decodeHalves,
  decodeInt8,
  type Compression,
} from '@gradfleet/core';
import { QUICK, median, saveResult, type Row } from './bench-lib.js';

/** Repetitions per figure, interleaved across the variants of a case. */
const REPS = 5;
/** Distinct input vectors cycled through: 4 x 100 MB defeats any cache. */
const MAX_DISTINCT = 4;
/** Last-level cache of this machine (lscpu: 32 MiB L3), to label cache-resident rows. */
const L3_BYTES = 32 << 20;
const cases: { n: number; counts: number[]; codecs: number[] }[] = QUICK
  ? [{ n: 1 << 20, counts: [2], codecs: [2] }]
  : [
      { n: 25 << 20, counts: [2, 8, 32], codecs: [8] },
      { n: 1 << 20, counts: [8], codecs: [] },
    ];
const rows: Row[] = [];

type Timed = Record<string, () => void>;

/** Median and min–max of each variant's time (ms), the variants interleaved, their order rotated per repetition. */
function measure(variants: Timed): Record<string, { med: number; min: number; max: number }> {
  const names = Object.keys(variants);
  const times: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  for (const f of Object.values(variants)) f(); // warm-up: compile, fault the pages in
  for (let r = 0; r < REPS; r++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(j + r) % names.length]!;
      const t0 = performance.now();
      variants[name]!();
      times[name]!.push(performance.now() - t0);
    }
  }
  return Object.fromEntries(
    names.map((k) => [k, { med: median(times[k]!), min: Math.min(...times[k]!), max: Math.max(...times[k]!) }]),
  );
}

const grad = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => (((i * 7 + k) % 13) - 6) * 0.37);

/** Runs the reducer over N workers' encoded gradients (payloads cycled), the total named in begin. */
function reducerPass(plan: BucketPlan, reducer: GradientReducer, payloads: Uint8Array[], N: number, bytesPer: number) {
  return () => {
    reducer.begin(16 * N);
    for (let k = 0; k < N; k++) {
      const p = payloads[k % payloads.length]!;
      for (let b = 0; b < plan.count; b++) {
        const from = plan.start(b) * bytesPer;
        reducer.add(b, p.subarray(from, from + plan.length(b) * bytesPer), 16);
      }
    }
    for (let b = 0; b < plan.count; b++) reducer.finishBucket(b, 16 * N);
  };
}

for (const { n, counts, codecs } of cases) {
  const distinct = Math.min(MAX_DISTINCT, Math.max(...counts));
  const grads = Array.from({ length: distinct }, (_, k) => grad(n, k));
  const plan = new BucketPlan(n);
  const reducer = new GradientReducer(plan, bucketCodec('none'));
  // Buckets received into the reducer's own wasm memory (a data plane reading into `acc.receive()`).
  const inPlace = new GradientReducer(plan, bucketCodec('none'), { receiveBytes: distinct * n * 4 });
  const received = grads.map((g, k) => {
    const view = inPlace.acc.receive().subarray(k * n * 4, (k + 1) * n * 4);
    new Float32Array(view.buffer, view.byteOffset, n).set(g);
    return view;
  });
  const dst = new Float32Array(n);
  // The bound's memory: the accumulator, then the distinct inputs, all in wasm memory.
  const wasm = new Accumulator(n * (distinct + 1));
  grads.forEach((g, k) => wasm.values.set(g, n * (k + 1)));
  const n16 = n - (n % 16);

  for (const N of counts) {
    const d = Math.min(N, distinct);
    const payloads = grads.slice(0, d).map((g) => new Uint8Array(g.buffer));
    const inCache = (d + 1) * n * 4 <= L3_BYTES;
    const label = `N=${N}, ${n >> 20}M floats${inCache ? ' (in cache: L3-resident, not a main-memory figure)' : ''}`;
    const bound = () => {
      const k = wasm.kernels!;
      for (let j = 0; j < N; j++) {
        const g = n * 4 * (1 + (j % d));
        if (j === 0) k.assign_f32(0, g, 0, n16, 16, 1);
        else if (j < N - 1) k.axpy_f32(0, g, 0, n16, 16, 1);
        else k.axpyScale_f32(0, g, 0, n16, 16, Math.fround(1 / (16 * N)));
      }
    };
    const t = measure({
      reducer: reducerPass(plan, reducer, payloads, N, 4),
      inPlace: reducerPass(plan, inPlace, received.slice(0, d), N, 4),
      bound,
      copy: () => {
        for (let k = 0; k < N; k++) dst.set(grads[k % d]!);
      },
    });
    const bytes = N * n * 4;
    const gbps = (ms: number) => bytes / ms / 1e6;
    const span = (x: { min: number; max: number }) => `${gbps(x.max).toFixed(2)}–${gbps(x.min).toFixed(2)}`;
    const copyBound = (gbps(t['copy']!.med) * 2) / 3;
    const row = (variant: 'reducer' | 'inPlace', what: string) =>
      rows.push({
        case: `${label}: reducer, ${what}`,
        value: gbps(t[variant]!.med),
        baseline: gbps(t['bound']!.med),
        unit: 'GB/s',
        ratio: t['bound']!.med / t[variant]!.med,
        target: inCache ? undefined : 0.9,
        note: `(${span(t[variant]!)} vs ${span(t['bound']!)} GB/s; copy × 2/3 = ${copyBound.toFixed(2)} GB/s, ratio to that ${(gbps(t[variant]!.med) / copyBound).toFixed(3)})`,
      });
    row('inPlace', 'buckets received into wasm memory (in place)');
    row('reducer', 'buckets in JS buffers (staged)');
    console.error(
      `aggregation ${label}: in place ${gbps(t['inPlace']!.med).toFixed(2)}, staged ${gbps(t['reducer']!.med).toFixed(2)}, bound ${gbps(t['bound']!.med).toFixed(2)}, copy ${gbps(t['copy']!.med).toFixed(2)} GB/s`,
    );

    if (!codecs.includes(N)) continue;
    for (const name of ['fp16', 'int8'] as const satisfies Compression[]) {
      const codec = bucketCodec(name);
      const encoded = grads.slice(0, d).map((g) => {
        const out = new Uint8Array(codec.gradientBytes(n));
        // Whole-vector encode: the int8 block layout of one bucket of n values.
        codec.encode(Float32Array.from(g), out);
        return out;
      });
      const whole = new BucketPlan(n, n * 4 + 1024); // one bucket: the payload's layout is per bucket
      const simdReducer = new GradientReducer(whole, codec);
      const scalarAcc = new Accumulator(n);
      // The scalar path it replaced: decode into the staging buffer, then the float32 kernel.
      const scalar = () => {
        const stage = scalarAcc.staging();
        for (let k = 0; k < N; k++) {
          const p = encoded[k % d]!;
          const h = name === 'fp16' ? new Uint16Array(p.buffer, 0, n) : undefined;
          for (let i = 0; i < n; i += STAGE_FLOATS) {
            const to = Math.min(n, i + STAGE_FLOATS);
            if (h) decodeHalves(h, stage, i, to);
            else decodeInt8(p, n, stage, i, to);
            scalarAcc.addStaged(i, to - i, 16, k === 0, k === N - 1 ? 1 / (16 * N) : undefined);
          }
        }
      };
      const simd = () => {
        simdReducer.begin(16 * N);
        for (let k = 0; k < N; k++) simdReducer.add(0, encoded[k % d]!, 16);
        simdReducer.finishBucket(0, 16 * N);
      };
      const tc = measure({ simd, scalar });
      const gfs = (ms: number) => (N * n) / ms / 1e6;
      rows.push({
        case: `${label}: ${name} reducer, SIMD decode-and-add`,
        value: gfs(tc['simd']!.med),
        baseline: gfs(tc['scalar']!.med),
        unit: 'Gfloat/s',
        ratio: tc['scalar']!.med / tc['simd']!.med,
        note: `(SIMD ${gfs(tc['simd']!.max).toFixed(2)}–${gfs(tc['simd']!.min).toFixed(2)}, scalar ${gfs(tc['scalar']!.max).toFixed(2)}–${gfs(tc['scalar']!.min).toFixed(2)})`,
      });
      console.error(
        `aggregation ${label} ${name}: SIMD ${gfs(tc['simd']!.med).toFixed(2)}, scalar ${gfs(tc['scalar']!.med).toFixed(2)} Gfloat/s`,
      );
    }
  }
}

saveResult({
  name: 'aggregation',
  title: 'Aggregation: averaging N gradients (gradient bytes read per second), against a three-stream pass',
  baselineName: 'three-stream bound (same kernels, input in wasm memory)',
  rows,
  notes: [
    'The staged reducer reads each gradient from the JS heap into an L2-sized staging buffer in wasm memory and adds it to the accumulator there with f32x4 SIMD, the finiteness check riding in the same pass and the 1/total scale folded into the last add; the in-place reducer adds buckets that were received into its wasm memory where they lie. The bound runs the same kernels over inputs already in wasm memory: three memory streams per add (two for the first), what `acc += g` must move at least. Medians of 5 interleaved repetitions; min–max in brackets. The fp16/int8 rows are in float values per second, against the scalar decode they replaced (baseline column).',
  ],
});
