/**
 * Light simulated workers for the coordinator benchmarks: `count` real WebSocket
 * connections (tests/bench/light-ws.ts) speaking the worker protocol, sending a fixed
 * gradient bucket by bucket for every slice and reading every update. Like real workers
 * they send each bucket as one frame; all connections of a process share the frames of a
 * step (their headers are identical: every slice is one example), two sets alternating by
 * step parity. When `job-start` names reducer shards (a coordinator with
 * `--reducer-threads K`), each simulated worker opens its data connections
 * (tests/bench/sim-data-plane.ts), sends `gradient-sent` on the WebSocket and its buckets
 * as data frames, and reads the averaged buckets back from the shards.
 *
 * Prints "ready" once all are registered, then one JSON line: each step's completion time
 * (when the last of this process's connections had the whole update) and, for every step
 * in `--mark-steps`, a mark taken when this process completed it: the time, this process's
 * CPU time, the machine's busy CPU time (/proc/stat), and each simulated worker's socket
 * byte counters (WebSocket plus data connections, and per shard port). At a mark step s
 * the process prints "mark s" and holds every `train` for step s + 1 until it gets
 * SIGUSR2: once every process has printed its mark, no gradient or update byte is in
 * flight anywhere, so counters read then (here and in the coordinator) are exact.
 *
 *   sim-workers.ts <ws-url> <count> <train-count> [--mark-steps a,b]
 */
import { readFileSync } from 'node:fs';
import { Unpackr } from 'msgpackr';
import {
  BucketPlan,
  FrameWriter,
  PROTOCOL_VERSION,
  WORKER_WS_PATH,
  chunkCount,
  encodeMessage,
  stateChunkBytes,
} from '@gradfleet/core';
import { DATA_FRAME_TYPES, DataFrameWriter } from '@gradfleet/core/dataplane';
import { LightWebSocket } from './light-ws.js';
import { SimDataPlane, type SimShard } from './sim-data-plane.js';

const [url, countArg, trainArg] = process.argv.slice(2);
const flag = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const count = Number(countArg);
const trainCount = Number(trainArg);
const markSteps = new Set((flag('--mark-steps') ?? '').split(',').filter(Boolean).map(Number));
/** Mark steps whose next step may go on (SIGUSR2), and the trains held meanwhile. */
const released = new Set<number>();
let held: (() => void)[] = [];
process.on('SIGUSR2', () => {
  for (const s of markSteps) if (marks.some((m) => m.step === s)) released.add(s);
  const go = held;
  held = [];
  for (const f of go) f();
});
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const completions = new Map<number, number>();
/** Simulated workers of this process that have the whole update of each step. */
const completedBy = new Map<number, number>();
let gradient:
  | {
      plan: BucketPlan;
      values: Float32Array;
      frames: FrameWriter[][];
      dataFrames: DataFrameWriter[][];
      headed: number[];
      ready: Buffer[][];
    }
  | undefined;
let welcomed = 0;
let ended = 0;
const now = () => performance.timeOrigin + performance.now();

interface Sim {
  ws: LightWebSocket;
  dp?: SimDataPlane;
  /** Data plane: steps whose whole update this worker holds, and a train waiting for the next. */
  applied: number;
  waiting?: Header;
}
const sims: Sim[] = [];
const marks: {
  step: number;
  t: number;
  cpuMs: number;
  machineBusyMs: number;
  workerBytes: number[];
  shardBytes: Record<number, number>;
}[] = [];

/** CPU time the whole machine spent busy (not idle or waiting for I/O), from /proc/stat, in ms. */
function machineBusyMs(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - cpu[3]! - cpu[4]!) * 10; // USER_HZ = 100
}

function mark(step: number): void {
  const cpu = process.cpuUsage();
  const shardBytes: Record<number, number> = {};
  for (const s of sims)
    s.dp?.bytes().forEach((b, k) => (shardBytes[s.dp!.shards[k]!.port] = (shardBytes[s.dp!.shards[k]!.port] ?? 0) + b));
  marks.push({
    step,
    t: now(),
    cpuMs: (cpu.user + cpu.system) / 1000,
    machineBusyMs: machineBusyMs(),
    workerBytes: sims.map((s) => s.ws.bytes() + (s.dp?.bytes().reduce((a, b) => a + b, 0) ?? 0)),
    shardBytes,
  });
}

function completed(step: number): void {
  completions.set(step, Math.max(completions.get(step) ?? 0, now()));
  const n = (completedBy.get(step) ?? 0) + 1;
  completedBy.set(step, n);
  if (n === count && markSteps.has(step)) {
    mark(step);
    console.log(`mark ${step}`);
  }
}

type Header = {
  t: string;
  pb: number;
  jobId: string;
  workerId: string;
  step: number;
  round?: number;
  requestId: number;
  start: number;
  end: number;
  layout: number[][];
  spec: Record<string, unknown>;
  dataPlane?: { step: number; shards: SimShard[] };
};

function connect(i: number): void {
  const ws = new LightWebSocket(`${url}${WORKER_WS_PATH}`);
  const sim: Sim = { ws, applied: 0 };
  sims.push(sim);
  let workerId = '';
  const send = (msg: Parameters<typeof encodeMessage>[0], payload?: ArrayBufferView) =>
    ws.send(encodeMessage(msg, payload));
  let updateBuckets = 0;
  const beat = setInterval(() => send({ t: 'heartbeat' }), 2000);
  ws.onopen = () =>
    send({
      t: 'hello',
      v: PROTOCOL_VERSION,
      name: `sim-${process.pid}-${i}`,
      host: 'bench',
      pid: process.pid,
      backend: 'sim',
    });
  ws.onclose = () => clearInterval(beat);
  const train = (m: Header) => {
    // Like a real worker, a data-plane replica computes step s only once it holds the
    // updates of the s steps before it (they may still be on its data connections).
    if (sim.dp && sim.applied < m.step) return void (sim.waiting = m);
    const g = gradient!;
    if (m.pb !== 4) throw new Error('the benchmark gives every simulated worker one example per step');
    const parity = m.step % 2;
    const dp = sim.dp;
    const stats = { jobId: m.jobId, step: m.step, samples: 1, lossSum: 0, correct: 0, computeMs: 0, applyMs: 0 };
    const key = dp ? m.round! : m.step; // a retried step is a new round: new headers
    if (g.headed[parity] !== key) {
      g.ready[parity] = dp
        ? g.dataFrames[parity]!.map((w, b) =>
            w.frame({
              type: DATA_FRAME_TYPES.GRADIENT,
              flags: 0,
              round: m.round!,
              step: m.step,
              bucket: b,
              samples: 1,
            }),
          )
        : g.frames[parity]!.map((w, b) => w.frame({ t: 'gradient', ...stats, bucket: b }));
      g.headed[parity] = key;
    }
    if (dp) {
      if (m.round === undefined) throw new Error('a data-plane train message without a round');
      send({ t: 'gradient-sent', round: m.round, ...stats });
      g.ready[parity]!.forEach((f, b) => dp.send(b, f));
    } else for (const f of g.ready[parity]!) ws.send(f);
  };
  ws.onmessage = ({ head }) => {
    const m = unpackr.unpack(head.subarray(4, 4 + head.readUInt32LE(0))) as Header;
    switch (m.t) {
      case 'welcome':
        workerId = m.workerId;
        if (++welcomed === count) console.log('ready');
        return;
      case 'job-start': {
        const params = m.layout.reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
        if (!gradient) {
          const plan = new BucketPlan(params, Number(m.spec['bucketBytes'] ?? 4 * 1024 * 1024));
          const frame = (n: number) => {
            const w = new FrameWriter(n);
            w.float32().fill(0.001);
            return w;
          };
          const dataFrame = (n: number) => {
            const w = new DataFrameWriter(n);
            new Float32Array(w.payload.buffer, w.payload.byteOffset, n / 4).fill(0.001);
            return w;
          };
          const byBucket = <W>(make: (n: number) => W) =>
            [0, 1].map(() => Array.from({ length: plan.count }, (_, b) => make(plan.length(b) * 4)));
          const dataPlane = m.dataPlane !== undefined;
          gradient = {
            plan,
            values: new Float32Array(params).fill(0.001),
            frames: dataPlane ? [] : byBucket(frame),
            dataFrames: dataPlane ? byBucket(dataFrame) : [],
            headed: [-1, -1],
            ready: [[], []],
          };
        }
        const ready = () => send({ t: 'ready', jobId: m.jobId, trainCount, testCount: 0 });
        if (!m.dataPlane) return ready();
        const plan = gradient.plan;
        if (m.spec['compression'] !== undefined && m.spec['compression'] !== 'none')
          throw new Error('the simulated workers send uncompressed gradients only');
        void SimDataPlane.open(
          new URL(url!).hostname,
          { jobId: m.jobId, workerId },
          m.dataPlane.shards,
          plan.count,
          (b) => plan.length(b) * 4,
          (_round, step) => {
            completed(step);
            sim.applied = step + 1;
            const next = sim.waiting;
            if (next && next.step <= sim.applied) {
              sim.waiting = undefined;
              train(next);
            }
          },
        ).then((dp) => {
          sim.dp = dp;
          sim.applied = m.dataPlane!.step;
          ready();
        });
        return;
      }
      case 'train': {
        if (markSteps.has(m.step - 1) && !released.has(m.step - 1)) return void held.push(() => train(m));
        return train(m);
      }
      case 'update':
        if (++updateBuckets === gradient!.plan.count) {
          updateBuckets = 0;
          completed(m.step);
        }
        return;
      case 'fetch-weights': {
        // Whole-model state goes in chunks of a bucket (docs/protocol.md, "Whole-model state transfers").
        const g = gradient!;
        const chunkBytes = stateChunkBytes(g.plan.bucketFloats * 4);
        const state = { transfer: m.requestId, bytes: g.values.byteLength, chunkBytes };
        send({ t: 'weights', jobId: m.jobId, requestId: m.requestId, optimizer: [], state });
        const bytes = new Uint8Array(g.values.buffer);
        for (let i = 0; i < chunkCount(state.bytes, chunkBytes); i++)
          send(
            { t: 'state-chunk', transfer: state.transfer, index: i },
            bytes.subarray(i * chunkBytes, (i + 1) * chunkBytes),
          );
        return;
      }
      case 'evaluate':
        send({
          t: 'eval-result',
          jobId: m.jobId,
          requestId: m.requestId,
          lossSum: 0,
          correct: 0,
          count: m.end - m.start,
        });
        return;
      case 'job-end':
        sim.dp?.close();
        if (++ended === count) {
          console.log(JSON.stringify({ steps: [...completions.entries()].sort((a, b) => a[0] - b[0]), marks }));
          process.exit(0);
        }
        return;
      default:
        return;
    }
  };
}

for (let i = 0; i < count; i++) connect(i);
