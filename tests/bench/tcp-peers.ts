/**
 * The raw-TCP baseline of the coordinator benchmark: the same bytes per step over plain
 * loopback sockets, with no framing, no protocol and no arithmetic.
 *
 *   tcp-peers.ts server <peers> <bytes> <steps>   prints its port, then serves: each step,
 *       once `bytes` have arrived from every peer, writes `bytes` back to each
 *   tcp-peers.ts client <port> <count> <bytes> <steps>   prints "ready", then runs `count`
 *       peers and prints one JSON line with each step's completion time
 *
 * Both print (the server on exit) the CPU time the process used from the end of step 1
 * to the last step (`cpu: { ms, wallMs }`), for telling which side was CPU-bound.
 */
import { createConnection, createServer, type Socket } from 'node:net';

const [role, ...args] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const cpuNow = () => {
  const u = process.cpuUsage();
  return { ms: (u.user + u.system) / 1000, t: now() };
};
const cpuSince = (a: { ms: number; t: number }) => {
  const b = cpuNow();
  return { ms: b.ms - a.ms, wallMs: b.t - a.t };
};

if (role === 'server') {
  const [peers, bytes, steps] = args.map(Number) as [number, number, number];
  const payload = Buffer.alloc(bytes, 1);
  const sockets: Socket[] = [];
  const got = new Map<Socket, number>();
  let full = 0;
  let step = 0;
  let cpu0 = cpuNow();
  const server = createServer((s) => {
    s.setNoDelay(true);
    sockets.push(s);
    got.set(s, 0);
    s.on('data', (d) => {
      const n = got.get(s)! + d.length;
      got.set(s, n);
      if (n === bytes && ++full === peers) {
        full = 0;
        for (const p of sockets) got.set(p, 0);
        for (const p of sockets) p.write(payload);
        if (++step === 1) cpu0 = cpuNow();
        if (step === steps) {
          console.log(JSON.stringify({ cpu: cpuSince(cpu0) }));
          server.close();
        }
      }
    });
    s.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1', () => console.log(String((server.address() as { port: number }).port)));
  server.on('close', () => setTimeout(() => process.exit(0), 200));
} else {
  const [port, count, bytes, steps] = args.map(Number) as [number, number, number, number];
  const payload = Buffer.alloc(bytes, 2);
  const completions: number[] = [];
  let connected = 0;
  let finished = 0;
  const completedBy: number[] = [];
  let cpu0 = cpuNow();
  const starts: (() => void)[] = [];
  for (let i = 0; i < count; i++) {
    const s = createConnection({ port, host: '127.0.0.1' }, () => {
      s.setNoDelay(true);
      if (++connected === count) {
        console.log('ready');
        for (const start of starts) start();
      }
    });
    let got = 0;
    let step = 0;
    const start = () => s.write(payload);
    starts.push(start);
    s.on('data', (d) => {
      got += d.length;
      if (got < bytes) return;
      got = 0;
      completions[step] = Math.max(completions[step] ?? 0, now());
      completedBy[step] = (completedBy[step] ?? 0) + 1;
      if (step === 1 && completedBy[step] === count) cpu0 = cpuNow();
      if (++step < steps) start();
      else if (++finished === count) {
        console.log(JSON.stringify({ steps: completions.map((t, k) => [k, t]), cpu: cpuSince(cpu0) }));
        process.exit(0);
      }
    });
  }
}
