/**
 * A measuring probe the data-plane benchmark loads into the coordinator process
 * (`node --import`); Node also runs it in every worker thread the coordinator starts from
 * a file, i.e. in each reducer shard thread. It changes nothing in the coordinator: it
 * only counts, per thread,
 *
 *   - the thread's own CPU time (/proc/thread-self/stat, clock ticks of 10 ms) and the
 *     whole process's (/proc/self/stat),
 *   - GC pauses of the thread's isolate (PerformanceObserver 'gc' entries, wall-clock),
 *   - the time its event loop was active (performance.eventLoopUtilization, wall-clock:
 *     GC time over active time cancels out time the thread spent descheduled, which
 *     inflates both alike on a busy machine, where GC time over CPU time would not),
 *   - the bytes read and written on every socket a server of this thread accepted
 *     (`socket.bytesRead` / `socket.bytesWritten`, live and closed),
 *   - on the main thread, the event-loop delay (perf_hooks monitorEventLoopDelay, 10 ms
 *     resolution), reset at every mark.
 *
 * A mark is SIGUSR2 to the coordinator process: the main thread writes its snapshot and
 * tells every other thread over a BroadcastChannel to write theirs, each to
 * `$GRADFLEET_PROBE_DIR/<pid>-<mark>-<threadId>.json`. Plain JavaScript: the coordinator
 * runs its built dist with plain node. Does nothing unless GRADFLEET_PROBE_DIR is set.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';
import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads';

const dir = process.env['GRADFLEET_PROBE_DIR'];
/** Linux clock ticks per second (USER_HZ). */
const TICK_MS = 10;

/** utime + stime of a /proc stat file, in ms. */
function cpuMs(file) {
  const stat = readFileSync(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

if (dir) {
  let gcMs = 0;
  let gcCount = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcMs += e.duration;
      gcCount++;
    }
  }).observe({ entryTypes: ['gc'] });

  const live = new Set();
  let closedRead = 0;
  let closedWritten = 0;
  const ports = [];
  const emit = net.Server.prototype.emit;
  net.Server.prototype.emit = function (event, ...args) {
    if (event === 'connection') {
      const socket = args[0];
      live.add(socket);
      socket.once('close', () => {
        closedRead += socket.bytesRead;
        closedWritten += socket.bytesWritten;
        live.delete(socket);
      });
    } else if (event === 'listening') {
      const a = this.address();
      if (a && typeof a === 'object') ports.push(a.port);
    }
    return emit.call(this, event, ...args);
  };

  const eld = isMainThread ? monitorEventLoopDelay({ resolution: 10 }) : undefined;
  eld?.enable();

  const snapshot = (mark) => {
    let bytesRead = closedRead;
    let bytesWritten = closedWritten;
    for (const s of live) {
      bytesRead += s.bytesRead;
      bytesWritten += s.bytesWritten;
    }
    const out = {
      threadId,
      main: isMainThread,
      ports,
      t: performance.timeOrigin + performance.now(),
      threadCpuMs: cpuMs('/proc/thread-self/stat'),
      processCpuMs: cpuMs('/proc/self/stat'),
      gcMs,
      gcCount,
      activeMs: performance.eventLoopUtilization().active,
      bytesRead,
      bytesWritten,
      ...(eld
        ? {
            eventLoopMs: {
              p50: eld.percentile(50) / 1e6,
              p99: eld.percentile(99) / 1e6,
              max: eld.max / 1e6,
              count: eld.count,
            },
          }
        : {}),
    };
    eld?.reset();
    writeFileSync(`${dir}/${process.pid}-${mark}-${threadId}.json`, JSON.stringify(out));
  };

  const channel = new BroadcastChannel('gradfleet-bench-probe');
  channel.unref();
  if (isMainThread) {
    let mark = 0;
    process.on('SIGUSR2', () => {
      mark++;
      snapshot(mark);
      channel.postMessage(mark);
    });
  } else {
    channel.onmessage = (e) => snapshot(e.data);
  }
}
