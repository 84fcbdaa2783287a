/**
 * Datasets at scale (`npm run bench -- --only=data`): a generated dataset of 4 GB (IDX,
 * 28×28 uint8 images: mnist-sized examples; created here, removed after) is ingested into
 * chunks and trained 2 epochs with 2 workers on real processes.
 *
 * - Ingestion throughput against reading the same source files end to end (a read loop
 *   into one reused buffer: what ingestion cannot beat), interleaved, median of REPS; both
 *   read from the page cache (the files were just written and fit in memory). A second row
 *   puts it against the least ingestion must do (read, SHA-256 and write each 4 MiB block,
 *   without parsing), done plainly in one thread of this process.
 * - Peak RSS of the coordinator (during ingestion and training) and of each worker
 *   (training), sampled every 250 ms from /proc.
 * - Bytes each worker downloads per epoch against its share (train chunks ÷ workers), from
 *   the worker's own `gradfleet_replica_chunk_fetched_bytes_total`.
 * - Data wait as a share of step time, in steady state (the status's moving averages,
 *   sampled once 20 % of the steps are done; median of the samples): mnist-cnn on chunked
 *   MNIST-sized examples (the issue's case), and the linear model of the 4 GB run, whose
 *   compute is tiny, so its share is the harshest case (no target).
 *
 * The model of the 4 GB run is linear (Dense 10 softmax on 784 inputs) so that the run
 * measures the data path, not compute: 2 epochs over 5 M examples on 2 cores. With --quick:
 * 10 MB, one ingestion.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rm, stat, writeFile } from 'node:fs/promises';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { DatasetInfo, JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist } from '../helpers/cluster.js';
import { freePort } from '../helpers/prometheus.js';
import { QUICK, saveResult, type Row } from './bench-lib.js';

/** Bytes of generated source (GRADFLEET_BENCH_DATA_BYTES overrides, for a trial at another size). */
const SOURCE_BYTES = Number(process.env['GRADFLEET_BENCH_DATA_BYTES'] ?? (QUICK ? 10e6 : 4e9));
const REPS = QUICK ? 1 : 3;
const WORKERS = 2;
const EPOCHS = 2;
/**
 * Each worker's chunk cache (`--cache-bytes`): its share of two shuffle windows (the current
 * one and the next, which prefetch starts filling before the current one ends): 2 × 32
 * chunks of 4 MiB with two workers and 64-chunk windows, plus room for a batch in use.
 */
const CACHE_BYTES = 384 * 1024 ** 2;
const SIDE = 28;
const FEATURES = SIDE * SIDE;
const RSS_COORDINATOR_MAX = 400e6;
const RSS_WORKER_MAX = 1e9;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const span = (xs: number[], unit: string, digits = 1) =>
  `(min ${Math.min(...xs).toFixed(digits)} ${unit}, max ${Math.max(...xs).toFixed(digits)} ${unit}, ${xs.length} runs)`;

function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0; // exited
  }
}

/** Peak RSS of each of `pids`, sampled every 250 ms until `stop()`. */
function sampleRss(pids: number[]): { peaks: number[]; stop: () => number[] } {
  const peaks = pids.map(rss);
  const timer = setInterval(() => pids.forEach((p, i) => (peaks[i] = Math.max(peaks[i]!, rss(p)))), 250);
  return {
    peaks,
    stop: () => {
      clearInterval(timer);
      return peaks;
    },
  };
}

/** Writes IDX files of `count` 28×28 images and labels (100 noisy templates, label = template % 10), block by block. */
async function writeIdx(dir: string, prefix: string, count: number): Promise<{ images: string; labels: string }> {
  const templates = new Uint8Array(100 * FEATURES);
  let s = 0x9e3779b9;
  for (let i = 0; i < templates.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const t = Math.floor(i / FEATURES);
    templates[i] = ((s >>> 0) & 0x3f) + (i % FEATURES < (t % 10) * 78 + 78 ? 150 : 0);
  }
  const images = join(dir, `${prefix}-images.idx`);
  const labels = join(dir, `${prefix}-labels.idx`);
  const head = (dims: number[]) => {
    const h = Buffer.alloc(4 + dims.length * 4);
    h[2] = 0x08;
    h[3] = dims.length;
    dims.forEach((d, i) => h.writeUInt32BE(d, 4 + i * 4));
    return h;
  };
  const img = await open(images, 'w');
  const lab = await open(labels, 'w');
  await img.write(head([count, SIDE, SIDE]));
  await lab.write(head([count]));
  const BLOCK = 10_000;
  const x = Buffer.alloc(BLOCK * FEATURES);
  const y = Buffer.alloc(BLOCK);
  for (let i = 0; i < count; i += BLOCK) {
    const n = Math.min(BLOCK, count - i);
    for (let j = 0; j < n; j++) {
      const t = (i + j) % 100;
      x.set(templates.subarray(t * FEATURES, (t + 1) * FEATURES), j * FEATURES);
      y[j] = t % 10;
    }
    await img.write(x, 0, n * FEATURES);
    await lab.write(y, 0, n);
  }
  await img.close();
  await lab.close();
  return { images, labels };
}

/**
 * What ingestion cannot avoid, done plainly in this process: read `files` in 4 MiB blocks,
 * SHA-256 each block and write it to its own file in `dir` (removed after); returns the
 * seconds taken by the read, hash and write passes.
 */
async function readHashWrite(files: string[], dir: string): Promise<number> {
  const buf = Buffer.allocUnsafe(4 * 1024 ** 2);
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  let n = 0;
  for (const f of files) {
    const h = await open(f, 'r');
    for (;;) {
      const { bytesRead } = await h.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      const block = buf.subarray(0, bytesRead);
      createHash('sha256').update(block).digest('hex');
      await writeFile(join(dir, `block-${n++}`), block);
    }
    await h.close();
  }
  const s = (performance.now() - t0) / 1000;
  await rm(dir, { recursive: true, force: true });
  return s;
}

/** Reads `files` end to end into one reused 4 MiB buffer; returns the seconds taken. */
async function readEndToEnd(files: string[]): Promise<number> {
  const buf = Buffer.allocUnsafe(4 * 1024 ** 2);
  const t0 = performance.now();
  for (const f of files) {
    const h = await open(f, 'r');
    while ((await h.read(buf, 0, buf.length, null)).bytesRead > 0);
    await h.close();
  }
  return (performance.now() - t0) / 1000;
}

/** The median of dataWaitMs / stepMs over status samples taken once `warm` of the job's examples are done (epoch is 0-based). */
async function waitShare(cluster: TestCluster, id: string, warm = 0.2): Promise<{ share: number; status: JobStatus }> {
  const shares: number[] = [];
  for (;;) {
    const s = await cluster.client.job(id);
    if (s.state !== 'QUEUED' && s.state !== 'RUNNING')
      return { share: shares.length ? median(shares) : NaN, status: s };
    const p = s.progress;
    const done = p.epochSize > 0 ? (p.epoch * p.epochSize + p.samplesInEpoch) / (p.epochs * p.epochSize) : 0;
    if (done >= warm && p.phase === 'training' && s.timing && s.timing.stepMs > 0)
      shares.push((s.timing.dataWaitMs ?? 0) / s.timing.stepMs);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const metric = async (port: number, name: string) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
};

const dir = mkdtempSync(join(tmpdir(), 'gradfleet-bench-data-'));
const cluster = new TestCluster();
const rows: Row[] = [];
const notes: string[] = [];
try {
  const count = Math.floor(SOURCE_BYTES / (FEATURES + 1));
  console.error(`data: writing ${(SOURCE_BYTES / 1e9).toFixed(2)} GB of IDX (${count} examples)...`);
  const train = await writeIdx(dir, 'train', count);
  const test = await writeIdx(dir, 'test', 2000);
  const sources = [train.images, train.labels, test.images, test.labels];
  let sourceBytes = 0;
  for (const f of sources) sourceBytes += (await stat(f)).size;

  await cluster.startCoordinator();
  const coordinator = cluster.processes[0]!.pid!;
  const source = {
    idx: { trainImages: train.images, trainLabels: train.labels, testImages: test.images, testLabels: test.labels },
  };

  // Ingestion against a plain read of the same files, interleaved.
  const readS: number[] = [];
  const floorS: number[] = [];
  const ingestS: number[] = [];
  const coordinatorIngestPeak: number[] = [];
  let info: DatasetInfo | undefined;
  for (let r = 0; r < REPS; r++) {
    readS.push(await readEndToEnd(sources));
    floorS.push(await readHashWrite(sources, join(cluster.dataDir, 'floor')));
    const name = `bench-${r}`;
    console.error(`data: ingestion ${r + 1}/${REPS}...`);
    const sampler = sampleRss([coordinator]);
    const t0 = performance.now();
    await cluster.client.ingestDataset(name, { source });
    info = await cluster.client.waitForDataset(name, undefined, 100);
    ingestS.push((performance.now() - t0) / 1000);
    coordinatorIngestPeak.push(sampler.stop()[0]!);
    if (info.state !== 'READY') throw new Error(`ingestion ${info.state}: ${JSON.stringify(info.error)}`);
    if (r < REPS - 1) await cluster.client.removeDataset(name);
  }
  const gbps = (s: number) => sourceBytes / 1e9 / s;
  const ingestRate = median(ingestS.map(gbps));
  const readRate = median(readS.map(gbps));
  rows.push({
    case: `ingestion throughput, ${(sourceBytes / 1e9).toFixed(2)} GB of IDX`,
    value: ingestRate,
    baseline: readRate,
    unit: 'GB/s',
    ratio: ingestRate / readRate,
    target: 0.5,
    note: `ingestion ${span(ingestS.map(gbps), 'GB/s', 2)}; read ${span(readS.map(gbps), 'GB/s', 2)}`,
  });

  const floorRate = median(floorS.map(gbps));
  rows.push({
    case: 'ingestion vs read + SHA-256 + write of the same bytes in 4 MiB blocks (one thread, no parsing)',
    value: ingestRate,
    baseline: floorRate,
    unit: 'GB/s',
    ratio: ingestRate / floorRate,
    note: `read + hash + write ${span(floorS.map(gbps), 'GB/s', 2)}`,
  });

  // Training: 2 workers, 2 epochs, RSS sampled throughout.
  const ports: number[] = [];
  for (let i = 0; i < WORKERS; i++) {
    ports.push(await freePort());
    cluster.startWorker([
      '--name',
      `data-${i + 1}`,
      '--cache-bytes',
      String(CACHE_BYTES),
      '--metrics-port',
      String(ports[i]),
    ]);
  }
  await cluster.client.waitForWorkers(WORKERS, 60_000);
  const workers = cluster.processes.slice(1).map((p) => p.pid!);
  await tf.setBackend('cpu'); // only to build the topology here
  const linear = tfl.sequential({
    layers: [tfl.layers.dense({ inputShape: [FEATURES], units: 10, activation: 'softmax' })],
  });
  const topology = linear.toJSON(null, false) as Record<string, unknown>;
  linear.dispose();
  console.error(`data: training ${EPOCHS} epochs on ${WORKERS} workers...`);
  const sampler = sampleRss([coordinator, ...workers]);
  const big = await cluster.client.submit({
    name: 'data-bench',
    dataset: { name: info!.name },
    model: { topology },
    epochs: EPOCHS,
    batchSize: 2048,
    validationSplit: 0,
    minWorkers: WORKERS,
    maxWorkers: WORKERS,
  });
  const bigRun = await waitShare(cluster, big.id);
  const [coordinatorTrainPeak, ...workerPeaks] = sampler.stop();
  if (bigRun.status.state !== 'SUCCEEDED') throw new Error(`job ${bigRun.status.state}: ${bigRun.status.reason}`);
  const coordinatorPeak = Math.max(coordinatorTrainPeak!, ...coordinatorIngestPeak);
  rows.push({
    case: 'coordinator peak RSS (ingestion and training)',
    value: coordinatorPeak / 1e6,
    baseline: RSS_COORDINATOR_MAX / 1e6,
    unit: 'MB',
    ratio: coordinatorPeak / RSS_COORDINATOR_MAX,
    target: 1,
    lowerIsBetter: true,
    note: '(baseline = the limit)',
  });
  workerPeaks.forEach((peak, i) =>
    rows.push({
      case: `worker ${i + 1} peak RSS (training, --cache-bytes ${CACHE_BYTES / 1024 ** 2} MiB)`,
      value: peak / 1e6,
      baseline: RSS_WORKER_MAX / 1e6,
      unit: 'MB',
      ratio: peak / RSS_WORKER_MAX,
      target: 1,
      lowerIsBetter: true,
      note: '(baseline = the limit)',
    }),
  );
  // Decoded bytes of the training split (uint8 features, int32 labels), as the worker counts them.
  const trainDecoded = info!.train!.examples * (FEATURES + 4);
  const share = trainDecoded / WORKERS;
  const cacheCounts: Record<string, number>[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const counts: Record<string, number> = {};
    for (const c of ['hits', 'misses']) counts[c] = await metric(ports[i]!, `gradfleet_replica_chunk_cache_${c}_total`);
    counts['prefetched'] = await metric(ports[i]!, 'gradfleet_replica_chunk_prefetched_total');
    cacheCounts.push(counts);
    const perEpoch = (await metric(ports[i]!, 'gradfleet_replica_chunk_fetched_bytes_total')) / EPOCHS;
    rows.push({
      case: `worker ${i + 1} bytes downloaded per epoch vs its share`,
      value: perEpoch / 1e6,
      baseline: share / 1e6,
      unit: 'MB',
      ratio: perEpoch / share,
      target: 1.2,
      lowerIsBetter: true,
      note: '(includes the test split, evaluated once)',
    });
  }
  rows.push({
    case: 'data wait / step time, linear model on the 4 GB set (steady state)',
    value: bigRun.share * 100,
    baseline: (bigRun.status.timing?.stepMs ?? NaN) as number,
    unit: '%',
    ratio: bigRun.share,
    note: `(baseline column: step ms; ${bigRun.status.progress.step} steps in ${((bigRun.status.result?.wallTimeMs ?? NaN) / 1000).toFixed(0)} s)`,
  });

  // Data wait on mnist-cnn over chunked MNIST-sized examples.
  const mnist = await writeSmallMnist(QUICK ? 1000 : 12_000, QUICK ? 200 : 500);
  await cluster.client.ingestDataset('mnist-small', { source: { idx: mnist.dataset.idx } });
  const small = await cluster.client.waitForDataset('mnist-small', undefined, 100);
  if (small.state !== 'READY') throw new Error(`ingestion ${small.state}: ${JSON.stringify(small.error)}`);
  console.error('data: mnist-cnn on chunked MNIST...');
  const cnn = await cluster.client.submit({
    name: 'data-bench-cnn',
    dataset: { name: 'mnist-small' },
    model: 'mnist-cnn',
    epochs: 1,
    batchSize: 64,
    validationSplit: 0,
    minWorkers: WORKERS,
    maxWorkers: WORKERS,
  });
  const cnnRun = await waitShare(cluster, cnn.id);
  if (cnnRun.status.state !== 'SUCCEEDED') throw new Error(`job ${cnnRun.status.state}: ${cnnRun.status.reason}`);
  rows.push({
    case: 'data wait / step time, mnist-cnn on chunked MNIST (steady state)',
    value: cnnRun.share * 100,
    baseline: cnnRun.status.timing?.stepMs ?? NaN,
    unit: '%',
    ratio: cnnRun.share,
    target: 0.05,
    lowerIsBetter: true,
    note: '(baseline column: step ms)',
  });
  rm(mnist.dir, { recursive: true, force: true }).catch(() => undefined);
  notes.push(
    `Chunk cache per worker (all epochs): ${cacheCounts.map((c, i) => `worker ${i + 1} ${c['hits']} hits, ${c['misses']} misses, ${c['prefetched']} prefetched`).join('; ')}; ${info!.train!.chunks} train chunks.`,
    `Source ${(sourceBytes / 1e9).toFixed(2)} GB (${count} examples of 28×28 uint8), stored as ${((info!.bytes ?? 0) / 1e9).toFixed(2)} GB in ${info!.train!.chunks} + ${info!.test!.chunks} chunks. Everything ran on this machine's cores together (coordinator, ingestion thread, 2 workers, this process): the throughput and wait rows are CPU-bound here.`,
  );
  saveResult({
    name: 'data',
    title: `Datasets at scale: ${(sourceBytes / 1e9).toFixed(1)} GB ingested and trained ${EPOCHS} epochs on ${WORKERS} workers`,
    baselineName: 'baseline',
    rows,
    notes,
    data: { cacheCounts, readS, floorS, ingestS, coordinatorIngestPeak, coordinatorTrainPeak, workerPeaks },
  });
} finally {
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
  await rm(cluster.dataDir, { recursive: true, force: true });
}
