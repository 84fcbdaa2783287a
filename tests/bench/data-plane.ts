/**
 * The data plane (issue #12), side by side in one run: N simulated workers
 * (tests/bench/sim-workers.ts, speaking the real data-frame protocol to the shards)
 * push a gradient of G bytes each per step through a real coordinator process started
 * with `--reducer-threads K` for K = 1 and 2, through the old WebSocket path (K = 0), and
 * through a raw-TCP star that parses nothing (tests/bench/tcp-peers.ts, the bound: the
 * same bytes in the same pattern). Repetitions are interleaved (one of each side per
 * repetition, order rotated); medians with min–max.
 *
 * Inside the coordinator a probe (tests/bench/coordinator-probe.mjs, `node --import`,
 * nothing in the coordinator changed) counts per thread: CPU time, GC pauses, socket bytes
 * and the main thread's event-loop delay, snapshotted at two marks the simulated workers
 * set: after step 1 and before the last step (the window excludes the job's start, with its
 * initial weights, and its end, with the final weights), each taken while every simulated
 * worker holds its next gradient, so no byte is in flight and the counts are exact.
 *
 *   data-plane.ts [--quick]
 */
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { TestCluster } from '../helpers/cluster.js';
import { QUICK, ROOT, median, saveResult, startHelper, type Row } from './bench-lib.js';
import { simulatedJob } from './dense-topology.js';
import { reap, withDeadline } from './watchdog.js';

const MB10 = 784 * 3189; // 2.5 M floats, 10.0 MB
const MB1 = 784 * 319; // 1.0 MB, for N = 64
const N = QUICK ? 4 : 16;
const G = QUICK ? 784 * 128 : MB10;
const G_LABEL = QUICK ? '0.4 MB' : '10 MB';
const STEPS = QUICK ? 6 : 10;
const REPS = QUICK ? 1 : 5;
const THREADS = [0, 1, 2];
/** Steps whose completion marks the measured window (step 0 carries the job's start). */
const markSteps = (steps: number) => [1, steps - 2] as const;
const JOB_DEADLINE_MS = QUICK ? 60_000 : 300_000;
const TARGET_RATIO = 0.8;
const TARGET_EVENT_LOOP_MS = 20;
const TARGET_GC_SHARE = 0.05;
const PROBE = join(ROOT, 'tests', 'bench', 'coordinator-probe.mjs');
const probeDir = mkdtempSync(join(tmpdir(), 'gradfleet-probe-'));

/** Splits `n` peers over at most two client processes (this machine has two cores). */
const split = (n: number) => (n === 1 ? [1] : [Math.ceil(n / 2), Math.floor(n / 2)]);

interface ThreadSnap {
  threadId: number;
  main: boolean;
  ports: number[];
  t: number;
  threadCpuMs: number;
  processCpuMs: number;
  gcMs: number;
  gcCount: number;
  activeMs: number;
  bytesRead: number;
  bytesWritten: number;
  eventLoopMs?: { p50: number; p99: number; max: number; count: number };
}
interface SimMark {
  step: number;
  t: number;
  cpuMs: number;
  machineBusyMs: number;
  workerBytes: number[];
  shardBytes: Record<string, number>;
}
interface SimOut {
  steps: [number, number][];
  marks: SimMark[];
}

/** Median time between consecutive step completions (the latest process decides each step). */
function stepMs(outs: { steps: [number, number][] }[]): number {
  const done = new Map<number, number>();
  for (const { steps } of outs) for (const [s, t] of steps) done.set(s, Math.max(done.get(s) ?? 0, t));
  const ts = [...done.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
  return median(ts.slice(1).map((t, i) => t - ts[i]!));
}

const lastJson = <T>(out: string) => JSON.parse(out.trim().split('\n').at(-1)!) as T;

class Coordinator {
  readonly cluster = new TestCluster();
  pid = 0;
  /** Marks (SIGUSR2) sent to this coordinator so far. */
  marks = 0;

  constructor(readonly threads: number) {}

  async start(): Promise<this> {
    const child = await this.cluster.startCoordinator(
      [
        '--max-connections',
        '256',
        // Simulated workers on two shared cores can stall for seconds: the bench measures throughput, not liveness.
        '--heartbeat-timeout-ms',
        '300000',
        '--reducer-threads',
        String(this.threads),
      ],
      0,
      {
        NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --import ${PROBE}`.trim(),
        GRADFLEET_PROBE_DIR: probeDir,
      },
    );
    this.pid = child.pid!;
    reap(() => child.kill('SIGKILL'));
    return this;
  }

  /** The probe's snapshot of every thread at `mark` (waits for the shard threads to write theirs). */
  async snapshot(mark: number): Promise<ThreadSnap[]> {
    const prefix = `${this.pid}-${mark}-`;
    for (let tries = 0; ; tries++) {
      const files = readdirSync(probeDir).filter((f) => f.startsWith(prefix));
      try {
        const snaps = files.map((f) => JSON.parse(readFileSync(join(probeDir, f), 'utf8')) as ThreadSnap);
        const shards = snaps.filter((s) => !s.main && s.ports.length > 0).length;
        if (snaps.some((s) => s.main) && shards >= this.threads) return snaps;
      } catch {
        // a snapshot being written: read again
      }
      if (tries > 100) throw new Error(`the coordinator probe wrote no complete snapshot for mark ${mark}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Where a hung run stands: the job, the coordinator's threads' counters now, its log. */
  async diagnose(jobId: string | undefined, marked: Map<number, number>): Promise<string> {
    const lines: string[] = [`simulated-worker processes at each mark step: ${JSON.stringify([...marked])}`];
    if (jobId) {
      const job = await this.cluster.client.job(jobId);
      lines.push(`job ${jobId}: ${job.state}, progress ${JSON.stringify(job.progress)}`);
    }
    process.kill(this.pid, 'SIGUSR2');
    const snaps = await this.snapshot(++this.marks);
    for (const s of snaps)
      lines.push(
        `coordinator thread ${s.threadId}${s.main ? ' (main)' : ` (ports ${s.ports.join(',')})`}: cpu ${s.threadCpuMs} ms, socket bytes in ${s.bytesRead} out ${s.bytesWritten}`,
      );
    lines.push(`coordinator log (tail):\n${this.cluster.log.slice(-4000)}`);
    return lines.join('\n');
  }

  async stop(): Promise<void> {
    await this.cluster.stop();
  }
}

/** What one run of a job through a coordinator measured, over the marked window. */
interface CoordinatorRun {
  threads: number;
  n: number;
  params: number;
  stepMs: number;
  gbps: number;
  windowSteps: number;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  /**
   * The same measure in this (bench driver) process over the same window, which does
   * next to nothing meanwhile: the delay any Node process saw waiting for a core.
   */
  controlP99Ms: number;
  /**
   * GC pause time / event-loop active time of the data path's threads (the shards; the
   * main thread when K = 0): both wall-clock, so time descheduled by other processes
   * inflates both alike. `gcOverCpu` divides by the threads' CPU time instead: on a busy
   * machine an upper bound, since a pause's wall time includes time descheduled.
   */
  gcShare: number;
  gcOverCpu: number;
  gcPerStep: number;
  mainGcShare: number;
  /** Cores used over the window. */
  cores: { coordinator: number; main: number; shards: number[]; sims: number[]; others: number };
  /** Bytes per step in units of G, counted from socket counters. */
  perStepG: {
    main: number;
    shards: number[];
    busiestWorker: number;
    /** The same shard traffic counted at the workers' ends of the connections. */
    shardsAtWorkers: number[];
  };
}

async function coordinatorRun(c: Coordinator, n: number, params: number, steps: number): Promise<CoordinatorRun> {
  const [markA, markB] = markSteps(steps);
  const snaps = new Map<number, Promise<ThreadSnap[]>>();
  const marked = new Map<number, number>();
  const procs = split(n);
  const control = monitorEventLoopDelay({ resolution: 10 });
  control.enable();
  let controlP99Ms = NaN;
  // Once every simulated-worker process holds at a mark step, nothing is in flight: the
  // coordinator's probe snapshots its threads, then the workers go on.
  const onLine = (line: string) => {
    const m = /^mark (\d+)$/.exec(line);
    if (!m) return;
    const step = Number(m[1]);
    marked.set(step, (marked.get(step) ?? 0) + 1);
    if (marked.get(step) !== procs.length) return;
    process.kill(c.pid, 'SIGUSR2');
    if (step === markA) control.reset();
    else controlP99Ms = control.percentile(99) / 1e6;
    const snap = c.snapshot(++c.marks);
    snaps.set(step, snap);
    void snap.then(() => {
      for (const h of helpers) h.signal('SIGUSR2');
    });
  };
  const helpers = await Promise.all(
    procs.map((k) =>
      startHelper(
        'sim-workers.ts',
        [c.cluster.wsUrl, String(k), String(steps * n), '--mark-steps', `${markA},${markB}`],
        onLine,
      ),
    ),
  );
  for (const h of helpers) reap(h.kill);
  let jobId: string | undefined;
  try {
    const run = async () => {
      const job = await c.cluster.client.submit(simulatedJob(n, params));
      jobId = job.id;
      const done = await c.cluster.client.waitForJob(job.id, undefined, 1000);
      if (done.state !== 'SUCCEEDED') throw new Error(`bench job ${done.state}: ${done.reason}\n${c.cluster.log}`);
      return Promise.all(helpers.map((h) => h.done));
    };
    // A simulated worker that dies fails the run at once (its job would wait for it).
    const died = Promise.race(helpers.map((h) => h.done.then(() => new Promise<never>(() => undefined))));
    died.catch(() => undefined); // a helper killed after the run must not crash the bench
    const outs = (
      await withDeadline(
        `K=${c.threads} N=${n} job of ${steps} steps`,
        Promise.race([run(), died]),
        JOB_DEADLINE_MS,
        () => c.diagnose(jobId, marked),
      )
    ).map((o) => lastJson<SimOut>(o));
    const r = measure(c.threads, n, params, steps, outs, await snaps.get(markA)!, await snaps.get(markB)!);
    return { ...r, controlP99Ms };
  } finally {
    control.disable();
    for (const h of helpers) h.kill();
  }
}

function measure(
  threads: number,
  n: number,
  params: number,
  steps: number,
  outs: SimOut[],
  a: ThreadSnap[],
  b: ThreadSnap[],
): CoordinatorRun {
  const [markA, markB] = markSteps(steps);
  const windowSteps = markB - markA;
  const bytesG = params * 4;
  const byId = new Map(a.map((s) => [s.threadId, s]));
  const pairs = b.filter((s) => byId.has(s.threadId)).map((s) => ({ a: byId.get(s.threadId)!, b: s }));
  const main = pairs.find((p) => p.b.main)!;
  const shards = pairs.filter((p) => !p.b.main && p.b.ports.length > 0).sort((x, y) => x.b.ports[0]! - y.b.ports[0]!);
  const dt = main.b.t - main.a.t;
  const d = (p: { a: ThreadSnap; b: ThreadSnap }, f: (s: ThreadSnap) => number) => f(p.b) - f(p.a);
  const cpu = (p: (typeof pairs)[number]) => d(p, (s) => s.threadCpuMs);
  const gc = (p: (typeof pairs)[number]) => d(p, (s) => s.gcMs);
  const active = (p: (typeof pairs)[number]) => d(p, (s) => s.activeMs);
  const io = (p: (typeof pairs)[number]) => d(p, (s) => s.bytesRead + s.bytesWritten);
  const dataPath = threads === 0 ? [main] : shards;
  const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
  const marks = outs.map((o) => {
    const [ma, mb] = [o.marks.find((m) => m.step === markA)!, o.marks.find((m) => m.step === markB)!];
    return { ma, mb };
  });
  const sims = marks.map(({ ma, mb }) => (mb.cpuMs - ma.cpuMs) / (mb.t - ma.t));
  const coordinator = d(main, (s) => s.processCpuMs) / dt;
  const m0 = marks[0]!;
  const machine = (m0.mb.machineBusyMs - m0.ma.machineBusyMs) / (m0.mb.t - m0.ma.t);
  const workerBytes = marks.flatMap(({ ma, mb }) => mb.workerBytes.map((x, i) => x - ma.workerBytes[i]!));
  const ports = shards.map((p) => p.b.ports[0]!);
  const shardsAtWorkers = ports.map((port) =>
    sum(marks.map(({ ma, mb }) => (mb.shardBytes[port] ?? 0) - (ma.shardBytes[port] ?? 0))),
  );
  const step = stepMs(outs);
  return {
    threads,
    n,
    params,
    stepMs: step,
    gbps: (2 * n * bytesG) / step / 1e6,
    windowSteps,
    eventLoopP99Ms: main.b.eventLoopMs!.p99,
    eventLoopMaxMs: main.b.eventLoopMs!.max,
    controlP99Ms: NaN,
    gcShare: sum(dataPath.map(gc)) / Math.max(1, sum(dataPath.map(active))),
    gcOverCpu: sum(dataPath.map(gc)) / Math.max(1, sum(dataPath.map(cpu))),
    gcPerStep: sum(dataPath.map((p) => d(p, (s) => s.gcCount))) / windowSteps,
    mainGcShare: gc(main) / Math.max(1, active(main)),
    cores: {
      coordinator,
      main: cpu(main) / dt,
      shards: shards.map((p) => cpu(p) / dt),
      sims,
      others: Math.max(0, machine - coordinator - sum(sims)),
    },
    perStepG: {
      main: io(main) / windowSteps / bytesG,
      shards: shards.map((p) => io(p) / windowSteps / bytesG),
      busiestWorker: Math.max(...workerBytes) / windowSteps / bytesG,
      shardsAtWorkers: shardsAtWorkers.map((x) => x / windowSteps / bytesG),
    },
  };
}

interface TcpRun {
  stepMs: number;
  gbps: number;
  cores: { server: number; clients: number[] };
}

async function rawTcp(n: number, bytes: number, steps: number): Promise<TcpRun> {
  const server = await startHelper('tcp-peers.ts', ['server', String(n), String(bytes), String(steps)]);
  reap(server.kill);
  const clients = await Promise.all(
    split(n).map((k) => startHelper('tcp-peers.ts', ['client', server.line, String(k), String(bytes), String(steps)])),
  );
  for (const c of clients) reap(c.kill);
  try {
    const [outs, serverOut] = await withDeadline(
      `raw TCP N=${n}`,
      Promise.all([Promise.all(clients.map((c) => c.done)), server.done]),
      JOB_DEADLINE_MS,
    );
    type Cpu = { cpu: { ms: number; wallMs: number } };
    const cores = (o: Cpu) => o.cpu.ms / o.cpu.wallMs;
    const parsed = outs.map((o) => lastJson<{ steps: [number, number][] } & Cpu>(o));
    const step = stepMs(parsed);
    return {
      stepMs: step,
      gbps: (2 * n * bytes) / step / 1e6,
      cores: { server: cores(lastJson<Cpu>(serverOut)), clients: parsed.map(cores) },
    };
  } finally {
    server.kill();
    for (const c of clients) c.kill();
  }
}

const f2 = (x: number) => x.toFixed(2);
const range = (xs: number[], f = f2) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;

/** Which side ran out of CPU: a thread near a whole core, or the two shared cores full. */
function bound(threads: { name: string; cores: number }[], others: number): string {
  const busiest = threads.reduce((x, y) => (y.cores > x.cores ? y : x));
  const total = threads.reduce((s, t) => s + t.cores, 0) + others;
  if (busiest.cores >= 0.9) return `CPU-bound in ${busiest.name} (${f2(busiest.cores)} of a core)`;
  if (total >= 1.8) return `the 2 cores are full (${f2(total)} cores busy, ${f2(others)} of them other processes)`;
  return `no thread is CPU-bound (busiest: ${busiest.name} at ${f2(busiest.cores)} core; ${f2(total)} cores busy)`;
}

function coordinatorThreads(r: CoordinatorRun): { name: string; cores: number }[] {
  return [
    { name: 'the coordinator main thread', cores: r.cores.main },
    ...r.cores.shards.map((c, k) => ({ name: `shard thread ${k}`, cores: c })),
    ...r.cores.sims.map((c, i) => ({ name: `simulated-worker process ${i}`, cores: c })),
  ];
}

const load0 = loadavg();
const started = Date.now();
/** Starts one coordinator; a machine this busy may take past the test cluster's 30 s to start one: try thrice. */
async function startCoordinator(k: number): Promise<Coordinator> {
  for (let attempt = 1; ; attempt++) {
    const c = new Coordinator(k);
    try {
      return await c.start();
    } catch (err) {
      await c.stop();
      if (attempt === 3) throw err;
      console.error(`coordinator K=${k} did not start (attempt ${attempt}): trying again`);
    }
  }
}
const coordinators: Coordinator[] = [];
for (const k of THREADS) coordinators.push(await startCoordinator(k));
const runs = new Map<number, CoordinatorRun[]>(THREADS.map((k) => [k, []]));
const tcpRuns: TcpRun[] = [];
type Side = number | 'tcp';
const sides: Side[] = ['tcp', ...THREADS];
try {
  for (let rep = 0; rep < REPS; rep++) {
    const order = sides.map((_, i) => sides[(i + rep) % sides.length]!);
    for (const side of order) {
      if (side === 'tcp') {
        const r = await rawTcp(N, G * 4, STEPS);
        tcpRuns.push(r);
        console.error(`rep ${rep + 1}/${REPS} raw TCP: step ${r.stepMs.toFixed(1)} ms, ${f2(r.gbps)} GB/s`);
      } else {
        const r = await coordinatorRun(coordinators[side]!, N, G, STEPS);
        runs.get(side)!.push(r);
        console.error(
          `rep ${rep + 1}/${REPS} K=${side}: step ${r.stepMs.toFixed(1)} ms, ${f2(r.gbps)} GB/s, event loop p99 ${r.eventLoopP99Ms.toFixed(1)} ms (idle process ${r.controlP99Ms.toFixed(1)} ms), GC ${(r.gcShare * 100).toFixed(1)} %, cores ${JSON.stringify(r.cores, (_, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(2)) : v))}`,
        );
      }
    }
  }
  // Bytes through the busiest process per step at other sizes of the cluster (one run each).
  const bytesRuns: CoordinatorRun[] = [];
  if (!QUICK)
    for (const [n, params, steps] of [
      [4, MB10, 8],
      [64, MB1, 8],
    ] as const)
      for (const k of THREADS) {
        const r = await coordinatorRun(coordinators[k]!, n, params, steps);
        bytesRuns.push(r);
        console.error(`bytes N=${n} K=${k}: ${JSON.stringify(r.perStepG)}`);
      }

  const rows: Row[] = [];
  const notes: string[] = [];
  const tcpGbps = median(tcpRuns.map((r) => r.gbps));
  for (const k of THREADS) {
    const rs = runs.get(k)!;
    const ratios = rs.map((r, i) => r.gbps / tcpRuns[i]!.gbps);
    rows.push({
      case: `throughput N=${N} × ${G_LABEL}, ${k === 0 ? 'K=0 (old WebSocket path)' : `data plane K=${k}`} vs raw TCP`,
      value: median(rs.map((r) => r.gbps)),
      baseline: tcpGbps,
      unit: 'GB/s',
      ratio: median(ratios),
      ...(k > 0 ? { target: TARGET_RATIO } : {}),
      note: `(ratio ${range(ratios)}; ${range(rs.map((r) => r.gbps))} GB/s vs TCP ${range(tcpRuns.map((r) => r.gbps))})`,
    });
  }
  for (const k of THREADS) {
    const rs = runs.get(k)!;
    const p99 = rs.map((r) => r.eventLoopP99Ms);
    rows.push({
      case: `coordinator event-loop p99 during steps, K=${k} (baseline: the target)`,
      value: median(p99),
      baseline: TARGET_EVENT_LOOP_MS,
      unit: 'ms',
      ratio: median(p99) / TARGET_EVENT_LOOP_MS,
      lowerIsBetter: true,
      ...(k > 0 ? { target: 1 } : {}),
      note: `(${range(p99, (x) => x.toFixed(1))} ms; an idle process beside it: p99 ${median(rs.map((r) => r.controlP99Ms)).toFixed(1)} ms; max delay ${range(
        rs.map((r) => r.eventLoopMaxMs),
        (x) => x.toFixed(0),
      )} ms)`,
    });
  }
  for (const k of THREADS) {
    const rs = runs.get(k)!;
    const share = rs.map((r) => r.gcShare);
    rows.push({
      case: `GC share of the data path's busy time, K=${k} (${k === 0 ? 'main thread' : 'shard threads'}; baseline: the target)`,
      value: median(share),
      baseline: TARGET_GC_SHARE,
      unit: '',
      ratio: median(share) / TARGET_GC_SHARE,
      lowerIsBetter: true,
      ...(k > 0 ? { target: 1 } : {}),
      note: `(${range(share, (x) => x.toFixed(3))}; ${median(rs.map((r) => r.gcPerStep)).toFixed(1)} GCs per step; GC over CPU time ${median(rs.map((r) => r.gcOverCpu)).toFixed(3)}; main thread ${median(rs.map((r) => r.mainGcShare)).toFixed(3)})`,
    });
  }

  notes.push(
    `Medians of ${REPS} interleaved repetition(s) (order rotated per repetition), ${STEPS} steps each; throughput = 2·N·G per median step; event loop, GC, CPU and bytes over steps ${markSteps(STEPS).join('–')} (marks taken with no byte in flight; the two steps after a mark include the hold, the median step does not). Ratios in the throughput rows are per repetition against the raw-TCP run of the same repetition.`,
  );
  for (const k of THREADS) {
    const rs = runs.get(k)!;
    const mid = rs.find((r) => r.gbps === median(rs.map((x) => x.gbps)))!;
    notes.push(
      `CPU, K=${k} (median-throughput repetition): coordinator process ${f2(mid.cores.coordinator)} cores (main thread ${f2(mid.cores.main)}${mid.cores.shards.length ? `, shards ${mid.cores.shards.map(f2).join(' + ')}` : ''}), simulated workers ${mid.cores.sims.map(f2).join(' + ')}, other processes ${f2(mid.cores.others)}: ${bound(coordinatorThreads(mid), mid.cores.others)}.`,
    );
  }
  const tcpMid = tcpRuns.find((r) => r.gbps === tcpGbps)!;
  notes.push(
    `CPU, raw TCP: server ${f2(tcpMid.cores.server)} core, clients ${tcpMid.cores.clients.map(f2).join(' + ')}: ${bound(
      [
        { name: 'the TCP server', cores: tcpMid.cores.server },
        ...tcpMid.cores.clients.map((c, i) => ({ name: `client process ${i}`, cores: c })),
      ],
      0,
    )}.`,
  );

  // Bytes per step through each process, in units of G, counted from socket counters.
  const table = [
    ...THREADS.map((k) => {
      const rs = runs.get(k)!;
      return rs.find((r) => r.gbps === median(rs.map((x) => x.gbps)))!;
    }),
    ...bytesRuns,
  ].sort((x, y) => x.n - y.n || x.threads - y.threads);
  const g = (x: number) => x.toFixed(2);
  notes.push(
    [
      'Bytes per step in units of G (one gradient), counted from socket byte counters (bytes read + written) in the coordinator process per thread (probe) and at each simulated worker; coordinator process = main thread + every shard. Shards are threads of the coordinator: co-located shard processes (`gradfleet worker --reducer`) are not built yet, so the coordinator process still moves every byte when K ≥ 1; only its main thread is relieved.',
      '',
      '| N | G | K | coordinator main thread | busiest shard | coordinator process | busiest worker | shard bytes at the workers |',
      '|---|---|---|---|---|---|---|---|',
      ...table.map((r) => {
        const shardTotal = r.perStepG.shards.reduce((x, y) => x + y, 0);
        return `| ${r.n} | ${((r.params * 4) / 1e6).toFixed(1)} MB | ${r.threads} | ${r.perStepG.main.toFixed(3)} | ${r.perStepG.shards.length ? g(Math.max(...r.perStepG.shards)) : '–'} | ${g(r.perStepG.main + shardTotal)} | ${g(r.perStepG.busiestWorker)} | ${r.perStepG.shardsAtWorkers.map(g).join(' + ') || '–'} |`;
      }),
    ].join('\n'),
  );
  const load1 = loadavg();
  const others = median([...runs.values()].flat().map((r) => r.cores.others));
  notes.push(
    `Load: loadavg ${load0.map(f2).join(' / ')} before, ${load1.map(f2).join(' / ')} after (${Math.round((Date.now() - started) / 1000)} s); other processes used ${f2(others)} of the 2 cores during the measured windows (median)${others > 0.25 ? ': the machine was busy, so absolute figures are low; the ratios are side by side and stay meaningful' : ''}.`,
  );
  saveResult({
    name: 'data-plane',
    title: `Data plane: reducer shards vs the WebSocket path vs raw TCP (N=${N} × ${G_LABEL})`,
    baselineName: 'baseline (named in each case)',
    rows,
    notes,
    data: { tcp: tcpRuns, runs: Object.fromEntries(runs), bytes: table },
  });
} finally {
  await Promise.all(coordinators.map((c) => c.stop()));
}
