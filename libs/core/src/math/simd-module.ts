/**
 * The bytes of a small WebAssembly module with SIMD (f32x4) kernels for gradient
 * arithmetic, assembled here so the build needs no wasm toolchain. Every kernel works on
 * `n16` floats (a multiple of 16, the caller handles the tail) at byte addresses in the
 * imported memory. V8 does not vectorise plain JS loops; these kernels do four lanes per
 * instruction and reach several times the speed of the JS loops (see `npm run bench`).
 *
 *   axpy(acc, g, n, w) -> i32          acc[i] += g[i] * w
 *   assign(acc, g, n, w) -> i32        acc[i] = g[i] * w   (first add of a step: no zero-fill pass)
 *   axpyScale(acc, g, n, w, s) -> i32  acc[i] = (acc[i] + g[i] * w) * s   (last add, the mean folded in)
 *   scale(acc, n, s)                   acc[i] *= s
 *
 * The adds return 1 when some g[i] was NaN or +-Infinity: the finiteness check
 * rides in the same pass (g * 0 is 0 exactly for finite g), so a gradient is read once.
 * The accumulator is then spoiled, which is fine: a step that saw a bad gradient is
 * abandoned and its slices retried (docs/architecture.md).
 */

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;

const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  brIf: (d: number) => [0x0d, d],
  get: (i: number) => [0x20, i],
  set: (i: number) => [0x21, i],
  tee: (i: number) => [0x22, i],
  i32: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32Shl: [0x74],
  i32LtU: [0x49],
  i32GeU: [0x4f],
  load: (offset: number) => [0xfd, 0x00, 0x02, ...uleb(offset)],
  store: (offset: number) => [0xfd, 0x0b, 0x02, ...uleb(offset)],
  splat: [0xfd, 0x13],
  add: [0xfd, 0xe4, 0x01],
  mul: [0xfd, 0xe6, 0x01],
  ne: [0xfd, 0x42],
  anyTrue: [0xfd, 0x53],
  v128Zero: [0xfd, 0x0c, ...new Array<number>(16).fill(0)],
};

function uleb(v: number): number[] {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
}

const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const str = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

/** Floats per loop iteration: four f32x4 vectors (unrolled: fewer branches per byte). */
export const SIMD_BLOCK_FLOATS = 16;
const STEP = SIMD_BLOCK_FLOATS * 4;

/**
 * A loop over `[first, first + n*4)` in 64-byte steps (n a multiple of 16): `end` = local
 * for the end address, `others` = pointer locals advanced with `first`, `body(k)` = the
 * work on the k-th vector of an iteration (k = 0..3, at byte offset 16k).
 */
function loop64(first: number, n: number, end: number, others: number[], body: (k: number) => number[]): number[] {
  return [
    ...op.get(first),
    ...op.get(n),
    ...op.i32(2),
    ...op.i32Shl,
    ...op.i32Add,
    ...op.set(end),
    ...op.block,
    ...op.get(first),
    ...op.get(end),
    ...op.i32GeU,
    ...op.brIf(0),
    ...op.loop,
    ...[0, 1, 2, 3].flatMap(body),
    ...others.flatMap((p) => [...op.get(p), ...op.i32(STEP), ...op.i32Add, ...op.set(p)]),
    ...op.get(first),
    ...op.i32(STEP),
    ...op.i32Add,
    ...op.tee(first),
    ...op.get(end),
    ...op.i32LtU,
    ...op.brIf(0),
    ...op.end,
    ...op.end,
  ];
}

function fn(locals: [number, number][], body: number[]): number[] {
  const code = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...body, ...op.end];
  return [...uleb(code.length), ...code];
}

/**
 * acc = 0, g = 1, n = 2, w = 3, [s = 4]; then end, wv, sv, gv, probe.
 * `keepAcc`: add to acc (else overwrite); `scaled`: multiply the result by s.
 */
function axpyBody(keepAcc: boolean, scaled: boolean): number[] {
  const end = scaled ? 5 : 4;
  const [wv, sv, gv, probe] = [end + 1, end + 2, end + 3, end + 4];
  return fn(
    [
      [1, I32],
      [4, V128],
    ],
    [
      ...op.get(3),
      ...op.splat,
      ...op.set(wv),
      ...(scaled ? [...op.get(4), ...op.splat, ...op.set(sv)] : []),
      ...op.v128Zero,
      ...op.set(probe),
      ...loop64(0, 2, end, [1], (k) => [
        ...op.get(1),
        ...op.load(16 * k),
        ...op.set(gv),
        ...op.get(probe),
        ...op.get(gv),
        ...op.v128Zero,
        ...op.mul,
        ...op.add,
        ...op.set(probe),
        ...op.get(0),
        ...(keepAcc ? [...op.get(0), ...op.load(16 * k)] : []),
        ...op.get(gv),
        ...op.get(wv),
        ...op.mul,
        ...(keepAcc ? op.add : []),
        ...(scaled ? [...op.get(sv), ...op.mul] : []),
        ...op.store(16 * k),
      ]),
      ...op.get(probe),
      ...op.get(probe),
      ...op.ne,
      ...op.anyTrue,
    ],
  );
}

// acc = 0, n = 1, s = 2; end = 3, sv = 4
const scaleBody = fn(
  [
    [1, I32],
    [1, V128],
  ],
  [
    ...op.get(2),
    ...op.splat,
    ...op.set(4),
    ...loop64(0, 1, 3, [], (k) => [
      ...op.get(0),
      ...op.get(0),
      ...op.load(16 * k),
      ...op.get(4),
      ...op.mul,
      ...op.store(16 * k),
    ]),
  ],
);

const types = vec([
  [0x60, ...vec([[I32], [I32], [I32], [F32]]), 1, I32], // axpy, assign
  [0x60, ...vec([[I32], [I32], [I32], [F32], [F32]]), 1, I32], // axpyScale
  [0x60, ...vec([[I32], [I32], [F32]]), 0], // scale
]);
const exportsList: [string, number][] = [
  ['axpy', 0],
  ['assign', 1],
  ['axpyScale', 2],
  ['scale', 3],
];

/** The module's bytes: imports `env.memory`, exports the kernels above. */
export const SIMD_MODULE_BYTES = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00,
  ...section(1, types),
  ...section(2, vec([[...str('env'), ...str('memory'), 0x02, 0x00, 0x01]])),
  ...section(3, vec([[0], [0], [1], [2]])),
  ...section(7, vec(exportsList.map(([name, i]) => [...str(name), 0x00, i]))),
  ...section(10, vec([axpyBody(true, false), axpyBody(false, false), axpyBody(true, true), scaleBody])),
]);

export interface SimdKernels {
  axpy(acc: number, g: number, n16: number, w: number): number;
  assign(acc: number, g: number, n16: number, w: number): number;
  axpyScale(acc: number, g: number, n16: number, w: number, s: number): number;
  scale(acc: number, n16: number, s: number): void;
}

let compiled: WebAssembly.Module | null | undefined;

/** Instantiates the kernels over `memory`; undefined where WebAssembly SIMD is unavailable. */
export function instantiateSimdKernels(memory: WebAssembly.Memory): SimdKernels | undefined {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(SIMD_MODULE_BYTES);
    } catch {
      compiled = null;
    }
  }
  if (!compiled) return undefined;
  return new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as SimdKernels;
}
