import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxRelativeDifference, selectBackend, type JobStatus } from '@gradfleet/core';
import { runCli } from './helpers/cli.js';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { smallMlpTopology } from './helpers/models.js';
import { startS3Server, type S3TestServer } from './helpers/s3-server.js';

/** Resident set size of a process, in bytes (Linux). */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

describe('named chunked datasets across processes', () => {
  const cluster = new TestCluster();
  let mnist: SmallMnist;
  // Dropout-free, as tests/equivalence.spec.ts: training is deterministic up to the order of float sums.
  const job = (dataset: unknown) => ({
    model: { topology: smallMlpTopology() },
    dataset,
    epochs: 1,
    batchSize: 64,
    validationSplit: 0,
    learningRate: 0.01,
    minWorkers: 2,
    maxWorkers: 2,
    seed: 7,
  });

  let s3: S3TestServer;

  beforeAll(async () => {
    await selectBackend('wasm');
    mnist = await writeSmallMnist(3000, 500);
    s3 = await startS3Server(['src', 'chunks']);
    await cluster.startCoordinator(['--dataset-s3-allow', 'src,chunks'], 0, s3.env);
    // A cache of about three chunks: workers evict and fetch again all the time.
    for (let i = 0; i < 2; i++) cluster.startWorker(['--name', `chunked-${i}`, '--cache-bytes', '200000']);
    await cluster.client.waitForWorkers(2, 60_000);
  });
  afterAll(async () => {
    await cluster.stop();
    await s3?.close();
    rmSync(mnist.dir, { recursive: true, force: true });
  });

  it('ingests IDX through the CLI and trains to the same model as the in-memory path, with exact audits', async () => {
    const c = ['--coordinator', cluster.url];
    const { trainImages, trainLabels, testImages, testLabels } = mnist.dataset.idx;
    const ingested = await runCli([
      'dataset',
      'ingest',
      trainImages,
      '--idx-labels',
      trainLabels,
      '--test',
      testImages,
      '--test-labels',
      testLabels,
      '--name',
      'mnist-small',
      '--chunk-bytes',
      '65536',
      ...c,
    ]);
    expect(ingested.code, ingested.out).toBe(0);
    expect(ingested.out).toMatch(/mnist-small {2}READY {2}3000 train \+ 500 test examples of 28x28 uint8/);
    const ls = await runCli(['dataset', 'ls', '--json', ...c]);
    const list = JSON.parse(ls.out) as { name: string; train: { chunks: number } }[];
    expect(list.map((d) => d.name)).toEqual(['mnist-small']);
    expect(list[0]!.train.chunks).toBe(37); // 83 examples of 788 bytes per 64 KiB chunk

    const run = async (dataset: unknown): Promise<JobStatus> => {
      const submitted = await cluster.client.submit(job(dataset) as never);
      return cluster.client.waitForJob(submitted.id);
    };
    const chunked = await run({ name: 'mnist-small' });
    expect(chunked.state, `${chunked.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    expect(chunked.dataset?.format).toBe('chunked');
    const inMemory = await run(mnist.dataset);
    expect(inMemory.state).toBe('SUCCEEDED');
    for (const j of [chunked, inMemory]) expect(j.history.every((h) => h.audit.ok)).toBe(true);
    // Same seed, same sampler, same float32 examples: the same training, up to the order of
    // float sums (the bound of tests/equivalence.spec.ts); a cache of three chunks changes nothing.
    const weights = async (id: string) => new Float32Array((await cluster.client.model(id)).weights);
    const [a, b] = [await weights(chunked.id), await weights(inMemory.id)];
    expect(a.length).toBe(b.length);
    const diff = maxRelativeDifference(a, b);
    console.log(
      `chunked vs in-memory: worst relative weight difference ${diff.toExponential(2)}, test accuracy ${chunked.result!.testAccuracy} vs ${inMemory.result!.testAccuracy}`,
    );
    expect(diff).toBeLessThan(1e-4);
    expect(Math.abs(chunked.result!.testAccuracy! - inMemory.result!.testAccuracy!)).toBeLessThan(0.005);
    expect(chunked.result!.testAccuracy).toBeGreaterThan(0.8);

    // A job naming a dataset that does not exist is refused with the field.
    await expect(cluster.client.submit(job({ name: 'nope' }) as never)).rejects.toThrow(/no dataset named nope/);
    const rm = await runCli(['dataset', 'rm', 'mnist-small', ...c]);
    expect(rm.code, rm.out).toBe(0);
    expect(JSON.parse((await runCli(['dataset', 'ls', '--json', ...c])).out)).toEqual([]);
  });

  it('S3: ingests IDX objects from a bucket into chunks kept in a bucket, and trains on them', async () => {
    const client = s3.client();
    const idx = mnist.dataset.idx;
    for (const [key, file] of Object.entries(idx))
      await client.send(new PutObjectCommand({ Bucket: 'src', Key: `mnist/${key}`, Body: readFileSync(file) }));
    const source = {
      idx: {
        trainImages: 's3://src/mnist/trainImages',
        trainLabels: 's3://src/mnist/trainLabels',
        testImages: 's3://src/mnist/testImages',
        testLabels: 's3://src/mnist/testLabels',
      },
    };
    await cluster.client.ingestDataset('from-s3', { source, store: 's3://chunks/sets', chunkBytes: 1 << 20 });
    const ready = await cluster.client.waitForDataset('from-s3');
    expect(ready.state, JSON.stringify(ready.error)).toBe('READY');
    expect(ready.store).toBe('s3://chunks/sets/from-s3/');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'chunks', Prefix: 'sets/from-s3/' }));
    expect(listed.Contents?.map((o) => o.Key).sort()).toEqual([
      'sets/from-s3/manifest.json',
      'sets/from-s3/test-000000.chunk',
      'sets/from-s3/train-000000.chunk',
      'sets/from-s3/train-000001.chunk',
      'sets/from-s3/train-000002.chunk',
    ]);
    const submitted = await cluster.client.submit(job({ name: 'from-s3' }) as never);
    const done = await cluster.client.waitForJob(submitted.id);
    expect(done.state, `${done.reason}\n${cluster.log}`).toBe('SUCCEEDED');
    expect(done.history.every((h) => h.audit.ok)).toBe(true);
    expect(done.result!.testAccuracy).toBeGreaterThan(0.8);
    // In use by no unfinished job: removing it empties its prefix.
    await cluster.client.removeDataset('from-s3');
    const after = await client.send(new ListObjectsV2Command({ Bucket: 'chunks', Prefix: 'sets/from-s3/' }));
    expect(after.Contents ?? []).toEqual([]);
    // A missing object fails the ingestion with its name.
    await cluster.client.ingestDataset('missing', { source: { csv: { train: 's3://src/none.csv' } } });
    const failed = await cluster.client.waitForDataset('missing');
    expect(failed.error?.message).toMatch(/s3:\/\/src\/none\.csv: cannot read \(NoSuchKey/);
    client.destroy();
  });

  it('a worker SIGKILLed and another joining while streaming chunks: the job completes with exact audits', async () => {
    await cluster.client.ingestDataset('elastic', { source: mnist.dataset, chunkBytes: 65536 });
    expect((await cluster.client.waitForDataset('elastic')).state).toBe('READY');
    const third = cluster.startWorker(['--name', 'chunked-victim', '--cache-bytes', '200000']);
    await cluster.client.waitForWorkers(3, 60_000);
    const submitted = await cluster.client.submit({
      ...job({ name: 'elastic' }),
      epochs: 3,
      minWorkers: 2,
      maxWorkers: 3,
    } as never);
    let killedAt = -1;
    let joinedAt = -1;
    let before = new Set<string>();
    let joiner = '';
    const done = await cluster.client.waitForJob(submitted.id, (j) => {
      if (killedAt < 0 && j.workers.length === 3 && j.progress.step >= 10) {
        killedAt = j.progress.step;
        before = new Set(j.workers);
        third.kill('SIGKILL');
        // A fresh worker (an empty chunk cache) joins the running job after the loss.
        cluster.startWorker(['--name', 'chunked-joiner', '--cache-bytes', '200000']);
      }
      const fresh = j.workers.find((w) => !before.has(w));
      if (killedAt >= 0 && joinedAt < 0 && fresh) [joiner, joinedAt] = [fresh, j.progress.step];
    });
    expect(killedAt).toBeGreaterThanOrEqual(10);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-3000)}`).toBe('SUCCEEDED');
    expect(joinedAt, 'the joiner took part before the job ended').toBeGreaterThan(killedAt);
    expect(done.history).toHaveLength(3);
    expect(done.history.every((h) => h.audit.ok && h.audit.seen === 3000)).toBe(true);
    expect(done.replicas.divergences).toBe(0);
    const logs = (await cluster.client.logs(submitted.id)).map((l) => l.line).join('\n');
    expect(logs).toContain(`worker ${joiner} joined at step`);
    await cluster.client.removeDataset('elastic');
  });

  it('a job whose chunk is corrupted on disk FAILS naming the chunk instead of hanging', async () => {
    await cluster.client.ingestDataset('corrupt', { source: mnist.dataset, chunkBytes: 65536 });
    expect((await cluster.client.waitForDataset('corrupt')).state).toBe('READY');
    // One byte flipped in place: the job's hard link sees it too; the manifest keeps the old hash.
    const file = await open(join(cluster.dataDir, 'datasets', 'corrupt', 'train-000003.chunk'), 'r+');
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 100);
    byte[0] = byte[0]! ^ 0xff;
    await file.write(byte, 0, 1, 100);
    await file.close();
    const submitted = await cluster.client.submit(job({ name: 'corrupt' }) as never);
    const done = await cluster.client.waitForJob(submitted.id);
    expect(done.state).toBe('FAILED');
    expect(done.reason).toMatch(/chunks\/train\/3: SHA-256 does not match the manifest/);
    await cluster.client.removeDataset('corrupt');
  });

  it('a failed ingestion names the file and line, and the CLI exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-bad-'));
    const file = join(dir, 'bad.csv');
    const w = createWriteStream(file);
    w.end('label,a\n1,2\n1,TOPSECRET\n');
    await new Promise<void>((r) => w.once('finish', () => r()));
    const out = await runCli(['dataset', 'ingest', file, '--name', 'bad', '--coordinator', cluster.url]);
    expect(out.code).toBe(1);
    expect(out.out).toContain(`bad  FAILED  INVALID_DATA: source.csv.train: ${file}: line 3: column 2: not a number`);
    expect(out.out).not.toContain('TOPSECRET');
    rmSync(dir, { recursive: true, force: true });
  });

  it('ingesting a dataset far larger than a chunk keeps the coordinator RSS flat', { timeout: 600_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-big-'));
    const file = join(dir, 'big.csv');
    const features = 64;
    const rows = 560_000; // about 210 MB of CSV
    const w = createWriteStream(file);
    const row = (i: number) => {
      let s = String(i % 10);
      for (let k = 0; k < features; k++) s += `,${(i * 31 + k * 17) % 1000}.${k % 10}`;
      return `${s}\n`;
    };
    for (let i = 0; i < rows;) {
      let block = '';
      for (let j = 0; j < 2000 && i < rows; j++, i++) block += row(i);
      if (!w.write(block)) await new Promise<void>((r) => w.once('drain', () => r()));
    }
    w.end();
    await new Promise<void>((r) => w.once('finish', () => r()));
    const size = statSync(file).size;
    const pid = cluster.processes[0]!.pid!;
    const before = rss(pid);
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), 100);
    const started = Date.now();
    await cluster.client.ingestDataset('big', { source: { csv: { train: file } } });
    let polls = 0;
    const done = await cluster.client.waitForDataset('big', () => polls++);
    clearInterval(timer);
    expect(done.state, JSON.stringify(done.error)).toBe('READY');
    expect(done.train!.examples).toBe(rows);
    const growth = peak - before;
    console.log(
      `ingested ${(size / 1e6).toFixed(0)} MB of CSV in ${((Date.now() - started) / 1000).toFixed(1)} s; coordinator RSS ${(before / 1e6).toFixed(0)} MB before, peak ${(peak / 1e6).toFixed(0)} MB (+${(growth / 1e6).toFixed(0)} MB); ${polls} polls answered meanwhile`,
    );
    expect(size).toBeGreaterThan(200e6);
    // The thread holds two 4 MiB chunks, a line and a read block; its heap is capped anyway.
    expect(growth).toBeLessThan(size / 2);
    expect(growth).toBeLessThan(120e6);
    await cluster.client.removeDataset('big');
    rmSync(dir, { recursive: true, force: true });
  });
});
