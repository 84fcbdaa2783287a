import { InvalidJobSpecError } from '../job/job-spec.js';

/** TensorFlow.js's own key conversion (`toCamelCase` in tfjs-layers): `kernel_size` → `kernelSize`. */
export function toCamelCase(identifier: string): string {
  if (identifier.length <= 1 || !identifier.includes('_')) return identifier;
  return identifier.replace(/_+(\w|$)/g, (_m, p1: string) => p1.toUpperCase());
}

/** A topology with every key (and string value but `name`) as TensorFlow.js reads it. */
export type NormalizedNode = null | boolean | number | string | NormalizedNode[] | { [key: string]: NormalizedNode };

/** Fields whose strings are layer names, which TensorFlow.js keeps as they are. */
const VERBATIM = new Set(['name', 'inboundNodes', 'inputLayers', 'outputLayers']);

/** Nesting and node limits: a topology is data of a bounded size. */
export const MAX_TOPOLOGY_DEPTH = 64;
export const MAX_TOPOLOGY_NODES = 200_000;

/**
 * Converts a topology the way TensorFlow.js does before deserialising it
 * (`convertPythonicToTs`: snake_case keys and string values to camelCase), so that every
 * check sees what the model will be built from, whichever spelling the spec used. Two keys
 * of one object that name the same field (`class_name` and `className`) are refused: which
 * one TensorFlow.js would use is not something a check should guess. `inspect` sees each
 * field under its normalised name with its raw value and its path in the spec's own spelling.
 */
export function normalizeTopology(
  topology: unknown,
  inspect?: (field: string, value: unknown, path: string) => void,
  root = 'model.topology',
): NormalizedNode {
  let nodes = 0;
  const visit = (node: unknown, path: string, depth: number, key: string): NormalizedNode => {
    if (++nodes > MAX_TOPOLOGY_NODES || depth > MAX_TOPOLOGY_DEPTH)
      throw new InvalidJobSpecError([{ path, message: 'topology too large or too deeply nested' }]);
    if (node === null || typeof node === 'boolean') return node;
    if (typeof node === 'number') {
      if (!Number.isFinite(node)) throw new InvalidJobSpecError([{ path, message: 'numbers must be finite' }]);
      return node;
    }
    if (typeof node === 'string') return VERBATIM.has(key) ? node : toCamelCase(node);
    if (Array.isArray(node)) return node.map((v, i) => visit(v, `${path}.${i}`, depth + 1, key));
    if (typeof node !== 'object')
      throw new InvalidJobSpecError([{ path, message: `a ${typeof node} cannot appear in a topology` }]);
    const out: Record<string, NormalizedNode> = {};
    for (const [k, v] of Object.entries(node)) {
      const camel = toCamelCase(k);
      if (Object.hasOwn(out, camel))
        throw new InvalidJobSpecError([
          { path: `${path}.${k}`, message: `names the same field as another key (${camel}); give it once` },
        ]);
      inspect?.(camel, v, `${path}.${k}`);
      out[camel] = visit(v, `${path}.${k}`, depth + 1, camel);
    }
    return out;
  };
  return visit(topology, root, 0, '');
}
