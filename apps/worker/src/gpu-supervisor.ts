import { spawn, type ChildProcess } from 'node:child_process';
import { ALLOCATOR_ENV, type Logger } from '@gradfleet/core';
import { EXIT_CODES, FATAL_EXIT_REASONS } from './exit-codes.js';
import type { GpuInfo } from './nvidia-smi.js';

export interface GpuSupervisorOptions {
  gpus: GpuInfo[];
  /** The worker entry script and its arguments (without `--gpus`, `--name`, `--metrics-port`). */
  entry: string;
  args: string[];
  /** Base worker name; each process is `<name>-gpu<index>`. */
  name: string;
  /** First metrics port; the k-th process serves on `metricsPort + k` (0: any free port). */
  metricsPort?: number | undefined;
  /** Extra environment for every worker (e.g. the token, kept off the command line). */
  env?: NodeJS.ProcessEnv;
  logger: Logger;
  /** First restart delay after a crash, in ms; doubles per crash up to `maxRestartDelayMs`. @defaultValue 1000 */
  restartDelayMs?: number;
  /** @defaultValue 30000 */
  maxRestartDelayMs?: number;
  /** A worker that ran this long before crashing restarts after `restartDelayMs` again, in ms. @defaultValue 60000 */
  stableAfterMs?: number;
  /** Grace period after SIGTERM before SIGKILL, in ms. @defaultValue 15000 */
  stopTimeoutMs?: number;
}

interface Slot {
  gpu: GpuInfo;
  ordinal: number;
  child?: ChildProcess | undefined;
  startedAt: number;
  delayMs: number;
  restarts: number;
  timer?: NodeJS.Timeout | undefined;
  /** The exit code that ended this slot for good (`FATAL_EXIT_REASONS`). */
  fatal: number | undefined;
}

/**
 * `gradfleet worker --gpus`: one worker process per GPU, each pinned to its device with
 * CUDA_VISIBLE_DEVICES (and TF_FORCE_GPU_ALLOW_GROWTH so processes sharing a machine do
 * not each grab all memory); a crashed one restarts with exponential backoff; SIGTERM
 * stops them all (each drains gracefully) before the supervisor exits.
 */
export class GpuSupervisor {
  private readonly slots: Slot[];
  private stopping = false;
  private resolveDone!: (code: number) => void;
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  constructor(private readonly o: GpuSupervisorOptions) {
    this.slots = o.gpus.map((gpu, ordinal) => ({
      gpu,
      ordinal,
      startedAt: 0,
      delayMs: o.restartDelayMs ?? 1000,
      restarts: 0,
      fatal: undefined,
    }));
  }

  /** Worker pids by GPU index (for status and tests). */
  pids(): Record<number, number | undefined> {
    return Object.fromEntries(this.slots.map((s) => [s.gpu.index, s.child?.pid]));
  }

  start(): void {
    for (const s of this.slots) this.launch(s);
  }

  private launch(s: Slot): void {
    const { gpu } = s;
    const port =
      this.o.metricsPort === undefined
        ? []
        : ['--metrics-port', String(this.o.metricsPort === 0 ? 0 : this.o.metricsPort + s.ordinal)];
    const child = spawn(
      process.execPath,
      [this.o.entry, ...this.o.args, '--name', `${this.o.name}-gpu${gpu.index}`, ...port],
      {
        stdio: 'inherit',
        env: {
          ...ALLOCATOR_ENV,
          ...process.env,
          ...this.o.env,
          CUDA_VISIBLE_DEVICES: String(gpu.index),
          TF_FORCE_GPU_ALLOW_GROWTH: 'true',
          GRADFLEET_GPU_INDEX: String(gpu.index),
        },
      },
    );
    s.child = child;
    s.startedAt = Date.now();
    this.o.logger.info(
      { gpu: gpu.index, uuid: gpu.uuid, model: gpu.name, pid: child.pid, restarts: s.restarts },
      `worker for GPU ${gpu.index} started`,
    );
    child.once('exit', (code, signal) => this.exited(s, child, code, signal));
  }

  private exited(s: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (s.child !== child) return;
    s.child = undefined;
    if (this.stopping) return this.checkAllStopped();
    const fatal = code === null ? undefined : FATAL_EXIT_REASONS.get(code);
    if (fatal !== undefined) {
      s.fatal = code!;
      this.o.logger.error(
        { gpu: s.gpu.index, code },
        `worker for GPU ${s.gpu.index} ${fatal} (exit ${code}); not restarting it: a restart cannot fix this (its error is logged above)`,
      );
      if (this.slots.every((x) => x.fatal !== undefined)) {
        const codes = new Set(this.slots.map((x) => x.fatal));
        const exit = codes.size === 1 ? code! : EXIT_CODES.REFUSED;
        this.o.logger.error({ code: exit }, `no GPU worker left to run: every one ${fatal}; exiting with code ${exit}`);
        this.finish(exit);
      }
      return;
    }
    const ranMs = Date.now() - s.startedAt;
    if (ranMs >= (this.o.stableAfterMs ?? 60_000)) s.delayMs = this.o.restartDelayMs ?? 1000;
    this.o.logger.warn(
      { gpu: s.gpu.index, code, signal, ranMs, restartInMs: s.delayMs },
      `worker for GPU ${s.gpu.index} exited; restarting`,
    );
    s.timer = setTimeout(() => {
      s.timer = undefined;
      s.restarts++;
      if (!this.stopping) this.launch(s);
    }, s.delayMs);
    s.delayMs = Math.min(s.delayMs * 2, this.o.maxRestartDelayMs ?? 30_000);
  }

  /** SIGTERM to every worker (they finish their step and leave), SIGKILL after the grace period. */
  stop(): Promise<number> {
    if (this.stopping) return this.done;
    this.stopping = true;
    this.o.logger.info('stopping all GPU workers');
    for (const s of this.slots) {
      clearTimeout(s.timer);
      s.child?.kill('SIGTERM');
    }
    setTimeout(() => {
      for (const s of this.slots) s.child?.kill('SIGKILL');
    }, this.o.stopTimeoutMs ?? 15_000).unref();
    this.checkAllStopped();
    return this.done;
  }

  private checkAllStopped(): void {
    if (this.slots.every((s) => !s.child)) this.finish(0);
  }

  private finish(code: number): void {
    this.resolveDone(code);
  }
}
