import type { ChunkSink } from '@gradfleet/core';

/** `sink` whose stores in flight can be awaited (`idle`). */
export function trackedSink(sink: ChunkSink): ChunkSink & { idle(): Promise<void> } {
  const inFlight = new Set<Promise<unknown>>();
  return {
    put(name, bytes) {
      const stored = sink.put(name, bytes);
      const settled = stored.catch(() => undefined);
      inFlight.add(settled);
      void settled.then(() => inFlight.delete(settled));
      return stored;
    },
    idle: async () => {
      await Promise.all(inFlight);
    },
  };
}
