import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type JobSpecInput } from '@gradfleet/core';
import { ROOT, TestCluster } from './helpers/cluster.js';

const UPLOAD_LIMIT = 64 * 1024;

interface Refusal {
  status: number;
  code: string;
  path?: string;
}

/** Runs a request the API must refuse; returns what it answered. */
async function refusal(p: Promise<unknown>): Promise<Refusal & { message: string }> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    return { status: e.status, code: e.code, message: e.message, ...(e.issues[0] ? { path: e.issues[0].path } : {}) };
  }
  throw new Error('expected the API to refuse the request');
}

describe('job API', () => {
  const cluster = new TestCluster();
  let dir: string;
  let urlServer: Server;
  let missingUrl: string;
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  /** A request with exactly these headers (Host included), through node:http; rejects with the API's error. */
  const raw = (
    body: string,
    headers: Record<string, string> = { 'content-type': 'application/json' },
    path = '/v1/jobs',
  ) =>
    new Promise<void>((resolve, reject) => {
      const req = request(`${cluster.url}${path}`, { method: body ? 'POST' : 'GET', headers }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          if ((res.statusCode ?? 0) < 300) return resolve();
          const e = (JSON.parse(text) as { error: { code: string; message: string } }).error;
          reject(new ApiError(res.statusCode ?? 0, e.code, e.message));
        });
      });
      req.on('error', reject);
      req.end(body || undefined);
    });

  beforeAll(async () => {
    await cluster.startCoordinator(['--max-upload-bytes', String(UPLOAD_LIMIT), '--dataset-url-allow', '127.0.0.1']);
    dir = cluster.dataDir;
    urlServer = createServer((_req, res) => res.writeHead(404).end('nope'));
    await new Promise<void>((r) => urlServer.listen(0, '127.0.0.1', () => r()));
    missingUrl = `http://127.0.0.1:${(urlServer.address() as { port: number }).port}/train.csv`;
  });
  afterAll(async () => {
    urlServer.close();
    await cluster.stop();
  });

  const csv = (train: string): JobSpecInput => ({
    model: { topology: tinyModel(2, 3) },
    dataset: { csv: { train: file(`${Math.random()}.csv`, train) } },
  });
  const jsonl = (train: string, test?: string): JobSpecInput => ({
    model: { topology: tinyModel(2, 3) },
    dataset: {
      jsonl: {
        train: file(`${Math.random()}.jsonl`, train),
        ...(test ? { test: file(`${Math.random()}.jsonl`, test) } : {}),
      },
    },
  });

  /** Every case of docs/api.md's "Refused requests" table. */
  const cases: Record<string, () => Promise<unknown>> = {
    'epochs-zero': () => cluster.client.submit({ epochs: 0 }),
    'batch-size-not-integer': () => cluster.client.submit({ batchSize: 1.5 }),
    'learning-rate-negative': () => cluster.client.submit({ learningRate: -1 }),
    'unknown-optimizer': () => cluster.client.submit({ optimizer: 'lbfgs' as never }),
    'unknown-field': () => cluster.client.submit({ epochz: 3 } as never),
    'unknown-builtin-model': () => cluster.client.submit({ model: 'resnet' as never }),
    'unknown-layer-class': () =>
      cluster.client.submit({
        model: {
          topology: { class_name: 'Sequential', config: { layers: [{ class_name: 'NoSuchLayer', config: {} }] } },
        },
      }),
    'model-input-mismatch': () => cluster.client.submit({ model: { topology: tinyModel(5, 10) } }),
    'max-below-min-workers': () => cluster.client.submit({ minWorkers: 4, maxWorkers: 2 }),
    'accumulation-above-batch': () => cluster.client.submit({ batchSize: 8, accumulationSteps: 9 }),
    'labels-on-builtin-mnist': () => cluster.client.submit({ labels: 'regression', loss: 'meanSquaredError' }),
    'loss-does-not-fit-labels': () =>
      cluster.client.submit({ ...csv('label,a,b\n1,0.5,0.5\n'), loss: 'binaryCrossentropy' }),
    'optimizer-option-not-taken': () =>
      cluster.client.submit({ optimizer: 'adam', optimizerOptions: { nesterov: true } }),
    'weight-decay-above-one': () => cluster.client.submit({ optimizerOptions: { weightDecay: 2 } }),
    'lr-schedule-without-decay': () => cluster.client.submit({ lrSchedule: { type: 'cosine' } as never }),
    'lr-schedule-unknown-type': () => cluster.client.submit({ lrSchedule: { type: 'cyclic' } as never }),
    'clip-norm-negative': () => cluster.client.submit({ clipNorm: -1 }),
    'clip-value-negative': () => cluster.client.submit({ clipValue: -0.5 }),
    'unknown-regularizers-mode': () => cluster.client.submit({ regularizers: 'halve' as never }),
    'seeded-dropout-not-boolean': () => cluster.client.submit({ seededDropout: 'yes' as never }),
    'batchnorm-lossy-compression': () =>
      cluster.client.submit({
        model: {
          topology: {
            class_name: 'Sequential',
            config: {
              layers: [
                { class_name: 'Dense', config: { units: 4, batch_input_shape: [null, 784] } },
                { class_name: 'BatchNormalization', config: {} },
                { class_name: 'Dense', config: { units: 10, activation: 'softmax' } },
              ],
            },
          },
        },
        compression: 'fp16',
      }),
    'labels-need-one-output': () =>
      cluster.client.submit({
        ...csv('label,a,b\n1.5,0.5,0.5\n'),
        labels: 'regression',
        loss: 'meanSquaredError',
      }),
    'csv-label-not-binary': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 1) },
        dataset: { csv: { train: file(`${Math.random()}.csv`, 'label,a,b\n1,0.5,0.5\n2,1,1\n') } },
        labels: 'binary',
        loss: 'binaryCrossentropy',
      }),
    'multilabel-without-label-columns': () =>
      cluster.client.submit({ ...csv('label,a,b\n1,0.5,0.5\n'), labels: 'multilabel', loss: 'binaryCrossentropy' }),
    'multilabel-output-width': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 4) },
        dataset: {
          csv: { train: file(`${Math.random()}.csv`, 'a,b,t0,t1,t2\n0.5,0.5,0,1,1\n'), labelColumns: { last: 3 } },
        },
        labels: 'multilabel',
        loss: 'binaryCrossentropy',
      }),
    'csv-multilabel-target-not-binary': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 2) },
        dataset: {
          csv: { train: file(`${Math.random()}.csv`, 'a,b,t0,t1\n0.5,0.5,0,1\n1,1,2,0\n'), labelColumns: ['t0', 't1'] },
        },
        labels: 'multilabel',
        loss: 'binaryCrossentropy',
      }),
    'jsonl-multilabel-ragged-targets': () =>
      cluster.client.submit({
        ...jsonl('{"x":[1,2],"y":[0,1]}\n{"x":[1,2],"y":[1]}\n'),
        labels: 'multilabel',
        loss: 'binaryCrossentropy',
      }),
    'metric-does-not-fit-labels': () => cluster.client.submit({ metrics: ['accuracy', 'precision'] }),
    'metric-listed-twice': () => cluster.client.submit({ metrics: ['mse', 'mse'] }),
    'top-k-not-below-classes': () => cluster.client.submit({ metrics: [{ name: 'topKCategoricalAccuracy', k: 10 }] }),
    'class-weight-negative': () => cluster.client.submit({ classWeight: { '0': -1 } }),
    'class-weight-outside-classes': () => cluster.client.submit({ classWeight: { '12': 2 } }),
    'class-weight-wrong-length': () => cluster.client.submit({ classWeight: [1, 2, 3] }),
    'class-weight-on-regression': () =>
      cluster.client.submit({
        ...csv('label,a,b\n1.5,0.5,0.5\n'),
        labels: 'regression',
        loss: 'meanSquaredError',
        classWeight: [1],
      }),
    'validation-file-and-split': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 3) },
        dataset: {
          csv: {
            train: file('vt.csv', 'label,a,b\n1,0.5,0.5\n'),
            validation: file('vv.csv', 'label,a,b\n1,0.5,0.5\n'),
          },
        },
        validationSplit: 0.2,
      }),
    'csv-validation-feature-mismatch': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 3) },
        dataset: {
          csv: {
            train: file('mt.csv', 'label,a,b\n1,0.5,0.5\n'),
            validation: file('mv.csv', 'label,a,b,c\n1,0.5,0.5,1\n'),
          },
        },
      }),
    'early-stopping-no-validation': () =>
      cluster.client.submit({ validationSplit: 0, earlyStopping: { monitor: 'val_loss' } }),
    'body-not-json': () => raw('{not json'),
    'body-wrong-content-type': () => raw('{"epochs":1}', { 'content-type': 'text/plain' }),
    'host-not-this-coordinator': () =>
      raw('{"epochs":1}', { 'content-type': 'application/json', host: 'rebound.attacker.example' }),
    'browser-origin': () =>
      raw('{"epochs":1}', { 'content-type': 'application/json', origin: 'https://attacker.example' }),
    'bad-percent-encoding': () => raw('', {}, '/v1/jobs/%E0%A4%A'),
    'body-too-large': () => raw(JSON.stringify({ name: 'x'.repeat(5 * 1024 * 1024) })),
    'idx-file-missing': () =>
      cluster.client.submit({
        dataset: { idx: { trainImages: '/nonexistent/a.idx', trainLabels: '/nonexistent/b.idx' } },
      }),
    'csv-not-a-number': () => cluster.client.submit(csv('label,a,b\n1,0.5,0.5\n2,abc,1\n')),
    'csv-wrong-column-count': () => cluster.client.submit(csv('label,a,b\n1,0.5,0.5\n2,1\n')),
    'csv-no-label-column': () =>
      cluster.client.submit({
        ...csv('y,a,b\n1,0.5,0.5\n'),
        dataset: { csv: { train: file('nolabel.csv', 'y,a,b\n1,0.5,0.5\n'), labelColumn: 'label' } },
      }),
    'csv-label-not-a-class': () => cluster.client.submit(csv('label,a,b\n1,0.5,0.5\n1.5,1,1\n')),
    'jsonl-invalid-json': () => cluster.client.submit(jsonl('{"x":[1,2],"y":0}\n{"x":[1,2],"y":\n')),
    'jsonl-inconsistent-shape': () => cluster.client.submit(jsonl('{"x":[1,2],"y":0}\n{"x":[1,2,3],"y":1}\n')),
    'jsonl-test-feature-mismatch': () => cluster.client.submit(jsonl('{"x":[1,2],"y":0}\n', '{"x":[1,2,3],"y":0}\n')),
    'unknown-upload': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 3) },
        dataset: { csv: { train: 'upload:does-not-exist' } },
      }),
    'url-not-found': () =>
      cluster.client.submit({ model: { topology: tinyModel(2, 3) }, dataset: { csv: { train: missingUrl } } }),
    'path-outside-dataset-root': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 3) },
        dataset: { csv: { train: '/proc/self/environ', header: true } },
      }),
    'url-host-not-allowed': () =>
      cluster.client.submit({
        model: { topology: tinyModel(2, 3) },
        dataset: { csv: { train: 'http://169.254.169.254/latest/meta-data/' } },
      }),
    'upload-too-large': () => cluster.client.upload(new Uint8Array(UPLOAD_LIMIT + 1), 'big.csv'),
    'dataset-name-invalid': () => cluster.client.submit({ dataset: { name: 'Not A Name' } }),
    'unknown-named-dataset': () => cluster.client.submit({ dataset: { name: 'no-such-dataset' } }),
    'data-store-not-named-dataset': () => cluster.client.submit({ dataset: 'mnist', dataStore: 's3' }),
    'data-store-dataset-not-in-bucket': async () => {
      const request = { source: { csv: { train: file('local.csv', 'label,a\n1,2\n0,3\n') } } };
      await cluster.client.ingestDataset('local-set', request);
      expect((await cluster.client.waitForDataset('local-set')).state).toBe('READY');
      return cluster.client.submit({ dataset: { name: 'local-set' }, dataStore: 's3' });
    },
    'ingest-invalid-source': () => cluster.client.ingestDataset('x', { source: { csv: {} } } as never),
    'ingest-dataset-exists': async () => {
      const request = { source: { csv: { train: file('dup.csv', 'label,a\n1,2\n') } } };
      await cluster.client.ingestDataset('dup', request);
      return cluster.client.ingestDataset('dup', request);
    },
    'ingest-unknown-source-dataset': () =>
      cluster.client.ingestDataset('copy', { source: { chunked: { dataset: 'no-such-dataset' } } }),
    'ingest-source-labels-differ': async () => {
      await cluster.client.ingestDataset('labels-src', { source: { csv: { train: file('l.csv', 'label,a\n1,2\n') } } });
      await cluster.client.waitForDataset('labels-src');
      return cluster.client.ingestDataset('copy', {
        source: { chunked: { dataset: 'labels-src' } },
        labels: 'regression',
      });
    },
    'unknown-dataset': () => cluster.client.dataset('no-such-dataset'),
    'unknown-job': () => cluster.client.job('no-such-job'),
    'unknown-checkpoint': async () =>
      cluster.client.checkpointModel((await cluster.client.submit({ epochs: 1, minWorkers: 9 })).id, 500),
    'invalid-state-filter': () => cluster.client.jobs('DONE' as never),
    'page-limit-too-large': () => raw('', {}, '/v1/jobs?limit=1001'),
    'page-cursor-invalid': () => raw('', {}, '/v1/jobs?cursor=not-a-cursor'),
    'delete-active-job': async () =>
      cluster.client.delete((await cluster.client.submit({ epochs: 1, minWorkers: 9 })).id),
  };

  it('refuses each documented malformed request with its status, code and field path', async () => {
    const doc = readFileSync(join(ROOT, 'docs/api.md'), 'utf8').split('## Refused requests')[1]!;
    const rows = [...doc.matchAll(/^\| ([a-z-]+) +\| (\d{3}) +\| `([A-Z_]+)` +\| (.*) \|$/gm)].map((m) => ({
      name: m[1]!,
      status: Number(m[2]),
      code: m[3]!,
      path: m[4]!.trim(),
    }));
    expect(rows.map((r) => r.name).sort()).toEqual(Object.keys(cases).sort());
    for (const row of rows) {
      const got = await refusal(cases[row.name]!());
      expect({ case: row.name, status: got.status, code: got.code }).toEqual({
        case: row.name,
        status: row.status,
        code: row.code,
      });
      const path = row.path.replaceAll('`', '');
      if (path === '(root)') expect(got.path, row.name).toBe('');
      else if (path !== '–')
        expect(got.path ?? '(none)', `${row.name}: ${got.message}`).toMatch(
          new RegExp(`^${path.replaceAll('.', '\\.')}`),
        );
    }
  });

  it('names the file, line and reason of bad data, never its content', async () => {
    const got = await refusal(cases['csv-not-a-number']!());
    expect(got.message).toMatch(/\.csv: line 3: column 2: not a number/);
    expect(got.message).not.toContain('abc');
    const json = await refusal(cases['jsonl-invalid-json']!());
    expect(json.message).toMatch(/\.jsonl: line 2: not valid JSON$/);
  });

  it('lists jobs by state and deletes finished ones', async () => {
    const queued = await cluster.client.submit({ epochs: 1, minWorkers: 8 });
    expect((await cluster.client.jobs('QUEUED')).map((j) => j.id)).toContain(queued.id);
    expect((await cluster.client.cancel(queued.id)).state).toBe('CANCELLED');
    expect((await cluster.client.jobs('QUEUED')).map((j) => j.id)).not.toContain(queued.id);
    await cluster.client.delete(queued.id);
    expect((await refusal(cluster.client.job(queued.id))).status).toBe(404);
  });
});

/** A Dense softmax model over `inputs` features and `classes` classes, as a Layers topology. */
function tinyModel(inputs: number, classes: number): Record<string, unknown> {
  return {
    class_name: 'Sequential',
    config: {
      name: 'tiny',
      layers: [
        {
          class_name: 'Dense',
          config: { units: classes, activation: 'softmax', batch_input_shape: [null, inputs], name: 'd' },
        },
      ],
    },
  };
}
