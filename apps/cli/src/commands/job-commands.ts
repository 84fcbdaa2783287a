import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import {
  ApiError,
  GradfleetClient,
  type JobSpecInput,
  type JobState,
  type JobStatus,
  type JobSummary,
} from '@gradfleet/core/client';
import { JobProgressView, formatReport } from '../progress.js';
import { print, printError } from '../terminal.js';

export interface ClientOptions {
  coordinator: string;
  /** API token (`--token` or GRADFLEET_TOKEN). */
  token?: string;
  /** CA certificate file of an https coordinator (`--ca` or GRADFLEET_CA). */
  ca?: string;
  json?: boolean;
}

export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const issues = err.issues.map((i) => `\n  - ${i.path || '(root)'}: ${i.message}`).join('');
    return `${err.code}: ${err.message}${issues}`;
  }
  return (err as Error).message;
}

/** Runs a command, printing errors the same way for all; resolves with the exit code. */
export async function run(name: string, f: () => Promise<number | void>): Promise<number> {
  try {
    return (await f()) ?? 0;
  } catch (err) {
    printError(`gradfleet ${name} failed: ${describeError(err)}`);
    return 1;
  }
}

/** Follows a job live (progress bar, log lines) until it ends; exit code 0 when it SUCCEEDED. */
export async function follow(client: GradfleetClient, id: string, showLogs = true): Promise<number> {
  const view = new JobProgressView();
  let last: JobStatus | JobSummary | undefined;
  for await (const ev of client.watch(id)) {
    if (ev.type === 'status') {
      last = ev.job;
      view.update(ev.job);
    } else if (showLogs && !/^epoch \d+\//.test(ev.line)) {
      view.stopBar();
      print(`${ev.time.slice(11, 19)}  ${ev.line}`);
    }
  }
  view.stopBar();
  const done = last ?? (await client.job(id));
  print(formatReport(done, []));
  return done.state === 'SUCCEEDED' ? 0 : 1;
}

/** `gradfleet submit <job.json> [--data FILE] [--validation-data FILE] [--test-data FILE] [--follow]`. */
export async function submit(
  file: string,
  opts: ClientOptions & {
    data?: string;
    validationData?: string;
    testData?: string;
    initialModel?: string;
    initialModelDir?: string;
    follow?: boolean;
  },
): Promise<number> {
  const client = new GradfleetClient({
    url: opts.coordinator,
    token: opts.token,
    ca: opts.ca ? readFileSync(opts.ca) : undefined,
  });
  let spec: JobSpecInput;
  try {
    spec = JSON.parse(await readFile(file, 'utf8')) as JobSpecInput;
  } catch (err) {
    throw new Error(`cannot read job spec ${file}: ${(err as Error).message}`);
  }
  if (opts.data) {
    const kind = extname(opts.data).toLowerCase() === '.jsonl' ? 'jsonl' : 'csv';
    const upload = async (path: string) => (await client.upload(await readFile(path), basename(path))).source;
    const train = await upload(opts.data);
    const validation = opts.validationData ? await upload(opts.validationData) : undefined;
    const test = opts.testData ? await upload(opts.testData) : undefined;
    const existing = (
      typeof spec.dataset === 'object' && kind in spec.dataset ? (spec.dataset as Record<string, object>)[kind] : {}
    ) as object;
    spec.dataset = {
      [kind]: { ...existing, train, ...(validation ? { validation } : {}), ...(test ? { test } : {}) },
    } as JobSpecInput['dataset'];
  }
  if (opts.initialModel && opts.initialModelDir)
    throw new Error('give --initial-model JOB or --initial-model-dir DIR, not both');
  if (opts.initialModel) spec.initialModel = { job: opts.initialModel };
  if (opts.initialModelDir) {
    const { modelJson, weights } = await readModelDir(opts.initialModelDir);
    spec.initialModel = await client.uploadModel(modelJson, weights);
  }
  const job = await client.submit(spec);
  if (opts.json) print(JSON.stringify(job, null, 2));
  else print(`job ${job.id} ${job.state}`);
  return opts.follow ? follow(client, job.id) : 0;
}

/**
 * A TensorFlow.js artifact saved to files (`model.json` and the weight files its manifest
 * names, e.g. `weights.bin`) in `dir`: the model.json bytes and the weight files concatenated
 * in manifest order, as TensorFlow.js reads them. Weight files must lie in `dir`.
 */
async function readModelDir(dir: string): Promise<{ modelJson: Uint8Array; weights: Uint8Array }> {
  const file = join(dir, 'model.json');
  const modelJson = await readFile(file).catch((err: Error) => {
    throw new Error(`cannot read ${file}: ${err.message}`);
  });
  let paths: string[];
  try {
    const manifest = (JSON.parse(modelJson.toString('utf8')) as { weightsManifest?: { paths?: unknown }[] })
      .weightsManifest;
    paths = (manifest ?? []).flatMap((g) => (Array.isArray(g.paths) ? g.paths.map(String) : []));
  } catch {
    throw new Error(`${file} is not JSON: give the model.json that model.save() wrote`);
  }
  if (paths.length === 0) throw new Error(`${file} names no weight files (weightsManifest[].paths)`);
  const parts = await Promise.all(
    paths.map((p) => {
      const path = resolve(dir, p);
      if (relative(resolve(dir), path).startsWith('..'))
        throw new Error(`${file} names a weight file outside ${dir}; keep the artifact's files together`);
      return readFile(path);
    }),
  );
  return { modelJson, weights: Buffer.concat(parts) };
}

/** `gradfleet jobs [--state S]`: every job, page by page (`GET /v1/jobs` pages), printed as each page arrives. */
export async function jobs(opts: ClientOptions & { state?: string }): Promise<number> {
  const client = new GradfleetClient({
    url: opts.coordinator,
    token: opts.token,
    ca: opts.ca ? readFileSync(opts.ca) : undefined,
  });
  const state = opts.state?.toUpperCase() as JobState | undefined;
  if (opts.json) {
    print(JSON.stringify(await client.jobs(state), null, 2));
    return 0;
  }
  let count = 0;
  for await (const page of client.jobPages(state)) {
    for (const j of page) {
      const acc = j.result?.testAccuracy === undefined ? '' : `  test_acc ${(j.result.testAccuracy * 100).toFixed(2)}%`;
      print(
        `${j.id}  ${j.state.padEnd(9)}  ${j.createdAt.slice(0, 19)}  ${j.spec.name ?? j.spec.model ?? 'custom'}${acc}${j.reason ? `  (${j.reason})` : ''}`,
      );
    }
    count += page.length;
  }
  if (count === 0) print('no jobs');
  return 0;
}

/** `gradfleet logs JOB [-f]`. */
export async function logs(id: string, opts: ClientOptions & { follow?: boolean }): Promise<number> {
  const client = new GradfleetClient({
    url: opts.coordinator,
    token: opts.token,
    ca: opts.ca ? readFileSync(opts.ca) : undefined,
  });
  if (opts.follow) return follow(client, id);
  for (const l of await client.logs(id))
    print(opts.json ? JSON.stringify(l) : `${l.time.slice(0, 19).replace('T', ' ')}  ${l.line}`);
  return 0;
}

/** `gradfleet cancel JOB`. */
export async function cancel(id: string, opts: ClientOptions): Promise<number> {
  const job = await new GradfleetClient({
    url: opts.coordinator,
    token: opts.token,
    ca: opts.ca ? readFileSync(opts.ca) : undefined,
  }).cancel(id);
  print(
    opts.json ? JSON.stringify(job, null, 2) : `job ${job.id} ${job.state === 'RUNNING' ? 'cancelling' : job.state}`,
  );
  return 0;
}
