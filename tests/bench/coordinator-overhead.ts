/**
 * Coordinator step overhead: N simulated workers (light client processes sending real
 * frames, tests/bench/sim-workers.ts) push a gradient of S bytes each through a real
 * coordinator process and read the averaged update back, step after step; bytes moved per
 * second (N x S in + N x S out per step) against raw TCP over loopback moving the same
 * bytes in the same pattern (tests/bench/tcp-peers.ts). Median step after the first.
 */
import { TestCluster } from '../helpers/cluster.js';
import { QUICK, median, saveResult, startHelper, type Row } from './bench-lib.js';
import { simulatedJob } from './dense-topology.js';

const sizes: [string, number, number][] = QUICK
  ? [['0.4 MB', 784 * 128, 6]]
  : [
      ['0.4 MB', 784 * 128, 20],
      ['10 MB', 784 * 3189, 8],
      ['100 MB', 784 * 31_888, 3],
    ];
const counts = QUICK ? [1, 4] : [1, 4, 16, 64];
/** `--case N:label` (repeatable) runs only those cases, e.g. --case "16:10 MB". */
const only = process.argv.flatMap((a, i) => (a === '--case' ? [process.argv[i + 1]!] : []));
const bucketArg = process.argv.indexOf('--bucket-bytes');
const bucketArgBytes = bucketArg > 0 ? Number(process.argv[bucketArg + 1]) : undefined;

/** Splits `n` peers over at most two client processes (this machine has two cores). */
const split = (n: number) => (n === 1 ? [1] : [Math.ceil(n / 2), Math.floor(n / 2)]);

/** Median time between consecutive step completions (the latest process decides each step). */
function stepMs(outputs: string[]): number {
  const done = new Map<number, number>();
  for (const out of outputs) {
    const { steps } = JSON.parse(out.trim().split('\n').at(-1)!) as { steps: [number, number][] };
    for (const [s, t] of steps) done.set(s, Math.max(done.get(s) ?? 0, t));
  }
  const ts = [...done.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
  return median(ts.slice(1).map((t, i) => t - ts[i]!));
}

async function throughCoordinator(
  cluster: TestCluster,
  n: number,
  params: number,
  steps: number,
  bucketBytes = bucketArgBytes,
): Promise<number> {
  const helpers = await Promise.all(
    split(n).map((k) => startHelper('sim-workers.ts', [cluster.wsUrl, String(k), String(steps * n)])),
  );
  const job = await cluster.client.submit(simulatedJob(n, params, bucketBytes ? { bucketBytes } : {}));
  const done = await cluster.client.waitForJob(job.id);
  if (done.state !== 'SUCCEEDED') throw new Error(`bench job ${done.state}: ${done.reason}\n${cluster.log}`);
  return stepMs(await Promise.all(helpers.map((h) => h.done)));
}

async function rawTcp(n: number, bytes: number, steps: number): Promise<number> {
  const server = await startHelper('tcp-peers.ts', ['server', String(n), String(bytes), String(steps)]);
  const clients = await Promise.all(
    split(n).map((k) => startHelper('tcp-peers.ts', ['client', server.line, String(k), String(bytes), String(steps)])),
  );
  const outs = await Promise.all(clients.map((c) => c.done));
  await server.done;
  return stepMs(outs);
}

const cluster = new TestCluster();
const rows: Row[] = [];
const notes = [
  'Both sides run on the same two cores: the coordinator (or TCP server) process plus up to two client processes hosting the N peers.',
];
try {
  // Simulated workers on two shared cores can stall for seconds under 100 MB steps: a long
  // heartbeat timeout keeps them in the job (the bench measures throughput, not liveness).
  // Simulated peers send gradients on the control connection: the main-thread reducer.
  await cluster.startCoordinator([
    '--max-connections',
    '256',
    '--heartbeat-timeout-ms',
    '300000',
    '--reducer-threads',
    '0',
  ]);
  for (const [label, params, steps] of sizes) {
    for (const n of counts) {
      if (only.length > 0 && !only.includes(`${n}:${label}`)) continue;
      const bytes = params * 4;
      const moved = 2 * n * bytes;
      const tCoord = await throughCoordinator(cluster, n, params, steps);
      const tTcp = await rawTcp(n, bytes, steps);
      const gbps = (ms: number) => moved / ms / 1e6;
      const target = label === '10 MB' && n === 16 ? 0.7 : undefined;
      rows.push({
        case: `N=${n}, ${label}`,
        value: gbps(tCoord),
        baseline: gbps(tTcp),
        unit: 'GB/s',
        ratio: tTcp / tCoord,
        ...(target ? { target } : {}),
      });
      console.error(
        `coordinator N=${n} ${label}: step ${tCoord.toFixed(1)} ms (${gbps(tCoord).toFixed(2)} GB/s), raw TCP ${tTcp.toFixed(1)} ms (${gbps(tTcp).toFixed(2)} GB/s)`,
      );
    }
  }
  // Bucket size sweep behind the 4 MiB default (N=16, 10 MB gradients), each against a raw TCP run beside it.
  if (!QUICK && only.length === 0) {
    const params = 784 * 3189;
    for (const mib of [0.25, 1, 4, 16]) {
      const tCoord = await throughCoordinator(cluster, 16, params, 8, mib * 1024 * 1024);
      const tTcp = await rawTcp(16, params * 4, 8);
      const moved = 2 * 16 * params * 4;
      rows.push({
        case: `bucket ${mib} MiB (N=16, 10 MB)`,
        value: moved / tCoord / 1e6,
        baseline: moved / tTcp / 1e6,
        unit: 'GB/s',
        ratio: tTcp / tCoord,
      });
    }
  }
  const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
  const lag = (q: string) =>
    Number(new RegExp(`^nodejs_eventloop_lag_${q}_seconds (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) * 1000;
  notes.push(
    `Coordinator event-loop delay over the whole run: p50 ${lag('p50').toFixed(1)} ms, p99 ${lag('p99').toFixed(1)} ms (max ${lag('max').toFixed(0)} ms: whole-model messages, e.g. the 100 MB weights a replica returns at job end, arrive as one WebSocket message).`,
  );
} finally {
  await cluster.stop();
}

saveResult({
  name: 'coordinator-overhead',
  title: 'Coordinator step overhead: bytes moved per second through the coordinator',
  baselineName: 'raw TCP (loopback)',
  rows,
  notes,
});
