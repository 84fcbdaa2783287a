import { Accumulator, STAGE_FLOATS } from '../math/accumulator.js';

let scratch: Accumulator | null | undefined;

/**
 * A `STAGE_FLOATS`-sized accumulator used as wasm scratch memory by the codecs' update
 * encoders and decoders (values region = floats, stage = encoded bytes); undefined
 * without WebAssembly SIMD. One per thread; callers finish with it before returning.
 */
export function simdScratch(): Accumulator | undefined {
  if (scratch === undefined) {
    const a = new Accumulator(STAGE_FLOATS);
    scratch = a.simd ? a : null;
  }
  return scratch ?? undefined;
}
