import type { JobSpecInput } from '../job/job-spec.js';
import type { JobStatus, WorkerInfo } from '../job/job-status.js';
import { TERMINAL_STATES } from '../job/job-status.js';

export interface GradfleetClientOptions {
  /** Coordinator base URL, e.g. `http://127.0.0.1:7070`. */
  url: string;
  /** Per-request timeout in ms. @defaultValue 30000 */
  timeoutMs?: number;
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

  constructor(options: GradfleetClientOptions) {
    this.base = options.url.replace(/\/+$/, '').replace(/^ws(s?):/, 'http$1:');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new ApiError(0, 'UNREACHABLE', `cannot reach the coordinator at ${this.base} (${cause}); is \`gradfleet coordinator\` running?`);
    }
    const text = await res.text();
    const data = text ? (JSON.parse(text) as unknown) : undefined;
    if (!res.ok) {
      const e = (data as { error?: { code?: string; message?: string; issues?: { path: string; message: string }[] } })?.error;
      throw new ApiError(res.status, e?.code ?? 'HTTP_ERROR', e?.message ?? `${method} ${path}: HTTP ${res.status}`, e?.issues ?? []);
    }
    return data as T;
  }

  submit(spec: JobSpecInput): Promise<JobStatus> {
    return this.request('POST', '/v1/jobs', spec);
  }

  job(id: string): Promise<JobStatus> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  }

  jobs(): Promise<JobStatus[]> {
    return this.request('GET', '/v1/jobs');
  }

  cancel(id: string): Promise<JobStatus> {
    return this.request('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  workers(): Promise<WorkerInfo[]> {
    return this.request('GET', '/v1/workers');
  }

  /** The trained model as a TensorFlow.js artifact: `model.json` and its weight bytes. */
  async model(id: string): Promise<{ modelJson: Record<string, unknown>; weights: ArrayBuffer }> {
    const modelJson = await this.request<Record<string, unknown>>('GET', `/v1/jobs/${encodeURIComponent(id)}/model/model.json`);
    const res = await fetch(`${this.base}/v1/jobs/${encodeURIComponent(id)}/model/weights.bin`, { signal: AbortSignal.timeout(this.timeoutMs) });
    if (!res.ok) throw new ApiError(res.status, 'HTTP_ERROR', `weights download failed: HTTP ${res.status}`);
    return { modelJson, weights: await res.arrayBuffer() };
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
      if (Date.now() > deadline) throw new ApiError(0, 'TIMEOUT', `only ${workers.length} of ${count} workers connected after ${timeoutMs} ms`);
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
