/**
 * Light simulated workers for the coordinator benchmark: `count` real WebSocket
 * connections (tests/bench/light-ws.ts) speaking the worker protocol, sending a fixed
 * gradient bucket by bucket for every slice and reading every update. Like real workers
 * they send each bucket as one frame; all connections of a process share the frames of a
 * step (their headers are identical: every slice is one example), two sets alternating by
 * step parity. Prints "ready" once all are registered, then one JSON line with each step's
 * completion time (when the last of this process's connections had the whole update).
 *
 *   sim-workers.ts <ws-url> <count> <train-count>
 */
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
import { LightWebSocket } from './light-ws.js';

const [url, countArg, trainArg] = process.argv.slice(2);
const count = Number(countArg);
const trainCount = Number(trainArg);
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const completions = new Map<number, number>();
let gradient:
  { plan: BucketPlan; values: Float32Array; frames: FrameWriter[][]; headed: number[]; ready: Buffer[][] } | undefined;
let welcomed = 0;
let ended = 0;
const now = () => performance.timeOrigin + performance.now();

type Header = {
  t: string;
  pb: number;
  jobId: string;
  step: number;
  requestId: number;
  start: number;
  end: number;
  layout: number[][];
  spec: Record<string, unknown>;
};

function connect(i: number): void {
  const ws = new LightWebSocket(`${url}${WORKER_WS_PATH}`);
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
  ws.onmessage = ({ head }) => {
    const m = unpackr.unpack(head.subarray(4, 4 + head.readUInt32LE(0))) as Header;
    switch (m.t) {
      case 'welcome':
        if (++welcomed === count) console.log('ready');
        return;
      case 'job-start': {
        const params = m.layout.reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
        if (!gradient) {
          const plan = new BucketPlan(params, Number(m.spec['bucketBytes'] ?? 4 * 1024 * 1024));
          const frames = [0, 1].map(() =>
            Array.from({ length: plan.count }, (_, b) => {
              const w = new FrameWriter(plan.length(b) * 4);
              w.float32().fill(0.001);
              return w;
            }),
          );
          gradient = { plan, values: new Float32Array(params).fill(0.001), frames, headed: [-1, -1], ready: [[], []] };
        }
        send({ t: 'ready', jobId: m.jobId, trainCount, testCount: 0 });
        return;
      }
      case 'train': {
        const g = gradient!;
        if (m.pb !== 4) throw new Error('the benchmark gives every simulated worker one example per step');
        const parity = m.step % 2;
        if (g.headed[parity] !== m.step) {
          const header = {
            t: 'gradient',
            jobId: m.jobId,
            step: m.step,
            samples: 1,
            lossSum: 0,
            correct: 0,
            computeMs: 0,
            applyMs: 0,
          };
          g.ready[parity] = g.frames[parity]!.map((w, b) => w.frame({ ...header, bucket: b }));
          g.headed[parity] = m.step;
        }
        for (const f of g.ready[parity]!) ws.send(f);
        return;
      }
      case 'update':
        if (++updateBuckets === gradient!.plan.count) {
          updateBuckets = 0;
          completions.set(m.step, Math.max(completions.get(m.step) ?? 0, now()));
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
        if (++ended === count) {
          console.log(JSON.stringify({ steps: [...completions.entries()].sort((a, b) => a[0] - b[0]) }));
          process.exit(0);
        }
        return;
      default:
        return;
    }
  };
}

for (let i = 0; i < count; i++) connect(i);
