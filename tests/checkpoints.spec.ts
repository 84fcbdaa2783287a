import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradfleetClient, selectBackend, type CheckpointInfo, type JobStatus } from '@gradfleet/core';
import { refusal } from './helpers/api.js';
import { ROOT, TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

/**
 * Intermediate checkpoints (issue #14): a job's kept checkpoints are listed with what was
 * recorded when each was written, and any of them downloads as a TensorFlow.js artifact whose
 * weights are that step's; a `submit` token sees only its own jobs' checkpoints.
 */

const TOKENS = { alice: 'alice-token-0123456789abcdef', bob: 'bob-token-0123456789abcdef' };
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const CLI = join(ROOT, 'apps', 'cli', 'dist', 'main.js');
const sha256 = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');
const stepDir = (step: number) => `step-${String(step).padStart(12, '0')}`;

// 480 training examples at batch 50: 10 steps per epoch. Checkpoints every 4 steps and at
// the end of epochs 1 and 2 (none after the last): 4, 8, 10, 12, 16, 20, 24, 28; the last 3 are kept.
const EPOCHS = 3;
const STEPS_PER_EPOCH = 10;

async function gradfleet(url: string, token: string, ...args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args, '--coordinator', url], {
      timeout: 60_000,
      env: { ...process.env, GRADFLEET_TOKEN: token },
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout, err: err.stderr };
  }
}

describe('checkpoints of a job: listed and downloaded', () => {
  const cluster = new TestCluster();
  const as: Record<'alice' | 'bob' | 'admin', GradfleetClient> = {} as never;
  let done: JobStatus;
  let ckptDir: string;

  beforeAll(async () => {
    await selectBackend('cpu');
    const dir = mkdtempSync(join(tmpdir(), 'gradfleet-ckpt-tokens-'));
    writeFileSync(join(dir, 'tokens'), `alice ${sha256(TOKENS.alice)} submit\nbob ${sha256(TOKENS.bob)} submit\n`);
    cluster.coordinatorEnv = { GRADFLEET_API_TOKEN: ADMIN_TOKEN };
    await cluster.startCoordinator(['--api-tokens', join(dir, 'tokens')]);
    cluster.client = new GradfleetClient({ url: cluster.url, token: ADMIN_TOKEN });
    as.admin = cluster.client;
    as.alice = new GradfleetClient({ url: cluster.url, token: TOKENS.alice });
    as.bob = new GradfleetClient({ url: cluster.url, token: TOKENS.bob });
    await cluster.startWorkers(2);
    const data = await writeSmallMnist(600, 100);
    const job = await as.alice.submit({
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: EPOCHS,
      batchSize: 50,
      validationSplit: 0.2,
      checkpointEverySteps: 4,
      seed: 7,
      minWorkers: 2,
      maxWorkers: 2,
    });
    done = await as.alice.waitForJob(job.id);
    expect(done.state, `${done.reason}\n${cluster.log.slice(-3000)}`).toBe('SUCCEEDED');
    expect(done.result?.steps).toBe(EPOCHS * STEPS_PER_EPOCH);
    ckptDir = join(cluster.dataDir, 'jobs', done.id, 'checkpoints');
  });
  afterAll(() => cluster.stop());

  it('lists the kept checkpoints with step, epoch, time, size, hash and the results recorded with them', async () => {
    const list = await as.alice.checkpoints(done.id);
    expect(list.map((c) => c.step)).toEqual([20, 24, 28]);
    const onDisk = (step: number) => {
      const weights = readFileSync(join(ckptDir, stepDir(step), 'weights.bin'));
      const optimizer = statSync(join(ckptDir, stepDir(step), 'optimizer.bin')).size;
      return {
        weightsBytes: weights.byteLength,
        weightsSha256: sha256(weights),
        bytes: weights.byteLength + optimizer,
      };
    };
    const [end, mid1, mid2] = list as [CheckpointInfo, CheckpointInfo, CheckpointInfo];
    // At the end of epoch 2 (0-based 1): it resumes in epoch index 2, nothing of it trained.
    expect(end).toMatchObject({ step: 20, epoch: 2, epochEnd: true, samplesInEpoch: 0, ...onDisk(20) });
    expect(mid1).toMatchObject({ step: 24, epoch: 2, epochEnd: false, samplesInEpoch: 200, ...onDisk(24) });
    expect(mid2).toMatchObject({ step: 28, epoch: 2, epochEnd: false, samplesInEpoch: 400, ...onDisk(28) });
    for (const c of list) {
      expect(c.lastEpoch).toEqual(done.history[1]); // the last epoch completed before each
      expect(Date.parse(c.time)).toBeGreaterThanOrEqual(Date.parse(done.createdAt));
      expect(Date.parse(c.time)).toBeLessThanOrEqual(Date.now());
      expect(c.earlyStopping).toBeUndefined();
    }
    expect(await as.admin.checkpoints(done.id)).toEqual(list);
  });

  it('downloads an intermediate checkpoint whose weights are that step’s, not the final ones', async () => {
    const stored = readFileSync(join(ckptDir, stepDir(24), 'weights.bin'));
    const { modelJson, weights } = await as.alice.checkpointModel(done.id, 24);
    expect(Buffer.compare(Buffer.from(weights), stored)).toBe(0);
    expect(sha256(new Uint8Array(weights))).toBe((await as.alice.checkpoints(done.id))[1]!.weightsSha256);
    const final = await as.alice.model(done.id);
    expect(Buffer.compare(Buffer.from(weights), Buffer.from(final.weights))).not.toBe(0);
    expect(Buffer.compare(stored, readFileSync(join(ckptDir, stepDir(28), 'weights.bin')))).not.toBe(0);
    expect(modelJson).toEqual(final.modelJson); // the same artifact format as the final model

    // The CLI: the table, --json, and download --checkpoint into files that tf.loadLayersModel reads.
    const table = await gradfleet(cluster.url, TOKENS.alice, 'checkpoints', done.id);
    expect(table.code, table.err).toBe(0);
    const rows = table.out.trim().split('\n');
    expect(rows[0]).toMatch(/^STEP\s+TAKEN\s+TIME\s+SIZE\s+LOSS\s+VAL_LOSS\s+VAL_ACC\s+BEST$/);
    expect(rows.slice(1).map((r) => r.split(/\s+/)[0])).toEqual(['20', '24', '28']);
    expect(rows[1]).toContain('end of epoch 2');
    expect(rows[2]).toContain('epoch 3, 200 examples in');
    const json = await gradfleet(cluster.url, TOKENS.alice, 'checkpoints', done.id, '--json');
    expect(JSON.parse(json.out)).toEqual(await as.alice.checkpoints(done.id));

    const out = join(mkdtempSync(join(tmpdir(), 'gradfleet-ckpt-dl-')), 'step-24');
    const dl = await gradfleet(cluster.url, TOKENS.alice, 'download', done.id, '--checkpoint', '24', '--out', out);
    expect(dl.code, dl.err).toBe(0);
    expect(dl.out).toContain(`checkpoint at step 24 of job ${done.id} saved in ${out}`);
    const file = readFileSync(join(out, 'weights.bin'));
    expect(Buffer.compare(file, stored)).toBe(0);
    const json2 = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as {
      modelTopology: object;
      weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
    };
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json2.modelTopology,
        weightSpecs: json2.weightsManifest[0]!.weights,
        weightData: file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength),
      }),
    );
    const loaded = Float32Array.from(model.getWeights().flatMap((w) => Array.from(w.dataSync())));
    const expected = new Float32Array(stored.buffer.slice(stored.byteOffset, stored.byteOffset + stored.byteLength));
    expect(loaded).toEqual(expected);
    const finalWeights = new Float32Array(final.weights);
    expect(loaded).not.toEqual(finalWeights);
    model.dispose();
  });

  it('answers 404 CHECKPOINT_NOT_FOUND for a step it does not keep, saying how to list the kept ones', async () => {
    for (const p of [
      as.alice.checkpointModel(done.id, 10),
      as.alice.saveModel(done.id, tmpdir(), { checkpoint: 30 }),
    ]) {
      const e = await refusal(p);
      expect({ status: e.status, code: e.code }).toEqual({ status: 404, code: 'CHECKPOINT_NOT_FOUND' });
      expect(e.message).toContain('it keeps steps 20, 24, 28');
      expect(e.message).toContain(`GET /v1/jobs/${done.id}/checkpoints`);
    }
    for (const path of ['10/model/weights.bin', 'abc/model/model.json', '-1/model/model.json']) {
      const res = await fetch(`${cluster.url}/v1/jobs/${done.id}/checkpoints/${path}`, {
        headers: { authorization: `Bearer ${TOKENS.alice}` },
      });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe('CHECKPOINT_NOT_FOUND');
    }
    const cli = await gradfleet(cluster.url, TOKENS.alice, 'download', done.id, '--checkpoint', '12');
    expect(cli.code).toBe(1);
    expect(cli.err).toContain('CHECKPOINT_NOT_FOUND');
    expect(cli.err).toContain(`gradfleet checkpoints ${done.id}`);
  });

  it("answers 404 JOB_NOT_FOUND to a submit token listing or downloading another user's checkpoints", async () => {
    for (const p of [as.bob.checkpoints(done.id), as.bob.checkpointModel(done.id, 24)]) {
      const e = await refusal(p);
      expect({ status: e.status, code: e.code }).toEqual({ status: 404, code: 'JOB_NOT_FOUND' });
    }
    const res = await fetch(`${cluster.url}/v1/jobs/${done.id}/checkpoints/24/model/weights.bin`, {
      headers: { authorization: `Bearer ${TOKENS.bob}` },
    });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    const cli = await gradfleet(cluster.url, TOKENS.bob, 'checkpoints', done.id);
    expect(cli.code).toBe(1);
    expect(cli.err).toContain('JOB_NOT_FOUND');
    // Without a token at all: 401, as every API route.
    expect((await refusal(new GradfleetClient(cluster.url).checkpoints(done.id))).status).toBe(401);
  });
});
