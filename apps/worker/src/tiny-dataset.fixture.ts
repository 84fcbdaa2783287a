import { SplitChunkWriter, checkManifest, type DatasetManifest } from '@gradfleet/core';

/**
 * A chunked training split of `count` examples of 3 uint8 values (example i holds i, i+1,
 * i+2; label i % 4) in chunks of 4, written as an ingestion writes them: the manifest and
 * each chunk's stored bytes by name. For the worker's unit tests.
 */
export async function tinyChunkedDataset(
  count: number,
): Promise<{ manifest: DatasetManifest; stored: Map<string, Uint8Array> }> {
  const stored = new Map<string, Uint8Array>();
  const w = new SplitChunkWriter('train', 3, 'uint8', 'int32', 4, {
    put: async (name, bytes) => void stored.set(name, bytes.slice()),
  });
  for (let i = 0; i < count; i++) {
    w.slot().set([i, i + 1, i + 2]);
    await w.commit(i % 4);
  }
  const manifest = checkManifest(
    {
      format: 'gradfleet-chunks',
      version: 1,
      featureShape: [3],
      dtype: 'uint8',
      scale: 1 / 255,
      labels: { kind: 'class', dtype: 'int32', numClasses: 4 },
      chunkExamples: 4,
      splits: { train: await w.finish() },
    },
    'm',
  );
  return { manifest, stored };
}
