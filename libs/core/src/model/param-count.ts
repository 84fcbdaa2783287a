import { InvalidJobSpecError } from '../job/job-spec.js';
import type { NormalizedNode } from './normalize-topology.js';

/** One example's shape (no batch dimension); `null` where the topology leaves a dimension open. */
type Shape = (number | null)[];
type Obj = { [key: string]: NormalizedNode };

const fail = (path: string, message: string): never => {
  throw new InvalidJobSpecError([{ path, message }]);
};
const obj = (v: NormalizedNode | undefined): Obj =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? v : ({} as Obj);
const num = (v: NormalizedNode | undefined, dflt: number): number => (typeof v === 'number' ? v : dflt);
const tuple = (v: NormalizedNode | undefined, rank: number, dflt: number): number[] => {
  if (typeof v === 'number') return Array<number>(rank).fill(v);
  if (Array.isArray(v) && v.length === rank && v.every((x) => typeof x === 'number')) return v as number[];
  return Array<number>(rank).fill(dflt);
};
const shapeOf = (v: NormalizedNode | undefined): Shape | undefined =>
  Array.isArray(v) && v.every((x) => x === null || typeof x === 'number') ? (v as Shape) : undefined;
const product = (s: Shape): number | null =>
  s.reduce<number | null>((a, b) => (a === null || b === null ? null : a * b), 1);

/** Adds up weights, refusing as soon as the running total passes the limit (or a safe integer). */
class Tally {
  total = 0;
  constructor(private readonly limit: number) {}
  add(n: number, path: string): void {
    this.total += n;
    if (!Number.isSafeInteger(this.total) || this.total > this.limit)
      fail(
        'model',
        `LIMIT_EXCEEDED: the topology has more than ${this.limit} parameters (counted at ${path}, before anything is built)`,
      );
  }
}

/** A size the layer cannot do without: a known, positive dimension. */
function known(v: number | null | undefined, path: string, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    return fail(path, `${what} must be known and positive to size this layer before building it`);
  return v;
}

/** The input shape a layer config declares, if any (`batchInputShape`, `inputShape`, Dense's `inputDim`). */
function declaredInput(className: string, c: Obj): Shape | undefined {
  const batch = shapeOf(c['batchInputShape']);
  if (batch) return batch.slice(1);
  const input = shapeOf(c['inputShape']);
  if (input) return input;
  if (className === 'Dense' && typeof c['inputDim'] === 'number') return [c['inputDim']];
  if (className === 'Embedding') return [typeof c['inputLength'] === 'number' ? c['inputLength'] : null];
  return undefined;
}

/** Channels-last (or channels-first) spatial dimensions and channel count of an input. */
function spatial(s: Shape, rank: number, c: Obj, path: string) {
  if (s.length !== rank + 1) fail(path, `expects inputs of rank ${rank + 1}, gets ${s.length}`);
  const first = c['dataFormat'] === 'channelsFirst';
  const dims = first ? s.slice(1) : s.slice(0, rank);
  const ch = first ? s[0]! : s[rank]!;
  return {
    dims,
    ch,
    shape: (d: Shape, channels: number | null): Shape => (first ? [channels, ...d] : [...d, channels]),
  };
}

function convDims(
  dims: Shape,
  k: number[],
  strides: number[],
  dilation: number[],
  padding: string,
  path: string,
): Shape {
  return dims.map((d, i) => {
    if (d === null) return null;
    const out =
      padding === 'same' ? Math.ceil(d / strides[i]!) : Math.ceil((d - (k[i]! - 1) * dilation[i]!) / strides[i]!);
    return out >= 1 ? out : fail(path, 'the window is larger than the input');
  });
}

const IDENTITY = new Set([
  'Dropout',
  'SpatialDropout1D',
  'GaussianNoise',
  'GaussianDropout',
  'AlphaDropout',
  'Activation',
  'Masking',
  'ReLU',
  'LeakyReLU',
  'ELU',
  'ThresholdedReLU',
  'Softmax',
]);
const MERGE = new Set(['Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum']);

/** Adds one layer's weights to the tally and returns its output shape. */
function layer(l: Obj, inputs: Shape[], path: string, tally: Tally): Shape {
  const cls = typeof l['className'] === 'string' ? l['className'] : fail(path, 'a layer needs a class name');
  const c = obj(l['config']);
  const s = inputs[0] ?? fail(path, 'a layer without an input');
  const last = () => known(s[s.length - 1], path, 'the input size');
  if (IDENTITY.has(cls)) return s;
  if (MERGE.has(cls)) return s;
  switch (cls) {
    case 'InputLayer':
      return s;
    case 'Sequential':
      return sequential(c, `${path}.config`, s, tally);
    case 'Dense': {
      const units = known(num(c['units'], 0), path, 'units');
      tally.add(last() * units + units, path);
      return [...s.slice(0, -1), units];
    }
    case 'Embedding': {
      const vocab = known(num(c['inputDim'], 0), path, 'inputDim');
      const dim = known(num(c['outputDim'], 0), path, 'outputDim');
      tally.add(vocab * dim, path);
      return [...s, dim];
    }
    case 'Conv1D':
    case 'Conv2D':
    case 'Conv3D':
    case 'Conv2DTranspose':
    case 'SeparableConv2D':
    case 'DepthwiseConv2D': {
      const rank = cls === 'Conv1D' ? 1 : cls === 'Conv3D' ? 3 : 2;
      const { dims, ch, shape } = spatial(s, rank, c, path);
      const cin = known(ch, path, 'the input channels');
      const k = tuple(c['kernelSize'], rank, 0).map((x) => known(x, path, 'kernelSize'));
      const strides = tuple(c['strides'], rank, 1).map((x) => known(x, path, 'strides'));
      const dilation = tuple(c['dilationRate'], rank, 1).map((x) => known(x, path, 'dilationRate'));
      const padding = c['padding'] === 'same' ? 'same' : 'valid';
      const window = k.reduce((a, b) => a * b, 1);
      if (cls === 'DepthwiseConv2D') {
        const m = known(num(c['depthMultiplier'], 1), path, 'depthMultiplier');
        tally.add(window * cin * m + cin * m, path);
        return shape(convDims(dims, k, strides, dilation, padding, path), cin * m);
      }
      const filters = known(num(c['filters'], 0), path, 'filters');
      if (cls === 'SeparableConv2D') {
        const m = known(num(c['depthMultiplier'], 1), path, 'depthMultiplier');
        tally.add(window * cin * m + cin * m * filters + filters, path);
      } else tally.add(window * cin * filters + filters, path);
      if (cls === 'Conv2DTranspose') {
        const out = dims.map((d, i) =>
          d === null ? null : padding === 'same' ? d * strides[i]! : d * strides[i]! + Math.max(k[i]! - strides[i]!, 0),
        );
        return shape(out, filters);
      }
      return shape(convDims(dims, k, strides, dilation, padding, path), filters);
    }
    case 'MaxPooling1D':
    case 'MaxPooling2D':
    case 'MaxPooling3D':
    case 'AveragePooling1D':
    case 'AveragePooling2D':
    case 'AveragePooling3D': {
      const rank = Number(cls.slice(-2, -1));
      const { dims, ch, shape } = spatial(s, rank, c, path);
      const pool = tuple(c['poolSize'], rank, 2).map((x) => known(x, path, 'poolSize'));
      const strides = c['strides'] === null || c['strides'] === undefined ? pool : tuple(c['strides'], rank, 1);
      const padding = c['padding'] === 'same' ? 'same' : 'valid';
      return shape(convDims(dims, pool, strides, Array<number>(rank).fill(1), padding, path), ch);
    }
    case 'GlobalAveragePooling1D':
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling1D':
    case 'GlobalMaxPooling2D':
      return [spatial(s, Number(cls.slice(-2, -1)), c, path).ch];
    case 'Cropping2D':
    case 'ZeroPadding2D':
    case 'UpSampling2D': {
      const { dims, ch, shape } = spatial(s, 2, c, path);
      if (cls === 'UpSampling2D') {
        const size = tuple(c['size'], 2, 2);
        return shape(
          dims.map((d, i) => (d === null ? null : d * size[i]!)),
          ch,
        );
      }
      const field = cls === 'Cropping2D' ? c['cropping'] : c['padding'];
      const pairs = Array.isArray(field)
        ? field.map((p) => (Array.isArray(p) ? (p as number[]) : [num(p, 0), num(p, 0)]))
        : [0, 1].map(() => [num(field, cls === 'Cropping2D' ? 0 : 1), num(field, cls === 'Cropping2D' ? 0 : 1)]);
      const sign = cls === 'Cropping2D' ? -1 : 1;
      return shape(
        dims.map((d, i) => (d === null ? null : d + sign * ((pairs[i]?.[0] ?? 0) + (pairs[i]?.[1] ?? 0)))),
        ch,
      );
    }
    case 'Flatten':
      return [product(s)];
    case 'Reshape': {
      const target = shapeOf(c['targetShape']) ?? fail(path, 'Reshape needs targetShape');
      const total = product(s);
      const rest = product(target.filter((d) => d !== -1));
      return target.map((d) => (d === -1 ? (total === null || rest === null ? null : total / rest) : d));
    }
    case 'Permute': {
      const dims = shapeOf(c['dims']) ?? fail(path, 'Permute needs dims');
      return dims.map((d) => s[(d ?? 0) - 1] ?? null);
    }
    case 'RepeatVector':
      return [known(num(c['n'], 0), path, 'n'), ...s];
    case 'Concatenate': {
      const axis = num(c['axis'], -1);
      const at = (x: Shape) => (axis < 0 ? x.length + axis : axis - 1);
      const out = [...s];
      out[at(s)] = inputs.reduce<number | null>((a, x) => (a === null || x[at(x)] == null ? null : a + x[at(x)]!), 0);
      return out;
    }
    case 'BatchNormalization':
    case 'LayerNormalization': {
      const axes = Array.isArray(c['axis']) ? (c['axis'] as number[]) : [num(c['axis'], -1)];
      const size = axes.reduce(
        (a, ax) => a * known(s[ax < 0 ? s.length + ax : ax - 1], path, 'the normalised axis'),
        1,
      );
      tally.add((cls === 'BatchNormalization' ? 4 : 2) * size, path);
      return s;
    }
    case 'PReLU':
      tally.add(known(product(s), path, 'the input size'), path);
      return s;
    case 'SimpleRNN':
    case 'GRU':
    case 'LSTM': {
      const units = known(num(c['units'], 0), path, 'units');
      const gates = cls === 'LSTM' ? 4 : cls === 'GRU' ? 3 : 1;
      tally.add(gates * units * (last() + units + (c['resetAfter'] === true ? 2 : 1)), path);
      return c['returnSequences'] === true ? [s[0] ?? null, units] : [units];
    }
    case 'Bidirectional': {
      const inner = obj(c['layer']);
      const before = tally.total;
      const out = layer(inner, [s], `${path}.config.layer`, tally);
      tally.add(tally.total - before, path);
      const mode = c['mergeMode'] ?? 'concat';
      if (mode !== 'concat') return out;
      return [...out.slice(0, -1), out[out.length - 1] == null ? null : out[out.length - 1]! * 2];
    }
    case 'TimeDistributed': {
      const out = layer(obj(c['layer']), [s.slice(1)], `${path}.config.layer`, tally);
      return [s[0] ?? null, ...out];
    }
    default:
      return fail(path, `the size of a ${cls} layer cannot be computed before building; it is not accepted here`);
  }
}

function sequential(c: Obj | NormalizedNode[], path: string, input: Shape | undefined, tally: Tally): Shape {
  const layers = Array.isArray(c) ? c : Array.isArray(c['layers']) ? c['layers'] : fail(path, 'no layers');
  const at = Array.isArray(c) ? path : `${path}.layers`;
  let shape = input;
  layers.forEach((node, i) => {
    const l = obj(node);
    const cls = typeof l['className'] === 'string' ? l['className'] : '';
    const declared = declaredInput(cls, obj(l['config']));
    shape ??= declared;
    if (!shape) return fail(`${at}.${i}`, 'the first layer needs batch_input_shape or input_shape');
    if (cls !== 'InputLayer') shape = layer(l, [shape], `${at}.${i}`, tally);
  });
  return shape ?? fail(path, 'no layers');
}

function functional(c: Obj, path: string, tally: Tally): void {
  const layers = Array.isArray(c['layers']) ? c['layers'].map(obj) : fail(path, 'no layers');
  const outputs = new Map<string, Shape>();
  let left = layers.map((l, i) => ({ l, i }));
  while (left.length > 0) {
    const next = left.filter(({ l, i }) => {
      const at = `${path}.layers.${i}`;
      const name = typeof l['name'] === 'string' ? l['name'] : fail(at, 'a layer needs a name');
      const cls = typeof l['className'] === 'string' ? l['className'] : '';
      if (cls === 'InputLayer') {
        outputs.set(name, declaredInput(cls, obj(l['config'])) ?? fail(at, 'an InputLayer needs batch_input_shape'));
        return false;
      }
      const nodes = Array.isArray(l['inboundNodes']) ? l['inboundNodes'] : [];
      const first = Array.isArray(nodes[0]) ? nodes[0] : fail(at, 'a layer without inbound nodes');
      const names = first.map((n) => (Array.isArray(n) && typeof n[0] === 'string' ? n[0] : fail(at, 'bad inbound')));
      if (!names.every((n) => outputs.has(n))) return true;
      outputs.set(
        name,
        layer(
          l,
          names.map((n) => outputs.get(n)!),
          at,
          tally,
        ),
      );
      return false;
    });
    if (next.length === left.length) fail(path, 'layers whose inputs never resolve');
    left = next;
  }
}

/**
 * Counts a topology's weights (trainable and not) from its normalised config, layer by
 * layer with shapes carried through, before TensorFlow.js allocates anything: a spec cannot
 * make the coordinator or a worker allocate tens of GB only to be refused afterwards.
 * Throws `LIMIT_EXCEEDED` as soon as the count passes `limit`; layers whose size cannot be
 * computed from the config are refused.
 */
export function countTopologyParams(topology: NormalizedNode, limit = Number.MAX_SAFE_INTEGER): number {
  const tally = new Tally(limit);
  const top = obj(topology);
  const cls = top['className'];
  const config = top['config'];
  if (cls === 'Sequential')
    sequential(Array.isArray(config) ? config : obj(config), 'model.topology.config', undefined, tally);
  else if (cls === 'Model' || cls === 'Functional') functional(obj(config), 'model.topology.config', tally);
  else fail('model.topology', 'the top level must be a Sequential or a functional Model');
  return tally.total;
}
