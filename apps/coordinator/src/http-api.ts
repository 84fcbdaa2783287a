import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, InvalidDataError, InvalidJobSpecError, InvalidModelError, type Logger } from '@gradfleet/core';
import { JobNotFoundError, type JobManager } from './job-manager.js';
import type { CoordinatorMetrics } from './metrics.js';
import { modelArtifactJson } from './model-info.js';

/** Largest JSON request body (a job spec with a topology), in bytes. */
export const MAX_JOB_SPEC_BYTES = 4 * 1024 * 1024;

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly issues: { path: string; message: string }[] = []) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const data = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(data);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_JOB_SPEC_BYTES) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds ${MAX_JOB_SPEC_BYTES}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JOB_SPEC_BYTES) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `body exceeds ${MAX_JOB_SPEC_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, 'INVALID_JSON', `request body is not JSON: ${(err as Error).message}`);
  }
}

/**
 * The job API, HTTP+JSON on the same port as the worker WebSocket:
 * `POST /v1/jobs`, `GET /v1/jobs`, `GET /v1/jobs/:id`, `POST /v1/jobs/:id/cancel`,
 * `GET /v1/jobs/:id/model/model.json|weights.bin`, `GET /v1/workers`, `GET /metrics`, `GET /healthz`.
 * Errors are `{ error: { code, message, issues? } }`.
 */
export function createApiHandler(jobs: JobManager, metrics: CoordinatorMetrics, log: Logger) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean);
    const method = req.method ?? 'GET';
    try {
      if (url.pathname === '/healthz') return send(res, 200, { ok: true });
      if (url.pathname === '/metrics' && method === 'GET') return send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
      if (url.pathname === '/v1/workers' && method === 'GET') return send(res, 200, jobs.listWorkers());
      if (url.pathname === '/v1/jobs') {
        if (method === 'GET') return send(res, 200, jobs.list());
        if (method === 'POST') return send(res, 201, await jobs.submit(await readJson(req)));
      }
      if (parts[0] === 'v1' && parts[1] === 'jobs' && parts[2]) {
        const id = decodeURIComponent(parts[2]);
        if (parts.length === 3 && method === 'GET') return send(res, 200, jobs.get(id).status);
        if (parts[3] === 'cancel' && method === 'POST') return send(res, 200, jobs.cancel(id));
        if (parts[3] === 'model' && method === 'GET') {
          const job = jobs.get(id);
          if (!job.finalWeights) throw new HttpError(409, 'MODEL_NOT_READY', `job ${id} is ${job.state}; the model is available once it SUCCEEDED`);
          if (parts[4] === 'model.json') return send(res, 200, modelArtifactJson(job.model));
          if (parts[4] === 'weights.bin') {
            const w = job.finalWeights;
            return send(res, 200, new Uint8Array(w.buffer, w.byteOffset, w.byteLength), 'application/octet-stream');
          }
        }
      }
      throw new HttpError(404, 'NOT_FOUND', `no route for ${method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof HttpError) return send(res, err.status, { error: { code: err.code, message: err.message, issues: err.issues } });
      if (err instanceof InvalidJobSpecError) return send(res, 400, { error: { code: err.code, message: err.message, issues: err.issues } });
      if (err instanceof InvalidModelError || err instanceof InvalidDataError) return send(res, 400, { error: { code: err.code, message: err.message, issues: [{ path: 'model', message: err.message }] } });
      if (err instanceof JobNotFoundError) return send(res, 404, { error: { code: err.code, message: err.message } });
      if (err instanceof ApiError) return send(res, 502, { error: { code: err.code, message: err.message } });
      log.error({ err }, 'API handler failed');
      return send(res, 500, { error: { code: 'INTERNAL', message: 'internal error; see the coordinator log' } });
    }
  };
}
