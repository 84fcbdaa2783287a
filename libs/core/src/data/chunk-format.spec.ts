import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CHUNK_HEADER_BYTES, decodeChunk, writeChunkHeader } from './chunk-format.js';
import { verifyChunk } from './chunk-reader.js';
import { SplitChunkWriter } from './chunk-writer.js';
import { ChunkCache, ChunkedSplit } from './chunked-split.js';
import { DatasetChunkError } from './dataset-chunk-error.js';
import { checkManifest, parseManifest, type DatasetManifest } from './dataset-manifest.js';
import { gatherBatch } from './dataset.js';

/** Writes `count` examples of 3 uint8 values (example i holds i, i+1, i+2; label i % 4) in chunks of 4. */
async function build(count: number, labelDtype: 'int32' | 'float32' = 'int32') {
  const stored = new Map<string, Uint8Array>();
  const w = new SplitChunkWriter('train', 3, 'uint8', labelDtype, 4, {
    put: async (name, bytes) => void stored.set(name, bytes.slice()),
  });
  for (let i = 0; i < count; i++) {
    w.slot().set([i, i + 1, i + 2]);
    await w.commit(labelDtype === 'int32' ? i % 4 : i / 2);
  }
  const split = await w.finish();
  const manifest: DatasetManifest = checkManifest(
    {
      format: 'gradfleet-chunks',
      version: 1,
      featureShape: [3],
      dtype: 'uint8',
      scale: 1 / 255,
      labels: { kind: labelDtype === 'int32' ? 'class' : 'regression', dtype: labelDtype, numClasses: 4 },
      chunkExamples: 4,
      splits: { train: split },
    },
    'm',
  );
  return { stored, manifest };
}

/**
 * A split of `build(40)` (ten chunks of 4 examples) whose fetches each wait until the test
 * `open`s that chunk's gate: `calls` lists the fetches in start order, `most` the most that
 * ran at once; `afterGate(i)` runs once a gate opens (it may throw, as a network error).
 */
async function gatedSplit(cache: ChunkCache, afterGate: (i: number) => void = () => undefined) {
  const { stored, manifest } = await build(40);
  const calls: number[] = [];
  const gates = new Map<number, () => void>();
  let running = 0;
  const state = { most: 0 };
  const split = new ChunkedSplit(
    manifest,
    'train',
    cache,
    async (s, i) => {
      calls.push(i);
      running++;
      state.most = Math.max(state.most, running);
      await new Promise<void>((r) => gates.set(i, r));
      running--;
      afterGate(i);
      return verifyChunk(stored.get(`${s}-${String(i).padStart(6, '0')}.chunk`)!, manifest, s, i);
    },
    'k',
  );
  const open = async (i: number) => {
    while (!gates.has(i)) await new Promise((r) => setTimeout(r, 1));
    gates.get(i)!();
    gates.delete(i);
  };
  return { split, calls, gates, open, state };
}

const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(DatasetChunkError);
    return (err as DatasetChunkError).code;
  }
  throw new Error('did not throw');
};

describe('chunked dataset format', () => {
  it('writes fixed-size chunks (a short last one) that verify and decode to the examples', async () => {
    const { stored, manifest } = await build(10);
    expect(manifest.splits.train.chunks.map((c) => c.examples)).toEqual([4, 4, 2]);
    expect([...stored.keys()]).toEqual(['train-000000.chunk', 'train-000001.chunk', 'train-000002.chunk']);
    const last = verifyChunk(stored.get('train-000002.chunk')!, manifest, 'train', 2);
    expect(Array.from(last.x)).toEqual([8, 9, 10, 9, 10, 11]);
    expect(Array.from(last.y)).toEqual([0, 1]);
    expect(stored.get('train-000000.chunk')!.byteLength).toBe(CHUNK_HEADER_BYTES + 4 * 4 + 4 * 3);
    // The manifest survives its JSON form.
    expect(parseManifest(Buffer.from(JSON.stringify(manifest)), 'manifest.json')).toEqual(manifest);
  });

  it('refuses a truncated chunk, a corrupted one and one longer than recorded, naming the chunk', async () => {
    const { stored, manifest } = await build(8);
    const good = stored.get('train-000001.chunk')!;
    expect(codeOf(() => verifyChunk(good.subarray(0, good.length - 1), manifest, 'train', 1))).toBe(
      'CHUNK_SIZE_MISMATCH',
    );
    const padded = new Uint8Array(good.length + 1);
    padded.set(good);
    expect(codeOf(() => verifyChunk(padded, manifest, 'train', 1))).toBe('CHUNK_SIZE_MISMATCH');
    const flipped = good.slice();
    flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 1;
    expect(codeOf(() => verifyChunk(flipped, manifest, 'train', 1))).toBe('CHUNK_HASH_MISMATCH');
    expect(() => verifyChunk(flipped, manifest, 'train', 1, 'http://c/chunks/train/1')).toThrow(
      'http://c/chunks/train/1: SHA-256 does not match the manifest (corrupted)',
    );
    // The right chunk at the wrong index: the hash of another entry.
    expect(codeOf(() => verifyChunk(stored.get('train-000000.chunk')!, manifest, 'train', 1))).toBe(
      'CHUNK_HASH_MISMATCH',
    );
    expect(codeOf(() => verifyChunk(good, manifest, 'train', 2))).toBe('CHUNK_MISMATCH');
    expect(codeOf(() => verifyChunk(good, manifest, 'test', 0))).toBe('CHUNK_MISMATCH');
  });

  it('refuses a chunk whose header lies about its lengths before touching the data', () => {
    const buf = new Uint8Array(CHUNK_HEADER_BYTES + 8);
    writeChunkHeader(buf, 0xffffffff, 0xffffffff, 'float32', 'int32');
    expect(codeOf(() => decodeChunk(buf, 'c'))).toBe('CHUNK_MALFORMED');
    expect(() => decodeChunk(buf, 'c')).toThrow(/4294967295 examples of 4294967295 float32 need/);
    writeChunkHeader(buf, 1, 1, 'uint8', 'int32');
    expect(() => decodeChunk(buf, 'c')).toThrow(/c: 24 bytes, but 1 examples of 1 uint8 need 21/);
    expect(() => decodeChunk(buf.subarray(0, 10), 'c')).toThrow(/shorter than a chunk header/);
    const bad = buf.slice();
    bad[0] = 0;
    expect(() => decodeChunk(bad, 'c')).toThrow(/bad magic/);
    const dtype = new Uint8Array(CHUNK_HEADER_BYTES + 5);
    writeChunkHeader(dtype, 1, 1, 'uint8', 'int32');
    dtype[12] = 7;
    expect(() => decodeChunk(dtype, 'c')).toThrow(/unknown feature dtype code 7/);
    // A decoded chunk with a header the manifest does not expect, hashed to pass the hash check.
    const m: DatasetManifest = {
      format: 'gradfleet-chunks',
      version: 1,
      featureShape: [1],
      dtype: 'float32',
      scale: 1,
      labels: { kind: 'class', dtype: 'int32', numClasses: 1 },
      chunkExamples: 1,
      splits: {
        train: {
          examples: 1,
          chunks: [{ examples: 1, bytes: 24, sha256: createHash('sha256').update(buf).digest('hex') }],
        },
      },
    };
    const ok = new Uint8Array(CHUNK_HEADER_BYTES + 8);
    writeChunkHeader(ok, 1, 1, 'uint8', 'int32'); // 21 bytes needed, 24 given: malformed
    m.splits.train.chunks[0]!.sha256 = createHash('sha256').update(ok).digest('hex');
    expect(codeOf(() => verifyChunk(ok, m, 'train', 0))).toBe('CHUNK_MALFORMED');
  });

  it('refuses a manifest that lies about sizes or counts, or is not one', async () => {
    const { manifest } = await build(10);
    const lie = (f: (m: DatasetManifest) => void) => {
      const m = structuredClone(manifest);
      f(m);
      return codeOf(() => parseManifest(Buffer.from(JSON.stringify(m)), 'manifest.json'));
    };
    expect(lie((m) => (m.splits.train.chunks[0]!.bytes += 1))).toBe('MANIFEST_INVALID');
    expect(lie((m) => (m.splits.train.examples = 11))).toBe('MANIFEST_INVALID');
    expect(lie((m) => (m.splits.train.chunks[1]!.examples = 3))).toBe('MANIFEST_INVALID');
    expect(lie((m) => (m.featureShape = [1 << 20, 1 << 20]))).toBe('MANIFEST_INVALID');
    expect(lie((m) => (m.labels.dtype = 'float32'))).toBe('MANIFEST_INVALID');
    expect(lie((m) => (m.splits.train.chunks[0]!.sha256 = 'x'))).toBe('MANIFEST_INVALID');
    expect(codeOf(() => parseManifest(Buffer.from('{"format":'), 'manifest.json'))).toBe('MANIFEST_INVALID');
    expect(() => parseManifest(Buffer.from('{"secret": 1'), 'manifest.json')).toThrow('manifest.json: not valid JSON');
  });

  it('gathers batches from fetched chunks exactly as from memory, fetching only the chunks of the slice', async () => {
    const { stored, manifest } = await build(10);
    const fetched: number[] = [];
    const cache = new ChunkCache(1024);
    const split = new ChunkedSplit(
      manifest,
      'train',
      cache,
      async (s, i) => {
        fetched.push(i);
        return verifyChunk(stored.get(`${s}-00000${i}.chunk`)!, manifest, s, i);
      },
      'k',
    );
    const memory = {
      x: Uint8Array.from({ length: 30 }, (_, k) => Math.floor(k / 3) + (k % 3)),
      y: Int32Array.from({ length: 10 }, (_, i) => i % 4),
      count: 10,
      featureSize: 3,
      scale: 1 / 255,
    };
    const indices = [9, 1, 2];
    const pinned = await split.ensure(indices);
    expect(pinned).toEqual([0, 2]);
    expect(fetched).toEqual([0, 2]);
    const [xa, ya, xb, yb] = [new Float32Array(9), new Float32Array(12), new Float32Array(9), new Float32Array(12)];
    split.gather(indices, 4, xa, ya, 'one-hot');
    gatherBatch(memory, indices, 4, xb, yb, 'one-hot');
    expect(xa).toEqual(xb);
    expect(ya).toEqual(yb);
    split.release(pinned);
    await split.release(await split.ensure([0]));
    expect(fetched).toEqual([0, 2]); // a hit
    expect(cache.hits).toBe(1);
  });

  it('keeps the cache under its byte limit once a batch is released, holding a batch larger than it meanwhile', async () => {
    const { stored, manifest } = await build(40);
    const cache = new ChunkCache(40); // one chunk of 4 examples is 12 + 16 = 28 decoded bytes
    const split = new ChunkedSplit(
      manifest,
      'train',
      cache,
      async (s, i) => verifyChunk(stored.get(`${s}-${String(i).padStart(6, '0')}.chunk`)!, manifest, s, i),
      'k',
    );
    const all = Array.from({ length: 40 }, (_, i) => i);
    const pinned = await split.ensure(all);
    expect(cache.bytes).toBe(280); // all ten pinned
    const x = new Float32Array(120);
    split.gather(all, 4, x, new Float32Array(160), 'one-hot');
    expect(x[119]).toBeCloseTo(41 / 255);
    split.release(pinned);
    expect(cache.bytes).toBeLessThanOrEqual(40);
    await expect(split.ensure([40])).rejects.toThrow(RangeError);
  });

  it('the writer fills the next chunk while one is stored, and reuses a buffer only once its store resolved', async () => {
    const puts: { name: string; bytes: Uint8Array; copy: Uint8Array; done: () => void }[] = [];
    const w = new SplitChunkWriter('train', 3, 'uint8', 'int32', 4, {
      put: (name, bytes) => new Promise<void>((done) => puts.push({ name, bytes, copy: bytes.slice(), done })),
    });
    const add = async (i: number) => {
      w.slot().set([i, i, i]);
      await w.commit(i % 4);
    };
    for (let i = 0; i < 4; i++) await add(i); // chunk 0 handed to the sink, not stored yet
    expect(puts.map((p) => p.name)).toEqual(['train-000000.chunk']);
    for (let i = 4; i < 7; i++) await add(i); // chunk 1 fills the other buffer meanwhile
    let returned = false;
    const full = add(7).then(() => (returned = true)); // chunk 1 handed over: waits for chunk 0's store
    await new Promise((r) => setTimeout(r, 5));
    expect(puts).toHaveLength(2);
    expect(returned).toBe(false);
    expect(puts[0]!.bytes).toEqual(puts[0]!.copy); // untouched while stored
    puts[0]!.done();
    await full;
    const end = (async () => {
      await add(8); // refills chunk 0's buffer
      return w.finish(); // the partial chunk 2, then waits for chunks 1 and 2
    })();
    await new Promise((r) => setTimeout(r, 5));
    expect(puts).toHaveLength(3);
    expect(puts[1]!.bytes).toEqual(puts[1]!.copy);
    puts[1]!.done();
    puts[2]!.done();
    const split = await end;
    expect(split.examples).toBe(9);
    expect(split.chunks.map((c) => c.examples)).toEqual([4, 4, 1]);
    expect(decodeChunk(puts[0]!.copy, 'c0').x).toEqual(Uint8Array.from([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]));
  });

  it('a step joins a prefetch still running even when its own fetches keep it busy: the chunk is downloaded once', async () => {
    const cache = new ChunkCache();
    const { split, calls, gates, open } = await gatedSplit(cache); // ten chunks of 4 examples
    split.prefetch([9]);
    // Chunks 0-4 and 9: four fetches at a time keep the step on 0-3 while chunk 9's prefetch lands.
    const step = split.ensure([0, 4, 8, 12, 16, 36]);
    await open(9);
    for (const c of [0, 1, 2, 3, 4]) await open(c);
    await new Promise((r) => setTimeout(r, 5));
    gates.get(9)?.(); // a second download of chunk 9 (the bug this guards against) is let through
    expect(await step).toEqual([0, 1, 2, 3, 4, 9]);
    expect(calls.filter((c) => c === 9)).toHaveLength(1);
    expect(calls).toHaveLength(6);
    expect(cache.misses + cache.prefetched).toBe(6); // one count per download
    expect(cache.fetchedBytes).toBe(6 * 28);
  });

  it('two steps waiting on one download fetch it once and each count a miss (downloads ≤ misses + prefetched)', async () => {
    const { stored, manifest } = await build(40);
    const cache = new ChunkCache();
    const calls: number[] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const split = new ChunkedSplit(
      manifest,
      'train',
      cache,
      async (s, i) => {
        calls.push(i);
        await gate;
        return verifyChunk(stored.get(`${s}-${String(i).padStart(6, '0')}.chunk`)!, manifest, s, i);
      },
      'k',
    );
    // The probe and the first step, say: both need chunk 0 before either download lands.
    const first = split.ensure([0, 1]);
    const second = split.ensure([2]);
    open();
    split.release(await first);
    split.release(await second);
    expect(calls).toEqual([0]);
    expect(cache.misses).toBe(2);
    expect(cache.prefetched).toBe(0);
    expect(cache.fetchedBytes).toBe(28); // one chunk of 4 examples: 12 + 16 decoded bytes
    expect(cache.bytes).toBe(28); // pinned twice, released twice, kept
  });

  it('prefetches hinted chunks two at a time, unpinned; a step needing one waits for that same fetch; failures are dropped', async () => {
    const cache = new ChunkCache(1024);
    let failOnce = true;
    const { split, calls, open, state } = await gatedSplit(cache, (i) => {
      if (i === 5 && failOnce) {
        failOnce = false;
        throw new Error('network');
      }
    });
    split.prefetch([1, 5, 3, 99, -1, 1.5]);
    expect(calls).toEqual([1, 5]); // two at a time; out-of-range indices ignored
    const step = split.ensure([4, 5]); // chunk 1 (being prefetched) and chunk 1 only
    await open(1);
    const pinned = await step;
    expect(pinned).toEqual([1]);
    expect(calls.filter((c) => c === 1)).toHaveLength(1); // the step waited for the prefetch's fetch
    await open(5); // fails: dropped, the next hinted one starts
    await open(3);
    // Chunk 3 only: chunk 1's fetch was joined by the step, which counted it as its miss.
    while (cache.prefetched < 1) await new Promise((r) => setTimeout(r, 1));
    expect(cache.misses).toBe(1);
    expect(state.most).toBe(2);
    const again = split.ensure([20]); // chunk 5: fetched again by the step itself
    await open(5);
    expect(await again).toEqual([5]);
    split.release(pinned);
    split.release([5]);
    expect(cache.prefetched).toBe(1);
    expect(cache.misses).toBe(2);
    expect(calls).toEqual([1, 5, 3, 5]); // four downloads, three of them landed: misses + prefetched
    const hits = cache.hits;
    split.release(await split.ensure([12])); // chunk 3: prefetched, a hit
    expect(cache.hits).toBe(hits + 1);
    expect(cache.bytes).toBe(3 * 28);
  });
});
