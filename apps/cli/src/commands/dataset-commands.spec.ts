import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ingestRequest } from './dataset-commands.js';

describe('gradfleet dataset ingest: the request for an existing chunked dataset', () => {
  const o = { name: 'copy', coordinator: 'http://127.0.0.1:1' };

  it('dataset:NAME copies a named dataset; a manifest.json or --kind chunked names a directory or S3 prefix', () => {
    expect(ingestRequest('dataset:mnist', { ...o, chunkBytes: 65536, store: 's3://b/p' })).toEqual({
      source: { chunked: { dataset: 'mnist' } },
      store: 's3://b/p',
      chunkBytes: 65536,
    });
    expect(ingestRequest('s3://b/sets/mnist/manifest.json', o)).toEqual({
      source: { chunked: { dir: 's3://b/sets/mnist' } },
    });
    expect(ingestRequest('sets/mnist/manifest.json', o)).toEqual({
      source: { chunked: { dir: resolve('sets/mnist') } },
    });
    expect(ingestRequest('s3://b/sets/mnist/', { ...o, kind: 'chunked', labels: 'regression' })).toEqual({
      source: { chunked: { dir: 's3://b/sets/mnist/' } },
      labels: 'regression',
    });
  });
});
