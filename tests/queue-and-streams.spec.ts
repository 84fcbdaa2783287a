import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradfleetClient, type JobStatus } from '@gradfleet/core';
import { refusal } from './helpers/api.js';
import { ROOT, TestCluster, writeSmallMnist } from './helpers/cluster.js';
import { dropoutFreeMlp } from './helpers/models.js';

const TOKENS = {
  alice: 'alice-token-0123456789abcdef',
  bob: 'bob-token-0123456789abcdef',
  root: 'root-token-0123456789ab',
};
const sha256 = (t: string) => createHash('sha256').update(t).digest('hex');

/** An API tokens file: alice and bob submit, root is admin. */
function tokensFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gradfleet-queue-'));
  const file = join(dir, 'tokens');
  writeFileSync(
    file,
    `alice ${sha256(TOKENS.alice)} submit\nbob ${sha256(TOKENS.bob)} submit\nroot ${sha256(TOKENS.root)} admin\n`,
  );
  return file;
}

/** A 784 → 2,500 → 10 MLP: 1,988,010 weights, 8 MB of initial weights per built model. */
const bigMlp = {
  class_name: 'Sequential',
  config: {
    name: 'big',
    layers: [
      { class_name: 'Dense', config: { units: 2500, activation: 'relu', batch_input_shape: [null, 784], name: 'h' } },
      { class_name: 'Dense', config: { units: 10, activation: 'softmax', name: 'out' } },
    ],
  },
};

/** One sample of `name` on the coordinator's `/metrics` (summed over its series). */
async function metric(url: string, name: string): Promise<number> {
  // A fresh connection each time (a kept-alive one may race the server's keep-alive timeout).
  const text = await new Promise<string>((resolve, reject) => {
    request(`${url}/metrics`, { agent: false }, (res) => {
      let s = '';
      res.on('data', (c: Buffer) => (s += c.toString())).on('end', () => resolve(s));
    })
      .on('error', reject)
      .end();
  });
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`).exec(line);
    if (m) {
      sum += Number(m[1]);
      seen = true;
    }
  }
  if (!seen) throw new Error(`no metric ${name}`);
  return sum;
}

/** Memory of the coordinator's main thread that a held model would show in: V8 heap plus ArrayBuffers. */
const mainMemory = async (url: string) =>
  (await metric(url, 'nodejs_heap_size_used_bytes')) + (await metric(url, 'nodejs_external_memory_bytes'));

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('queued jobs: limits, no models held, lazy restore, pages', () => {
  const cluster = new TestCluster();
  const as = (name: keyof typeof TOKENS) => new GradfleetClient({ url: cluster.url, token: TOKENS[name] });
  const spec = { model: { topology: bigMlp }, epochs: 1, minWorkers: 1 };
  afterAll(() => cluster.stop());

  it('caps waiting jobs per token and in all (429 QUEUE_FULL) and keeps no model or weights of a waiting job', async () => {
    const file = tokensFile();
    await cluster.startCoordinator([
      '--api-tokens',
      file,
      '--max-queued-jobs',
      '40',
      '--max-queued-jobs-per-token',
      '30',
    ]);
    await as('root').submit({ ...spec, minWorkers: 99, maxWorkers: 99 }); // loads TF.js in the model thread before measuring
    await as('root').cancel((await as('root').jobs())[0]!.id);
    const before = await mainMemory(cluster.url);
    for (let i = 0; i < 30; i++) expect((await as('alice').submit(spec)).state).toBe('QUEUED');
    const mine = await refusal(as('alice').submit(spec));
    expect([mine.status, mine.code]).toEqual([429, 'QUEUE_FULL']);
    expect(mine.message).toContain('--max-queued-jobs-per-token 30');
    expect(mine.message).not.toContain(TOKENS.alice);
    for (let i = 0; i < 10; i++) await as('bob').submit(spec);
    const all = await refusal(as('bob').submit(spec));
    expect([all.status, all.code]).toEqual([429, 'QUEUE_FULL']);
    expect(all.message).toContain('--max-queued-jobs 40');
    expect(cluster.log).toMatch(/request refused.*QUEUE_FULL|QUEUE_FULL.*request refused/);

    // 40 waiting jobs of 8 MB of initial weights each: 320 MB if they held their models.
    expect(await metric(cluster.url, 'gradfleet_job_models_resident')).toBe(0);
    const grown = (await mainMemory(cluster.url)) - before;
    console.log(
      `coordinator main-thread memory after 40 queued 2M-parameter jobs: +${(grown / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(grown).toBeLessThan(64 * 2 ** 20);

    // A cancelled job leaves the queue: alice may submit one more.
    await as('alice').cancel((await as('alice').jobs('QUEUED'))[0]!.id);
    expect((await as('alice').submit(spec)).state).toBe('QUEUED');
  });

  it('lists jobs in pages (limit, X-Next-Cursor, Link), without topologies; client and CLI follow them', async () => {
    const get = (query: string, token = TOKENS.root) =>
      fetch(`${cluster.url}/v1/jobs${query}`, { headers: { authorization: `Bearer ${token}` } });
    const seen: string[] = [];
    let query = '?limit=15';
    let pages = 0;
    for (;;) {
      const res = await get(query);
      expect(res.status).toBe(200);
      const page = (await res.json()) as JobStatus[];
      expect(page.length).toBeLessThanOrEqual(15);
      for (const j of page) expect(j.spec).not.toHaveProperty('model'); // no topology in lists
      seen.push(...page.map((j) => j.id));
      pages++;
      const next = res.headers.get('x-next-cursor');
      if (!next) break;
      expect(res.headers.get('link')).toBe(`</v1/jobs?limit=15&cursor=${next}>; rel="next"`);
      query = `?limit=15&cursor=${next}`;
    }
    expect(pages).toBe(3); // 42 jobs
    expect(seen).toEqual((await as('root').jobs()).map((j) => j.id));
    expect(new Set(seen).size).toBe(42);
    expect(await as('alice').jobs()).toHaveLength(31); // a submit token pages through its own jobs only
    for (const [q, code] of [
      ['?limit=0', 'INVALID_LIMIT'],
      ['?limit=1001', 'INVALID_LIMIT'],
      ['?limit=ten', 'INVALID_LIMIT'],
      ['?cursor=abc', 'INVALID_CURSOR'],
      ['?cursor=-1', 'INVALID_CURSOR'],
    ]) {
      const res = await get(q!);
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([400, code]);
    }
  });

  it('restarts with 2,000 more stored jobs promptly (models are built when a job starts) and pages them', async () => {
    const template = await as('root').job((await as('root').jobs('QUEUED'))[0]!.id);
    await cluster.stop();
    const db = new Database(join(cluster.dataDir, 'gradfleet.db'));
    const insert = db.prepare('INSERT INTO jobs (id, seq, state, status, updated_at) VALUES (?, ?, ?, ?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) {
        const id = randomUUID();
        insert.run(id, 1000 + i, 'QUEUED', JSON.stringify({ ...template, id }), new Date().toISOString());
      }
    })();
    db.close();
    const started = Date.now();
    await cluster.startCoordinator(['--api-tokens', tokensFile()]);
    const ms = Date.now() - started;
    console.log(`coordinator with 2,042 stored jobs (2M parameters each) listened after ${ms} ms`);
    // Rebuilding 2,000 models of 2M parameters takes minutes; reading their records, about a second.
    expect(ms).toBeLessThan(20_000);
    expect(await metric(cluster.url, 'gradfleet_job_models_resident')).toBe(0);
    expect(await as('root').jobs()).toHaveLength(2042); // three pages of 1,000

    const cli = spawn(process.execPath, [join(ROOT, 'apps/cli/dist/main.js'), 'jobs', '--coordinator', cluster.url], {
      env: { ...process.env, GRADFLEET_TOKEN: TOKENS.root },
    });
    let out = '';
    cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await new Promise((r) => cli.once('exit', r))).toBe(0);
    expect(out.trim().split('\n')).toHaveLength(2042);
  });
});

describe('a job builds its model when it starts and drops it when it ends; streams send changes only', () => {
  const cluster = new TestCluster();
  afterAll(() => cluster.stop());

  it('holds no model while queued, builds it to run, and holds none once finished', async () => {
    const data = await writeSmallMnist(640, 64);
    await cluster.startCoordinator();
    const job = await cluster.client.submit({
      model: { topology: dropoutFreeMlp },
      dataset: data.dataset,
      epochs: 2,
      batchSize: 32,
      minWorkers: 1,
    });
    expect(await metric(cluster.url, 'gradfleet_job_models_resident')).toBe(0);
    const res = await fetch(`${cluster.url}/v1/jobs/${job.id}/events`);
    const text = res.text();
    cluster.startWorker();
    const events = (await text)
      .split('\n\n')
      .filter(Boolean)
      .map((block) => ({
        event: /^event: (.*)$/m.exec(block)![1]!,
        data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown>,
      }));
    expect(events[0]!.event).toBe('status');
    expect(events[0]!.data['spec']).not.toHaveProperty('model'); // the topology is not streamed
    const changes = events.filter((e) => e.event === 'change');
    expect(changes.length).toBeGreaterThan(2);
    for (const c of changes) {
      expect(c.data).not.toHaveProperty('spec'); // never re-sent
      expect(c.data).not.toHaveProperty('id');
    }
    expect(changes.some((c) => 'progress' in c.data)).toBe(true);
    expect(changes.findLast((c) => 'state' in c.data)!.data['state']).toBe('SUCCEEDED');
    // The client merges the changes into the whole (topology-free) status.
    const merged = [];
    for await (const ev of cluster.client.watch(job.id)) if (ev.type === 'status') merged.push(ev.job);
    const done = await cluster.client.job(job.id);
    const { model: _model, ...specWithoutModel } = done.spec;
    expect(merged.at(-1)).toEqual({ ...done, spec: specWithoutModel });
    expect(
      await until(
        () => metric(cluster.url, 'gradfleet_job_models_resident'),
        (n) => n === 0,
        10_000,
      ),
    ).toBe(0);
  });
});

describe('event streams: limits and backpressure', () => {
  const cluster = new TestCluster();
  const as = (name: keyof typeof TOKENS) => new GradfleetClient({ url: cluster.url, token: TOKENS[name] });
  let jobId: string;
  const LINES = 300_000;
  beforeAll(async () => {
    await cluster.startCoordinator([
      '--api-tokens',
      tokensFile(),
      '--max-event-streams',
      '3',
      '--max-event-streams-per-token',
      '2',
      '--event-stream-stall-ms',
      '2000',
    ]);
    jobId = (await as('alice').submit({ epochs: 1, minWorkers: 9 })).id;
  });
  afterAll(() => cluster.stop());

  /** Opens the job's event stream as `who` with a real HTTP client; the body is left unread. */
  const open = (who: keyof typeof TOKENS) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`${cluster.url}/v1/jobs/${jobId}/events`, {
        headers: { authorization: `Bearer ${TOKENS[who]}` },
        agent: false,
      });
      req.on('response', resolve).on('error', reject).end();
    });
  const body = async (res: IncomingMessage) => {
    let s = '';
    for await (const c of res) s += String(c);
    return JSON.parse(s) as { error: { code: string; message: string } };
  };

  it('caps open streams per token and in all (429 TOO_MANY_STREAMS); a closed stream frees its place', async () => {
    const a1 = await open('alice');
    const a2 = await open('alice');
    expect([a1.statusCode, a2.statusCode]).toEqual([200, 200]);
    const a3 = await open('alice');
    expect(a3.statusCode).toBe(429);
    const e3 = await body(a3);
    expect(e3.error.code).toBe('TOO_MANY_STREAMS');
    expect(e3.error.message).toContain('--max-event-streams-per-token 2');
    expect(e3.error.message).not.toContain(TOKENS.alice);
    const r1 = await open('root');
    expect(r1.statusCode).toBe(200);
    const r2 = await open('root');
    expect(r2.statusCode).toBe(429);
    expect((await body(r2)).error.message).toContain('--max-event-streams 3');
    expect(await metric(cluster.url, 'gradfleet_event_streams')).toBe(3);
    a1.destroy();
    await until(
      () => metric(cluster.url, 'gradfleet_event_streams'),
      (n) => n === 2,
      5_000,
    );
    const a4 = await open('alice');
    expect(a4.statusCode).toBe(200);
    for (const s of [a2, r1, a4]) s.destroy();
    await until(
      () => metric(cluster.url, 'gradfleet_event_streams'),
      (n) => n === 0,
      5_000,
    );
  });

  it('stops writing to a client that does not read, then closes it; a reading client gets every line', async () => {
    // 300,000 log lines (about 45 MB as events) for the job.
    const db = new Database(join(cluster.dataDir, 'gradfleet.db'));
    db.pragma('busy_timeout = 10000');
    const insert = db.prepare('INSERT INTO logs (job_id, time, line) VALUES (?, ?, ?)');
    const time = new Date().toISOString();
    db.transaction(() => {
      for (let i = 0; i < LINES; i++) insert.run(jobId, time, `line ${i} ${'x'.repeat(100)}`);
    })();
    db.close();

    const before = await mainMemory(cluster.url);
    // A raw HTTP client that sends its request and never reads a byte.
    const socket = connect(Number(new URL(cluster.url).port), '127.0.0.1');
    socket.pause();
    socket.write(
      `GET /v1/jobs/${jobId}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKENS.alice}\r\n\r\n`,
    );
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 150));
      peak = Math.max(peak, (await mainMemory(cluster.url)) - before);
    }
    console.log(`coordinator memory with a stalled stream over 45 MB of events: +${(peak / 2 ** 20).toFixed(1)} MiB`);
    expect(peak).toBeLessThan(20 * 2 ** 20);
    expect(await metric(cluster.url, 'gradfleet_event_streams')).toBe(1);
    // Left full for --event-stream-stall-ms, the stream is closed.
    await until(
      () => metric(cluster.url, 'gradfleet_event_streams_closed_total'),
      (n) => n === 1,
      10_000,
    );
    expect(await metric(cluster.url, 'gradfleet_event_streams')).toBe(0);
    await cluster.waitForLog('the client stopped reading');
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('error', () => undefined); // a reset is how the close may arrive
    socket.resume();
    await new Promise((r) => socket.once('close', r));
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(45 * 2 ** 20 * 0.5); // cut off: most was never written

    // A client that reads gets every line, in order, then the end (the job is cancelled).
    await as('alice').cancel(jobId);
    let n = 0;
    let ordered = true;
    for await (const ev of as('alice').watch(jobId)) {
      if (ev.type !== 'log' || !ev.line.startsWith('line ')) continue;
      ordered &&= ev.line.startsWith(`line ${n} `);
      n++;
    }
    expect(n).toBe(LINES);
    expect(ordered).toBe(true);
  });
});

describe('the model builder thread has a memory limit', () => {
  const cluster = new TestCluster();
  afterAll(() => cluster.stop());

  it('refuses a job whose build outgrows --model-build-heap-mb on `model`, and keeps serving', async () => {
    await cluster.startCoordinator(['--model-build-heap-mb', '8']);
    for (let i = 0; i < 2; i++) {
      // Each try starts a fresh thread, which outgrows 8 MiB while building.
      const err = await refusal(cluster.client.submit({ model: { topology: dropoutFreeMlp }, epochs: 1 }));
      expect([err.status, err.code]).toEqual([400, 'INVALID_JOB_SPEC']);
      expect(err.issues[0]).toMatchObject({ path: 'model' });
      expect(err.issues[0]!.message).toContain('--model-build-heap-mb');
    }
    expect((await fetch(`${cluster.url}/healthz`)).status).toBe(200);
    expect(await cluster.client.jobs()).toEqual([]);
  });
});
