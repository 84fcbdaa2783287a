import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { DatasetInfo, IngestRequestInput } from '../data/ingest-request.js';
import type { CheckpointInfo } from '../job/checkpoint-info.js';
import type { JobSpecInput } from '../job/job-spec.js';
import type { JobState, JobStatus, JobSummary, WorkerInfo } from '../job/job-status.js';
import { TERMINAL_STATES } from '../job/job-status.js';
import { httpFetch } from './http-fetch.js';

export interface GradfleetClientOptions {
  /** Coordinator base URL, e.g. `http://127.0.0.1:7070`. */
  url: string;
  /** Per-request timeout in ms. @defaultValue 30000 */
  timeoutMs?: number;
  /** API token (`Authorization: Bearer`), when the coordinator requires one. */
  token?: string | undefined;
  /** CA certificate (PEM) that signed the coordinator's TLS certificate, for `https:` URLs. */
  ca?: string | Buffer | undefined;
}

/** An error answer from the coordinator's API, with its stable code and field issues. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly issues: { path: string; message: string }[];
  constructor(status: number, code: string, message: string, issues: { path: string; message: string }[] = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.issues = issues;
  }
}

/** TypeScript client of the coordinator's HTTP+JSON job API (the CLI uses it too). */
export class GradfleetClient {
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly auth: Record<string, string>;
  private readonly ca: string | Buffer | undefined;

  /** `new GradfleetClient('http://host:7070')` or with options. */
  constructor(options: GradfleetClientOptions | string) {
    if (typeof options === 'string') options = { url: options };
    this.base = options.url.replace(/\/+$/, '').replace(/^ws(s?):/, 'http$1:');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.auth = options.token ? { authorization: `Bearer ${options.token}` } : {};
    this.ca = options.ca;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.requestWithHeaders<T>(method, path, body)).data;
  }

  private async requestWithHeaders<T>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ data: T; res: Response }> {
    let res: Response;
    try {
      res = await httpFetch(
        this.base + path,
        {
          method,
          headers: body === undefined ? this.auth : { ...this.auth, 'content-type': 'application/json' },
          body: body === undefined ? null : JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        },
        this.ca,
      );
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new ApiError(
        0,
        'UNREACHABLE',
        `cannot reach the coordinator at ${this.base} (${cause}); is \`gradfleet coordinator\` running?`,
      );
    }
    const text = await res.text();
    let data: unknown;
    try {
      data = text ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      data = undefined;
    }
    if (!res.ok) {
      const e = (data as { error?: { code?: string; message?: string; issues?: { path: string; message: string }[] } })
        ?.error;
      throw new ApiError(
        res.status,
        e?.code ?? 'HTTP_ERROR',
        e?.message ?? `${method} ${path}: HTTP ${res.status}`,
        e?.issues ?? [],
      );
    }
    return { data: data as T, res };
  }

  submit(spec: JobSpecInput): Promise<JobStatus> {
    return this.request('POST', '/v1/jobs', spec);
  }

  job(id: string): Promise<JobStatus> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** Every job (in `state`, when given), oldest first, following the pages of `GET /v1/jobs`. */
  async jobs(state?: JobState): Promise<JobSummary[]> {
    const all: JobSummary[] = [];
    for await (const page of this.jobPages(state)) all.push(...page);
    return all;
  }

  /** The pages of `GET /v1/jobs` (`limit` jobs each, at most 1,000), oldest first, each as it arrives. */
  async *jobPages(state?: JobState, limit = 1_000): AsyncGenerator<JobSummary[]> {
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams({ limit: String(limit) });
      if (state) query.set('state', state);
      if (cursor) query.set('cursor', cursor);
      const { data, res } = await this.requestWithHeaders<JobSummary[]>('GET', `/v1/jobs?${query.toString()}`);
      yield data;
      cursor = res.headers.get('x-next-cursor');
    } while (cursor);
  }

  /** Starts ingesting a named chunked dataset (`docs/datasets.md`); answers at once, state INGESTING. */
  ingestDataset(name: string, request: IngestRequestInput): Promise<DatasetInfo> {
    return this.request('PUT', `/v1/datasets/${encodeURIComponent(name)}`, request);
  }

  dataset(name: string): Promise<DatasetInfo> {
    return this.request('GET', `/v1/datasets/${encodeURIComponent(name)}`);
  }

  datasets(): Promise<DatasetInfo[]> {
    return this.request('GET', '/v1/datasets');
  }

  /** Removes a named dataset (stops its ingestion if it is still running). */
  removeDataset(name: string): Promise<void> {
    return this.request('DELETE', `/v1/datasets/${encodeURIComponent(name)}`);
  }

  /** Polls a dataset until its ingestion ends (READY or FAILED), calling `onUpdate` with each state. */
  async waitForDataset(name: string, onUpdate?: (d: DatasetInfo) => void, pollMs = 250): Promise<DatasetInfo> {
    for (;;) {
      const d = await this.dataset(name);
      onUpdate?.(d);
      if (d.state !== 'INGESTING') return d;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Deletes a finished job with its data, checkpoints and model. */
  delete(id: string): Promise<void> {
    return this.request('DELETE', `/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** The job's log lines after row `after` (for following: pass the last row seen). */
  logs(id: string, after = 0): Promise<{ row: number; time: string; line: string }[]> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/logs?after=${after}`);
  }

  /** Uploads a dataset file; use the returned `source` in a job spec (e.g. `{ csv: { train: source } }`). */
  async upload(data: Uint8Array | Blob, name: string): Promise<{ source: string; bytes: number; sha256: string }> {
    let res: Response;
    try {
      const body = data instanceof Blob ? new Uint8Array(await data.arrayBuffer()) : data;
      res = await httpFetch(
        `${this.base}/v1/datasets?name=${encodeURIComponent(name)}`,
        { method: 'POST', body, headers: { ...this.auth, 'content-type': 'application/octet-stream' } },
        this.ca,
      );
    } catch (err) {
      throw new ApiError(0, 'UNREACHABLE', `cannot reach the coordinator at ${this.base} (${(err as Error).message})`);
    }
    const body = (await res.json()) as {
      source: string;
      bytes: number;
      sha256: string;
      error?: { code: string; message: string; issues?: { path: string; message: string }[] };
    };
    if (!res.ok)
      throw new ApiError(
        res.status,
        body.error?.code ?? 'HTTP_ERROR',
        body.error?.message ?? `upload failed: HTTP ${res.status}`,
        body.error?.issues ?? [],
      );
    return body;
  }

  /**
   * Uploads a TensorFlow.js model artifact (its `model.json`, and its weights: `weights.bin`,
   * or the manifest's files concatenated in order) for a job's `initialModel`:
   * `submit({ ..., initialModel: await client.uploadModel(json, weights) })`.
   */
  async uploadModel(
    modelJson: Uint8Array | string | Record<string, unknown>,
    weights: Uint8Array | ArrayBuffer,
  ): Promise<{ modelJson: string; weights: string }> {
    const json =
      modelJson instanceof Uint8Array
        ? modelJson
        : new TextEncoder().encode(typeof modelJson === 'string' ? modelJson : JSON.stringify(modelJson));
    return {
      modelJson: (await this.upload(json, 'model.json')).source,
      weights: (await this.upload(weights instanceof Uint8Array ? weights : new Uint8Array(weights), 'weights.bin'))
        .source,
    };
  }

  /**
   * Live events of a job (server-sent events): `status` whenever the job changes (the
   * coordinator sends the job once, then only the fields that changed; this merges them)
   * and `log` lines, until it ends. The status has no topology (`JobSummary`).
   */
  async *watch(
    id: string,
  ): AsyncGenerator<{ type: 'status'; job: JobSummary } | { type: 'log'; time: string; line: string }> {
    const res = await httpFetch(
      `${this.base}/v1/jobs/${encodeURIComponent(id)}/events`,
      { headers: this.auth },
      this.ca,
    );
    if (!res.ok || !res.body) {
      const e = ((await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string } })?.error;
      throw new ApiError(
        res.status,
        e?.code ?? 'HTTP_ERROR',
        e?.message ?? `cannot watch job ${id}: HTTP ${res.status}`,
      );
    }
    let job: Record<string, unknown> | undefined;
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!data) continue;
        if (event === 'status') {
          job = JSON.parse(data) as Record<string, unknown>;
          yield { type: 'status', job: { ...job } as unknown as JobSummary };
        } else if (event === 'change' && job) {
          for (const [key, value] of Object.entries(JSON.parse(data) as Record<string, unknown>)) {
            if (value === null) delete job[key];
            else job[key] = value;
          }
          yield { type: 'status', job: { ...job } as unknown as JobSummary };
        } else if (event === 'log') yield { type: 'log', ...(JSON.parse(data) as { time: string; line: string }) };
      }
    }
  }

  cancel(id: string): Promise<JobStatus> {
    return this.request('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  workers(): Promise<WorkerInfo[]> {
    return this.request('GET', '/v1/workers');
  }

  /** The kept checkpoints of a job, oldest first, with what was recorded when each was written. */
  checkpoints(id: string): Promise<CheckpointInfo[]> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/checkpoints`);
  }

  /**
   * The trained model as a TensorFlow.js artifact: `model.json` and its weight bytes; with
   * `checkpoint`, the weights of the kept checkpoint at that step (`checkpoints(id)` lists them).
   */
  download(
    id: string,
    options: { checkpoint?: number } = {},
  ): Promise<{ modelJson: Record<string, unknown>; weights: ArrayBuffer }> {
    return this.artifact(this.artifactPath(id, options.checkpoint));
  }

  /** Same as `download(id)`. */
  model(id: string): Promise<{ modelJson: Record<string, unknown>; weights: ArrayBuffer }> {
    return this.download(id);
  }

  /** The weights of the kept checkpoint at `step`, as a TensorFlow.js artifact (same as `download(id, { checkpoint: step })`). */
  checkpointModel(id: string, step: number): Promise<{ modelJson: Record<string, unknown>; weights: ArrayBuffer }> {
    return this.download(id, { checkpoint: step });
  }

  /**
   * Writes the model (or, with `checkpoint`, a kept checkpoint's weights) into `dir` as
   * `model.json` + `weights.bin`, for `tf.loadLayersModel('file://DIR/model.json')`. The
   * weights are streamed to disk, never whole in memory. Resolves with their size.
   */
  async saveModel(id: string, dir: string, options: { checkpoint?: number } = {}): Promise<{ bytes: number }> {
    const path = this.artifactPath(id, options.checkpoint);
    const modelJson = await this.request<Record<string, unknown>>('GET', `${path}/model.json`);
    const res = await this.fetchOk(`${path}/weights.bin`, 'weights download');
    await mkdir(dir, { recursive: true });
    const partial = join(dir, `.weights.bin.${process.pid}.partial`);
    let bytes: number;
    try {
      await pipeline(
        Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>),
        createWriteStream(partial),
      );
      bytes = (await stat(partial)).size;
      await rename(partial, join(dir, 'weights.bin'));
    } catch (err) {
      await rm(partial, { force: true });
      throw new ApiError(0, 'DOWNLOAD_FAILED', `weights download failed: ${(err as Error).message}`);
    }
    await writeFile(join(dir, 'model.json'), JSON.stringify(modelJson));
    return { bytes };
  }

  private artifactPath(id: string, checkpoint?: number): string {
    const job = `/v1/jobs/${encodeURIComponent(id)}`;
    return checkpoint === undefined ? `${job}/model` : `${job}/checkpoints/${checkpoint}/model`;
  }

  private async artifact(path: string): Promise<{ modelJson: Record<string, unknown>; weights: ArrayBuffer }> {
    const modelJson = await this.request<Record<string, unknown>>('GET', `${path}/model.json`);
    const res = await this.fetchOk(`${path}/weights.bin`, 'weights download');
    return { modelJson, weights: await res.arrayBuffer() };
  }

  /** A GET whose body is read by the caller (not JSON); an error answer throws its code and message. */
  private async fetchOk(path: string, what: string): Promise<Response> {
    let res: Response;
    try {
      res = await httpFetch(
        this.base + path,
        { signal: AbortSignal.timeout(this.timeoutMs), headers: this.auth },
        this.ca,
      );
    } catch (err) {
      throw new ApiError(0, 'UNREACHABLE', `cannot reach the coordinator at ${this.base} (${(err as Error).message})`);
    }
    if (res.ok && res.body) return res;
    const e = ((await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string } })?.error;
    throw new ApiError(res.status, e?.code ?? 'HTTP_ERROR', e?.message ?? `${what} failed: HTTP ${res.status}`);
  }

  /** Polls until at least `count` workers are connected. */
  async waitForWorkers(count: number, timeoutMs = 120_000, pollMs = 200): Promise<WorkerInfo[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const workers = await this.workers().catch((err: unknown) => {
        if (err instanceof ApiError && err.code === 'UNREACHABLE' && Date.now() < deadline) return [];
        throw err;
      });
      if (workers.length >= count) return workers;
      if (Date.now() > deadline)
        throw new ApiError(0, 'TIMEOUT', `only ${workers.length} of ${count} workers connected after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Polls a job until it ends, calling `onUpdate` with each status. */
  async waitForJob(id: string, onUpdate?: (job: JobStatus) => void, pollMs = 250): Promise<JobStatus> {
    for (;;) {
      const job = await this.job(id);
      onUpdate?.(job);
      if (TERMINAL_STATES.includes(job.state)) return job;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
}
