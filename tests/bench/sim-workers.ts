/**
 * Light simulated workers for the coordinator benchmark: `count` real WebSocket
 * connections speaking the worker protocol, sending a fixed gradient (one shared buffer,
 * bucket by bucket, header as a first fragment) for every slice and reading every update.
 * Prints "ready" once all are registered, then one JSON line with each step's completion
 * time (when the last of this process's connections had the whole update).
 *
 *   sim-workers.ts <ws-url> <count> <train-count>
 */
import WebSocket from 'ws';
import { BucketPlan, PROTOCOL_VERSION, WORKER_WS_PATH, decodeCoordinatorMessage, encodeMessage, framePrefix } from '@gradfleet/core';

const [url, countArg, trainArg] = process.argv.slice(2);
const count = Number(countArg);
const trainCount = Number(trainArg);
const completions = new Map<number, number>();
let gradient: { plan: BucketPlan; values: Float32Array } | undefined;
let welcomed = 0;
let ended = 0;
const now = () => performance.timeOrigin + performance.now();

function connect(i: number): WebSocket {
  const ws = new WebSocket(`${url}${WORKER_WS_PATH}`, { perMessageDeflate: false, maxPayload: 0, generateMask: (m) => m.fill(0) });
  const send = (msg: Parameters<typeof encodeMessage>[0], payload?: ArrayBufferView) => ws.send(encodeMessage(msg, payload));
  let updateBuckets = 0;
  const beat = setInterval(() => send({ t: 'heartbeat' }), 2000);
  ws.on('open', () => send({ t: 'hello', v: PROTOCOL_VERSION, name: `sim-${process.pid}-${i}`, host: 'bench', pid: process.pid, backend: 'sim' }));
  ws.on('close', () => clearInterval(beat));
  ws.on('message', (data: Buffer) => {
    const { message: m, payload } = decodeCoordinatorMessage(data);
    switch (m.t) {
      case 'welcome':
        if (++welcomed === count) console.log('ready');
        return;
      case 'job-start': {
        const params = m.layout.reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
        if (!gradient) gradient = { plan: new BucketPlan(params, Number(m.spec['bucketBytes'] ?? 4 * 1024 * 1024)), values: new Float32Array(params).fill(0.001) };
        send({ t: 'ready', jobId: m.jobId, trainCount, testCount: 0 });
        return;
      }
      case 'train': {
        const { plan, values } = gradient!;
        const header = { t: 'gradient', jobId: m.jobId, step: m.step, samples: payload.byteLength / 4, lossSum: 0, correct: 0, computeMs: 0, applyMs: 0 };
        for (let b = 0; b < plan.count; b++) {
          const bytes = new Uint8Array(values.buffer, plan.start(b) * 4, plan.length(b) * 4);
          ws.send(framePrefix({ ...header, bucket: b }, bytes.byteLength), { fin: false });
          ws.send(bytes, { fin: true });
        }
        return;
      }
      case 'update':
        if (++updateBuckets === gradient!.plan.count) {
          updateBuckets = 0;
          completions.set(m.step, Math.max(completions.get(m.step) ?? 0, now()));
        }
        return;
      case 'fetch-weights':
        send({ t: 'weights', jobId: m.jobId, requestId: m.requestId, optimizer: [] }, gradient!.values);
        return;
      case 'evaluate':
        send({ t: 'eval-result', jobId: m.jobId, requestId: m.requestId, lossSum: 0, correct: 0, count: m.end - m.start });
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
  });
  return ws;
}

for (let i = 0; i < count; i++) connect(i);
