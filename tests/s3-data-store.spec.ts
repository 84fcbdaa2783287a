import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxRelativeDifference, selectBackend, sha256Hex, type JobStatus } from '@gradfleet/core';
import { TestCluster, writeSmallMnist, type SmallMnist } from './helpers/cluster.js';
import { smallMlpTopology } from './helpers/models.js';
import { startS3Server, type S3TestServer } from './helpers/s3-server.js';

/** The value of an unlabelled series in a /metrics text. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

/** Chunks as the coordinator served them over HTTP, so far. */
async function served(url: string): Promise<{ chunks: number; bytes: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return {
    chunks: value(text, 'gradfleet_dataset_chunks_served_total'),
    bytes: value(text, 'gradfleet_dataset_chunk_served_bytes_total'),
  };
}

describe('dataStore s3: workers read chunks straight from the bucket', () => {
  const cluster = new TestCluster();
  let mnist: SmallMnist;
  let s3: S3TestServer;
  let client: S3Client;
  const workers: ChildProcess[] = [];
  const KEY = 'sets/mnist-small/train-000003.chunk';
  // Dropout-free, as tests/chunked-datasets.spec.ts.
  const job = (dataStore: 'coordinator' | 's3') => ({
    model: { topology: smallMlpTopology() },
    dataset: { name: 'mnist-small' },
    dataStore,
    epochs: 2,
    batchSize: 64,
    validationSplit: 0,
    learningRate: 0.01,
    minWorkers: 2,
    maxWorkers: 2,
    seed: 7,
  });
  const run = async (dataStore: 'coordinator' | 's3', workers = 2): Promise<JobStatus> =>
    cluster.client.waitForJob(
      (await cluster.client.submit({ ...job(dataStore), minWorkers: workers, maxWorkers: workers } as never)).id,
    );

  beforeAll(async () => {
    await selectBackend('wasm'); // smallMlpTopology builds the model
    mnist = await writeSmallMnist(3000, 500);
    s3 = await startS3Server(['chunks']);
    client = s3.client();
    await cluster.startCoordinator(['--dataset-s3-allow', 'chunks'], 0, s3.env);
    // The workers reach the bucket with their own AWS environment; a cache of about three chunks.
    for (let i = 0; i < 2; i++)
      workers.push(cluster.startWorker(['--name', `s3-${i}`, '--cache-bytes', '200000'], s3.env));
    await cluster.client.waitForWorkers(2, 60_000);
    await cluster.client.ingestDataset('mnist-small', {
      source: mnist.dataset,
      store: 's3://chunks/sets',
      chunkBytes: 65536,
    });
    const ready = await cluster.client.waitForDataset('mnist-small');
    expect(ready.state, JSON.stringify(ready.error)).toBe('READY');
    expect(ready.train!.chunks).toBe(37);
  });
  afterAll(async () => {
    await cluster.stop();
    client?.destroy();
    await s3?.close();
    rmSync(mnist.dir, { recursive: true, force: true });
  });

  it('trains the same model as the coordinator-served run, with exact audits, while the coordinator serves no chunk', async () => {
    const before = await served(cluster.url);
    const direct = await run('s3');
    const between = await served(cluster.url);
    expect(direct.state, `${direct.reason}\n${cluster.log.slice(-3000)}`).toBe('SUCCEEDED');
    expect(direct.dataset?.s3).toEqual({ bucket: 'chunks', prefix: 'sets/mnist-small/' });
    expect(between).toEqual(before);

    const relayed = await run('coordinator');
    const after = await served(cluster.url);
    expect(relayed.state, relayed.reason).toBe('SUCCEEDED');
    expect(relayed.dataset?.s3).toBeUndefined();
    expect(after.chunks).toBeGreaterThan(between.chunks);
    expect(after.bytes).toBeGreaterThan(between.bytes);

    for (const j of [direct, relayed]) {
      expect(j.history).toHaveLength(2);
      expect(j.history.every((h) => h.audit.ok && h.audit.seen === 3000)).toBe(true);
    }
    // Same seed, same sampler, same verified chunks, same worker count: the same weights, bit for bit.
    const weights = async (id: string) => new Float32Array((await cluster.client.model(id)).weights);
    const [a, b] = [await weights(direct.id), await weights(relayed.id)];
    console.log(
      `s3 vs coordinator: worst relative weight difference ${maxRelativeDifference(a, b).toExponential(2)}, test accuracy ${direct.result!.testAccuracy} vs ${relayed.result!.testAccuracy}; coordinator served ${after.chunks - between.chunks} chunks (${after.bytes - between.bytes} bytes) to the second job, none to the first`,
    );
    expect(sha256Hex(new Uint8Array(a.buffer))).toBe(sha256Hex(new Uint8Array(b.buffer)));
    expect(direct.result!.testAccuracy).toBe(relayed.result!.testAccuracy);
    expect(direct.result!.testAccuracy).toBeGreaterThan(0.8);
  });

  it('a deleted chunk object FAILS the job naming the chunk; a longer one is refused before its body is read', async () => {
    const original = await (
      await client.send(new GetObjectCommand({ Bucket: 'chunks', Key: KEY }))
    ).Body!.transformToByteArray();
    await client.send(new DeleteObjectCommand({ Bucket: 'chunks', Key: KEY }));
    const missing = await run('s3');
    expect(missing.state).toBe('FAILED');
    expect(missing.reason).toMatch(
      /chunk train\/3 \(s3:\/\/chunks\/sets\/mnist-small\/train-000003\.chunk\): cannot read \(NoSuchKey 404\)/,
    );

    // The chunk with 4 MiB after it: its first bytes are the chunk's; the object's length refuses it unread.
    const longer = Buffer.concat([original, Buffer.alloc(4 << 20)]);
    await client.send(new PutObjectCommand({ Bucket: 'chunks', Key: KEY, Body: longer }));
    const padded = await run('s3');
    expect(padded.state).toBe('FAILED');
    expect(padded.reason).toMatch(
      new RegExp(
        `chunk train/3 \\(s3://chunks/sets/mnist-small/train-000003\\.chunk\\): ${longer.byteLength} bytes \\(not read\\), the manifest records ${original.byteLength}`,
      ),
    );
    expect(cluster.log).not.toContain('S3RVER');
  });

  it('a worker whose credentials the bucket refuses FAILS the job with the reason, never the secret', async () => {
    for (const w of workers) w.kill('SIGKILL');
    const secret = 'not-the-secret-0123456789';
    cluster.startWorker(['--name', 's3-refused'], {
      ...s3.env,
      AWS_ACCESS_KEY_ID: 'NOBODY',
      AWS_SECRET_ACCESS_KEY: secret,
    });
    for (let i = 0; ; i++) {
      const names = (await cluster.client.workers()).map((w) => w.name);
      if (names.length === 1 && names[0] === 's3-refused') break;
      if (i > 300) throw new Error(`workers: ${names.join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const refused = await run('s3', 1);
    expect(refused.state).toBe('FAILED');
    expect(refused.reason).toMatch(
      /chunk (train|test)\/\d+ \(s3:\/\/chunks\/sets\/mnist-small\/\w+-\d{6}\.chunk\): cannot read \(InvalidAccessKeyId 403\)/,
    );
    expect(`${refused.reason}${cluster.log}`).not.toContain(secret);
  });
});
