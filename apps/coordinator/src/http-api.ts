import { open } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  InvalidDataError,
  InvalidIngestRequestError,
  InvalidJobSpecError,
  InvalidModelError,
  JOB_STATES,
  summarizeJob,
  chunkName,
  s3Reason,
  type JobState,
  type Logger,
} from '@gradfleet/core';
import { readModelArtifact } from './checkpoint-store.js';
import { checkpointInfo } from './job-checkpoint.js';
import { FsChunkStore } from './chunk-store.js';
import type { Authenticator } from './auth.js';
import type { BrowserGuard } from './browser-guard.js';
import type { DatasetFiles } from './dataset-files.js';
import type { DatasetCatalog } from './dataset-catalog.js';
import type { DatasetIngest } from './dataset-ingest.js';
import type { EventStreams } from './event-streams.js';
import { JobRequestError, type JobManager } from './job-manager.js';
import type { JobStore } from './job-store.js';
import type { CoordinatorMetrics } from './metrics.js';

/** Largest JSON request body (a job spec with a topology), in bytes. */
export const MAX_JOB_SPEC_BYTES = 4 * 1024 * 1024;
/** Jobs per page of `GET /v1/jobs` unless `limit` says otherwise. */
export const DEFAULT_JOB_PAGE = 100;
/** Most jobs per page of `GET /v1/jobs` (a summary is a few kB: a page stays under a few MB). */
export const MAX_JOB_PAGE = 1_000;

export interface ApiContext {
  jobs: JobManager;
  store: JobStore;
  ingest: DatasetIngest;
  datasets: DatasetCatalog;
  metrics: CoordinatorMetrics;
  log: Logger;
  auth: Authenticator;
  /** Host and Origin checks that keep web pages out (`browser-guard.ts`). */
  guard: BrowserGuard;
  /** Quota and expiry of stored uploads and downloads (`dataset-files.ts`). */
  datasetFiles: DatasetFiles;
  /** Event streams with their limits (`event-streams.ts`). */
  streams: EventStreams;
  /** True once the coordinator is shutting down (readiness fails so load balancers stop sending). */
  draining: () => boolean;
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const data = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(data);
}

/** The media type of a request body, without parameters (`application/json; charset=utf-8` → `application/json`). */
function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * Refuses a body of any other type than `expected` (415). A web page can send a body
 * without a CORS preflight only as `text/plain`, form data or none at all, so a coordinator
 * that requires `application/json` (or `application/octet-stream`) gets no such body from one.
 */
function requireType(req: IncomingMessage, expected: string): void {
  if (mediaType(req) !== expected)
    throw new JobRequestError(415, 'UNSUPPORTED_MEDIA_TYPE', `send the body with Content-Type: ${expected}`);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  requireType(req, 'application/json');
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_JOB_SPEC_BYTES)
    throw new JobRequestError(413, 'PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds ${MAX_JOB_SPEC_BYTES}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JOB_SPEC_BYTES)
      throw new JobRequestError(413, 'PAYLOAD_TOO_LARGE', `body exceeds ${MAX_JOB_SPEC_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new JobRequestError(400, 'INVALID_JSON', `request body is not JSON: ${(err as Error).message}`);
  }
}

/**
 * Streams a file; opened first, so a delete racing the request answers 404 or serves the
 * whole file, and a read error later only ends this response (never the coordinator). Answers the file's size.
 */
async function sendFile(
  ctx: ApiContext,
  res: ServerResponse,
  path: string,
  what: string,
  missing = async (): Promise<Error> => new JobRequestError(404, 'NOT_FOUND', `${what} not found`),
): Promise<number> {
  const file = await open(path).catch(() => undefined);
  if (!file) throw await missing();
  let size: number;
  try {
    const info = await file.stat();
    size = info.size;
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': info.size,
      'cache-control': 'no-store',
    });
  } catch (err) {
    await file.close();
    throw err;
  }
  await pipeline(file.createReadStream(), res).catch((err: NodeJS.ErrnoException) => {
    ctx.log.warn({ what, code: err.code }, 'file response ended early');
    res.destroy();
  });
  return size;
}

/** The files of a TensorFlow.js model artifact as the API serves them. */
const ARTIFACT_FILES = new Set(['model.json', 'weights.bin']);

/**
 * One file of a model artifact directory (`model.json` + `weights.bin`, as
 * `commitModelArtifact` and checkpoints write them): the final model and every kept
 * checkpoint are served by this. `weights.bin` is streamed from an open file, never read
 * whole; `missing` answers when the artifact is not (or no longer) there.
 */
async function sendArtifact(
  ctx: ApiContext,
  res: ServerResponse,
  dir: string,
  file: string,
  what: string,
  missing: () => Promise<Error>,
): Promise<void> {
  if (file === 'weights.bin')
    return void (await sendFile(ctx, res, join(dir, 'weights.bin'), `weights of the ${what}`, missing));
  const artifact = await readModelArtifact(dir);
  if (!artifact) throw await missing();
  return send(res, 200, artifact.modelJson);
}

/**
 * One chunk of a job's chunked dataset: the split and index are checked (names are derived,
 * never taken from the request), then the bytes come from the job's links or its S3 store.
 */
async function sendChunk(
  ctx: ApiContext,
  res: ServerResponse,
  jobDir: string,
  split: string,
  index: string,
  id: string,
): Promise<void> {
  if ((split !== 'train' && split !== 'test') || !/^\d{1,7}$/.test(index))
    throw new JobRequestError(404, 'NOT_FOUND', 'no such chunk');
  const name = chunkName(split, Number(index));
  const store = await ctx.datasets.jobStore(jobDir);
  const served = (bytes: number) => {
    ctx.metrics.chunksServed.inc();
    ctx.metrics.chunkBytesServed.inc(bytes);
  };
  if (store instanceof FsChunkStore)
    return served(await sendFile(ctx, res, join(store.dir, name), `chunk ${name} of job ${id}`));
  let bytes: Uint8Array;
  try {
    bytes = await store.get(name);
  } catch (err) {
    ctx.log.warn({ job_id: id, chunk: name, err: s3Reason(err) }, 'chunk read from the store failed');
    throw new JobRequestError(502, 'STORE_UNAVAILABLE', `chunk ${name} cannot be read from the dataset's store`);
  }
  send(res, 200, bytes, 'application/octet-stream');
  served(bytes.byteLength);
}

async function route(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  let p: string[];
  try {
    p = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new JobRequestError(400, 'INVALID_PATH', 'the path has a bad percent-encoding');
  }
  const method = req.method ?? 'GET';
  const { jobs } = ctx;
  // Probes and Prometheus reach /healthz, /readyz and /metrics by any name; they hold no secrets.
  if (p[0] === 'v1') {
    if (!ctx.guard.allowsHost(req.headers.host))
      throw new JobRequestError(
        421,
        'MISDIRECTED_REQUEST',
        'the Host header does not name this coordinator: use its address, localhost, or a name given with --public-host',
      );
    if (!ctx.guard.allowsOrigin(req.headers.origin))
      throw new JobRequestError(
        403,
        'ORIGIN_NOT_ALLOWED',
        'requests from web pages (an Origin header) are refused unless the coordinator names the origin with --allow-origin',
      );
  }
  if (url.pathname === '/healthz') return send(res, 200, { ok: true });
  if (url.pathname === '/readyz')
    return ctx.draining()
      ? send(res, 503, { ready: false, reason: 'shutting down' })
      : send(res, 200, { ready: true, workers: jobs.listWorkers().length });
  if (url.pathname === '/metrics' && method === 'GET')
    return send(res, 200, await ctx.metrics.registry.metrics(), ctx.metrics.registry.contentType);
  if (p[0] !== 'v1') throw new JobRequestError(404, 'NOT_FOUND', `no route for ${method} ${url.pathname}`);
  // Workers may fetch dataset shards; everything else is for API clients.
  const scope = p[1] === 'jobs' && p[3] === 'data' ? 'worker' : 'client';
  if (!ctx.auth.allowsApi(req, scope)) {
    ctx.metrics.authFailures.inc({ kind: 'api' });
    if (ctx.auth.identify(req) === 'worker')
      throw new JobRequestError(403, 'FORBIDDEN', 'a worker token cannot use the job API; use the API token');
    throw new JobRequestError(
      401,
      'UNAUTHORIZED',
      'missing or wrong API token (Authorization: Bearer <token>; gradfleet --token or GRADFLEET_TOKEN)',
    );
  }
  const who = ctx.auth.who(req);
  // Every API call is logged with the token's name (never the token) and its answer: changes
  // and refusals at info, successful reads (clients poll them several times a second) at debug.
  res.once('finish', () => {
    const level = method === 'GET' && res.statusCode < 400 ? 'debug' : 'info';
    ctx.log[level]({ method, path: url.pathname, token: who.name, status: res.statusCode }, 'api call');
  });
  /** A `submit` token sees only its own jobs; to it, any other is as missing as an unknown one. */
  const visible = (job: { status: { owner?: string | undefined } }) =>
    who.role !== 'submit' || job.status.owner === who.name;
  if (p[1] === 'workers' && p.length === 2 && method === 'GET') return send(res, 200, jobs.listWorkers());
  if (p[1] === 'datasets' && p.length === 2 && method === 'POST') {
    requireType(req, 'application/octet-stream');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > ctx.ingest.maxBytes)
      throw new InvalidDataError(`upload of ${declared} bytes exceeds ${ctx.ingest.maxBytes}`, 'body');
    await ctx.datasetFiles.reserve(declared);
    return send(
      res,
      201,
      await ctx.ingest.saveUpload(req as AsyncIterable<Buffer>, url.searchParams.get('name') ?? 'upload'),
    );
  }
  if (p[1] === 'datasets' && p.length === 2 && method === 'GET') return send(res, 200, ctx.datasets.list());
  if (p[1] === 'datasets' && p.length === 3) {
    const name = p[2]!;
    if (method === 'GET') return send(res, 200, ctx.datasets.get(name));
    // Ingesting reads coordinator paths, URLs and buckets, and removing deletes data: admin tokens only.
    if ((method === 'PUT' || method === 'DELETE') && who.role !== 'admin')
      throw new JobRequestError(403, 'FORBIDDEN', 'ingesting and removing datasets needs an admin API token');
    if (method === 'PUT') return send(res, 202, ctx.datasets.start(name, await readJson(req)));
    if (method === 'DELETE') {
      await ctx.datasets.remove(name);
      res.writeHead(204).end();
      return;
    }
  }
  if (p[1] === 'jobs' && p.length === 2) {
    if (method === 'GET') {
      const state = url.searchParams.get('state')?.toUpperCase();
      if (state && !(JOB_STATES as readonly string[]).includes(state))
        throw new JobRequestError(400, 'INVALID_STATE', `state must be one of ${JOB_STATES.join(', ')}`);
      const limit = Number(url.searchParams.get('limit') ?? DEFAULT_JOB_PAGE);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_JOB_PAGE)
        throw new JobRequestError(400, 'INVALID_LIMIT', `limit must be an integer from 1 to ${MAX_JOB_PAGE}`);
      const cursor = url.searchParams.get('cursor');
      if (cursor !== null && !/^[1-9][0-9]{0,15}$/.test(cursor))
        throw new JobRequestError(
          400,
          'INVALID_CURSOR',
          'cursor must be a value of X-Next-Cursor from an earlier page',
        );
      const page = jobs.list({
        state: state as JobState | undefined,
        owner: who.role === 'submit' ? who.name : undefined,
        after: cursor === null ? 0 : Number(cursor),
        limit,
      });
      if (page.next !== undefined) {
        const next = new URLSearchParams(url.searchParams);
        next.set('cursor', String(page.next));
        res.setHeader('x-next-cursor', String(page.next));
        res.setHeader('link', `</v1/jobs?${next.toString()}>; rel="next"`);
      }
      return send(res, 200, page.jobs.map(summarizeJob));
    }
    if (method === 'POST') return send(res, 201, await jobs.submit(await readJson(req), who.name, visible));
  }
  if (p[1] === 'jobs' && p[2]) {
    const id = p[2];
    const job = jobs.get(id);
    if (!visible(job)) throw new JobRequestError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    if (p.length === 3 && method === 'GET') return send(res, 200, job.status);
    if (p.length === 3 && method === 'DELETE') {
      await jobs.delete(id);
      res.writeHead(204).end();
      return;
    }
    if (p[3] === 'cancel' && method === 'POST') return send(res, 200, jobs.cancel(id));
    if (p[3] === 'events' && method === 'GET') return ctx.streams.start(job, who.name, req, res);
    if (p[3] === 'logs' && method === 'GET')
      return send(res, 200, ctx.store.logs(id, Number(url.searchParams.get('after') ?? 0)));
    if (p[3] === 'data' && p[4] === 'manifest' && p.length === 5 && method === 'GET' && job.data?.format === 'chunked')
      return void (await sendFile(
        ctx,
        res,
        join(job.dir, 'data', 'chunked', 'manifest.json'),
        `manifest of job ${id}`,
      ));
    if (p[3] === 'data' && p[4] === 'chunks' && p.length === 7 && method === 'GET' && job.data?.format === 'chunked')
      return sendChunk(ctx, res, job.dir, p[5]!, p[6]!, id);
    if (p[3] === 'data' && (p[4] === 'train' || p[4] === 'validation' || p[4] === 'test') && method === 'GET')
      return void (await sendFile(ctx, res, join(job.dir, 'data', `${p[4]}.bin`), `${p[4]} data of job ${id}`));
    if (p[3] === 'model' && p.length === 5 && method === 'GET' && ARTIFACT_FILES.has(p[4]!)) {
      const notReady = async () =>
        new JobRequestError(
          409,
          'MODEL_NOT_READY',
          `job ${id} is ${job.state}; the model is available once it SUCCEEDED`,
        );
      if (job.state !== 'SUCCEEDED') throw await notReady();
      return sendArtifact(ctx, res, join(job.dir, 'model'), p[4]!, `model of job ${id}`, notReady);
    }
    if (p[3] === 'checkpoints' && p.length === 4 && method === 'GET')
      return send(res, 200, (await job.checkpoints.list()).map(checkpointInfo));
    if (p[3] === 'checkpoints' && p[5] === 'model' && p.length === 7 && method === 'GET' && ARTIFACT_FILES.has(p[6]!)) {
      const step = /^\d{1,15}$/.test(p[4]!) ? Number(p[4]) : -1;
      const ckpt = await job.checkpoints.find(step);
      // Also when it was pruned between the listing (or model.json) and this request.
      const missing = async () => {
        const kept = (await job.checkpoints.list()).map((c) => c.step);
        return new JobRequestError(
          404,
          'CHECKPOINT_NOT_FOUND',
          `job ${id} keeps no checkpoint ${step >= 0 ? `at step ${step}` : 'by that name (a step is a number)'}; ${kept.length ? `it keeps steps ${kept.join(', ')}` : 'it keeps none yet'}: list them with GET /v1/jobs/${id}/checkpoints (gradfleet checkpoints ${id})`,
        );
      };
      if (!ckpt) throw await missing();
      return sendArtifact(ctx, res, ckpt.dir, p[6]!, `checkpoint at step ${step} of job ${id}`, missing);
    }
  }
  throw new JobRequestError(404, 'NOT_FOUND', `no route for ${method} ${url.pathname}`);
}

/**
 * The job API (HTTP+JSON, `docs/api.md`) on the same port as the worker WebSocket.
 * Errors are `{ error: { code, message, issues? } }`; `issues` name each bad field.
 */
/** A request listener for `http.createServer`: it never rejects (a failure answers 500 and is logged). */
export function createApiHandler(ctx: ApiContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(ctx, req, res).catch((err: unknown) => {
      ctx.log.error({ err }, 'API error handler failed');
      res.destroy();
    });
  };
}

async function handle(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    await route(ctx, req, res);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (res.headersSent) return void res.end();
    if (typeof e.code === 'string')
      ctx.log.warn({ method: req.method, url: req.url, code: e.code, err: e.message.slice(0, 300) }, 'request refused');
    if (err instanceof JobRequestError)
      return send(res, err.status, { error: { code: err.code, message: err.message } });
    if (err instanceof InvalidJobSpecError || err instanceof InvalidIngestRequestError)
      return send(res, 400, { error: { code: err.code, message: err.message, issues: err.issues } });
    if (err instanceof InvalidDataError) {
      const status = err.path === 'body' ? 413 : 400;
      return send(res, status, {
        error: {
          code: status === 413 ? 'PAYLOAD_TOO_LARGE' : err.code,
          message: err.message,
          issues: [{ path: err.path ?? 'dataset', message: err.message }],
        },
      });
    }
    if (err instanceof InvalidModelError)
      return send(res, 400, {
        error: { code: err.code, message: err.message, issues: [{ path: 'model', message: err.message }] },
      });
    ctx.log.error({ err: e }, 'API handler failed');
    return send(res, 500, { error: { code: 'INTERNAL', message: 'internal error; see the coordinator log' } });
  }
}
