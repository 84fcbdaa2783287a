import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal } from './helpers/api.js';
import { TestCluster } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

const csv = (rows: number) =>
  new TextEncoder().encode(
    ['label,' + Array.from({ length: 784 }, (_, i) => `p${i}`).join(',')]
      .concat(Array.from({ length: rows }, (_, r) => `${r % 10},` + new Array(784).fill('0').join(',')))
      .join('\n') + '\n',
  );

describe('stored uploads and downloads: quota and expiry', () => {
  const cluster = new TestCluster();
  const small = csv(20); // about 32 kB
  beforeAll(() =>
    cluster.startCoordinator(['--max-dataset-store-bytes', String(3 * small.byteLength), '--dataset-file-ttl-s', '15']),
  );
  afterAll(() => cluster.stop());
  const uploads = () => readdirSync(join(cluster.dataDir, 'uploads'));

  it('refuses an upload past the quota (507 STORAGE_FULL), removes uploads past their time, and a job keeps its own copy', async () => {
    const first = await cluster.client.upload(small, 'a.csv');
    const job = await cluster.client.submit({
      model: { topology: dropoutFreeMlp },
      dataset: { csv: { train: first.source } },
      minWorkers: 9,
      maxWorkers: 9,
    });
    await cluster.client.upload(small, 'b.csv');
    await cluster.client.upload(small, 'c.csv');
    const lastUpload = Date.now();
    expect(uploads()).toHaveLength(3);
    const full = await refusal(cluster.client.upload(small, 'd.csv'));
    expect([full.status, full.code]).toEqual([507, 'STORAGE_FULL']);
    expect(full.message).toContain('--max-dataset-store-bytes');
    await cluster.waitForLog('dataset store full');
    expect(uploads()).toHaveLength(3); // nothing of the refused one stays

    await new Promise((r) => setTimeout(r, lastUpload + 16_000 - Date.now())); // past --dataset-file-ttl-s for all three
    const later = await cluster.client.upload(small, 'e.csv'); // pruned first: fits again
    expect(uploads()).toEqual([later.source.slice('upload:'.length)]);
    const gone = await refusal(
      cluster.client.submit({ model: { topology: dropoutFreeMlp }, dataset: { csv: { train: first.source } } }),
    );
    expect([gone.status, gone.message]).toEqual([400, `${first.source}: no such upload`]);
    // The job submitted from the first upload kept its data.
    expect(existsSync(join(cluster.dataDir, 'jobs', job.id, 'data', 'train.bin'))).toBe(true);
    const shard = await fetch(`${cluster.url}/v1/jobs/${job.id}/data/train`);
    expect(shard.status).toBe(200);
    expect((await shard.arrayBuffer()).byteLength).toBe(job.dataset!.train.bytes);
  });
});
