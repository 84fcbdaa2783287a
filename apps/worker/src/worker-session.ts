import { hostname } from 'node:os';
import WebSocket from 'ws';
import {
  ArrayStateSource,
  CLOSE_CODES,
  DEFAULT_MAX_MESSAGE_BYTES,
  MAX_STATE_BYTES,
  MemoryStateSink,
  PROTOCOL_VERSION,
  ProtocolError,
  WORKER_WS_PATH,
  decodeCoordinatorMessage,
  encodeMessage,
  parseJobSpec,
  sendStateChunks,
  stateChunkBytes,
  StateReceiver,
  stateValues,
  uint32View,
  type BackendSelection,
  type CoordinatorMessage,
  type Logger,
  type WorkerMessageInput,
  UpdateStreamHash,
  bucketDigest,
} from '@gradfleet/core';
import * as tf from '@tensorflow/tfjs-core';
import { DATA_FLAG_CHECKSUM, type DataFrameHeader } from '@gradfleet/core/dataplane';
import { DataPlaneClient } from './data-plane-client.js';
import { EXIT_CODES } from './exit-codes.js';
import { GradientWire } from './gradient-wire.js';
import { DataCache } from './remote-data.js';
import { JobEndedError, Replica } from './replica.js';
import { TestFaults, testLateStatsMs, testSlowdown } from './test-faults.js';
import type { WorkerMetrics } from './worker-metrics.js';

export interface WorkerSessionOptions {
  /** Coordinator URL, `ws://host:port` (the worker path is appended). */
  coordinator: string;
  name?: string;
  backend: BackendSelection;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Worker token presented at the handshake and to fetch dataset shards. */
  token?: string | undefined;
  /** CA certificate (PEM) to verify a wss:// coordinator against. */
  ca?: Buffer | undefined;
  /** First reconnect delay, in ms; doubles up to `maxReconnectDelayMs`, with jitter. @defaultValue 250 */
  reconnectDelayMs?: number;
  /** @defaultValue 10000 */
  maxReconnectDelayMs?: number;
  /** Largest message accepted from the coordinator, in bytes (closes with 1009). @defaultValue DEFAULT_WORKER_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
  /** Largest whole-model state (weights + optimizer state) accepted from the coordinator, in bytes. @defaultValue MAX_STATE_BYTES */
  maxStateBytes?: number;
  /** Bytes of decoded dataset chunks kept (`--cache-bytes`); a batch's chunks are kept even past it. @defaultValue DEFAULT_CACHE_BYTES */
  cacheBytes?: number | undefined;
}

/**
 * Largest coordinator message a worker accepts by default, in bytes: the coordinator's
 * limit. Whole-model state arrives in chunks of a bucket (`state-chunk`), so no message
 * grows with the model; how much state a worker takes is `maxStateBytes`.
 */
export const DEFAULT_WORKER_MAX_MESSAGE_BYTES = DEFAULT_MAX_MESSAGE_BYTES;

/**
 * Longest a compute chunk may run, as a fraction of the heartbeat timeout: the silence a
 * peer sees is at most one heartbeat interval plus one chunk, under the timeout. Large on
 * purpose: a slice cut into chunks is no longer bit-reproducible, so only a step that really
 * threatens the heartbeat (a slow device, a large model) is cut, never one slowed by a busy
 * machine.
 */
const CHUNK_BUDGET_OF_TIMEOUT = 0.5;

/** Close codes after which reconnecting cannot help: the worker exits instead. */
const FATAL_CLOSE_CODES = new Set<number>([CLOSE_CODES.UNSUPPORTED_PROTOCOL_VERSION]);

/**
 * A worker's connection to the coordinator: handshake, heartbeats, reconnection with
 * backoff and jitter, and the job messages, handled strictly in arrival order.
 */
export class WorkerSession {
  private ws: WebSocket | undefined;
  private replica: Replica | undefined;
  private jobId: string | undefined;
  private wire: GradientWire | undefined;
  /** Data-plane jobs: connections to the reducer shards. */
  private dataPlane: DataPlaneClient | undefined;
  /** Data-plane jobs: committed steps whose update this replica applied. */
  private applied = 0;
  private appliedWaiters: { step: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  private workerId: string | undefined;
  /** The weight shapes of the job (`job-start`), to check the size of a later `load-state`. */
  private layout: number[][] | undefined;
  /** Size of the chunks this worker sends state in: the job's `bucketBytes`. */
  private chunkBytes = stateChunkBytes(4 * 1024 * 1024);
  /** The state transfer arriving now (chunks are taken as they arrive, outside the message queue). */
  private inbound: StateReceiver<MemoryStateSink> | undefined;
  private nextTransfer = 1;
  /** Data-plane jobs: digest of each update bucket of the round arriving (buckets come in any order). */
  private bucketDigests: Buffer[] = [];
  /** Chain of the update bytes applied since the last checksum report; undefined when the job checks nothing. */
  private stream: UpdateStreamHash | undefined;
  private readonly faults: TestFaults | undefined;
  /** TEST ONLY (`GRADFLEET_TEST_LATE_STATS_MS`): stats sent this long after the buckets. */
  private readonly lateStatsMs: number | undefined;
  private readonly slowdown: ((examples: number) => void) | undefined;
  private timings = { compute: 0, apply: 0, steps: 0 };
  /** Time spent applying the last update, reported with the next gradient, in ms. */
  private lastApplyMs = 0;
  private queue: Promise<void> = Promise.resolve();
  private heartbeat: NodeJS.Timeout | undefined;
  private lastSeen = Date.now();
  private timeoutMs = 10_000;
  private attempts = 0;
  private stopped = false;
  private readonly datasets: DataCache;
  private resolveDone!: (code: number) => void;
  /** Resolves with the process exit code when the session ends for good. */
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  constructor(private readonly options: WorkerSessionOptions) {
    this.faults = TestFaults.fromEnv(process.env, options.logger);
    this.slowdown = testSlowdown(process.env, options.logger);
    this.lateStatsMs = testLateStatsMs(process.env, options.logger);
    this.datasets = new DataCache(
      options.coordinator.replace(/\/+$/, '').replace(/^ws(s?):/, 'http$1:'),
      options.token,
      options.ca,
      options.cacheBytes,
    );
    options.metrics.watchChunks(this.datasets);
  }

  start(): void {
    const url = this.options.coordinator.replace(/\/+$/, '') + WORKER_WS_PATH;
    const log = this.options.logger;
    if (this.stopped) return;
    // A zero masking key: ws then sends gradient buffers as they are, with no per-byte XOR
    // and no copy. Masking (RFC 6455) protects proxies from scripts in browsers; a worker
    // runs no untrusted code, so it buys nothing here and costs a copy of every gradient.
    const headers = this.options.token ? { authorization: `Bearer ${this.options.token}` } : undefined;
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      maxPayload: this.options.maxMessageBytes ?? DEFAULT_WORKER_MAX_MESSAGE_BYTES,
      generateMask: (mask) => mask.fill(0),
      ...(headers ? { headers } : {}),
      ...(this.options.ca ? { ca: this.options.ca } : {}),
    });
    ws.on('unexpected-response', (_req, res) => {
      // The upgrade was refused: 401 (token) is final, anything else (503: full) is retried.
      if (res.statusCode === 401) {
        log.error(
          { status: 401 },
          'the coordinator refused this worker: missing or wrong worker token (--token, --token-file or GRADFLEET_WORKER_TOKEN)',
        );
        this.stopped = true;
        this.resolveDone(EXIT_CODES.REFUSED);
      } else {
        log.warn({ status: res.statusCode }, 'the coordinator refused the connection');
      }
      ws.terminate();
    });
    this.ws = ws;
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => {
      this.attempts = 0;
      this.lastSeen = Date.now();
      this.options.metrics.connected.set(1);
      this.options.metrics.isConnected = true;
      const b = this.options.backend;
      this.send({
        t: 'hello',
        v: PROTOCOL_VERSION,
        name: this.options.name ?? `${hostname()}-${process.pid}`,
        host: hostname(),
        pid: process.pid,
        backend: b.backend,
        device: b.device,
        backendReason: b.reason,
      });
      log.info({ url }, 'connected to coordinator');
    });
    ws.on('message', (data: Buffer, isBinary) => {
      this.lastSeen = Date.now();
      if (!isBinary) return this.fail(new ProtocolError('MALFORMED_FRAME', 'text frame'));
      let received;
      try {
        received = decodeCoordinatorMessage(data);
      } catch (err) {
        return this.fail(err as Error);
      }
      const { message, payload } = received;
      let state: StateReceiver<MemoryStateSink> | undefined;
      try {
        if (message.t === 'state-chunk') return this.acceptChunk(message.transfer, message.index, payload);
        // A hint is acted on at once (not behind the step being computed) and never fails the session.
        if (message.t === 'prefetch') {
          if (message.jobId === this.jobId) this.replica?.prefetch(message.chunks);
          return;
        }
        if (message.t === 'job-start' || message.t === 'load-state') state = this.receiveState(message);
      } catch (err) {
        return this.fail(err as Error);
      }
      this.queue = this.queue
        .then(() => this.handle(message, payload, state))
        .catch((err: unknown) => this.reportFailure(err, 'jobId' in message ? message.jobId : undefined));
    });
    ws.on('close', (code, reason) => this.onClose(code, reason.toString()));
    ws.on('error', (err) => log.warn({ err: err.message }, 'connection error'));
  }

  /**
   * A `job-start` or `load-state` begins a state transfer: its size is checked against the
   * limit and the job's layout before the state is allocated; its chunks follow.
   */
  private receiveState(
    msg: Extract<CoordinatorMessage, { t: 'job-start' | 'load-state' }>,
  ): StateReceiver<MemoryStateSink> {
    this.inbound?.assertComplete();
    if (msg.t === 'job-start') this.layout = msg.layout;
    if (!this.layout) throw new ProtocolError('UNEXPECTED_MESSAGE', `${msg.t} before any job-start`);
    const expected = stateValues(this.layout, msg.optimizer) * 4;
    const receiver = new StateReceiver(msg.state, expected, (bytes) => new MemoryStateSink(bytes), {
      maxBytes: this.options.maxStateBytes ?? MAX_STATE_BYTES,
      what: msg.t,
    });
    this.inbound = receiver.complete ? undefined : receiver;
    return receiver;
  }

  private acceptChunk(transfer: number, index: number, payload: Uint8Array): void {
    const inbound = this.inbound;
    if (!inbound) throw new ProtocolError('TRANSFER_MISMATCH', `state chunk ${index} outside any transfer`);
    inbound.accept(transfer, index, payload);
    if (inbound.complete) this.inbound = undefined; // the handler waiting for it keeps it
  }

  /** Sends one message and resolves once the socket wrote it; rejects if the connection is gone. */
  private sendAsync(message: WorkerMessageInput, payload?: ArrayBufferView): Promise<void> {
    const ws = this.ws;
    if (ws?.readyState !== WebSocket.OPEN) return Promise.reject(new JobEndedError());
    return new Promise((resolve, reject) =>
      ws.send(encodeMessage(message, payload), (err) => (err ? reject(new JobEndedError()) : resolve())),
    );
  }

  private onClose(code: number, reason: string): void {
    clearInterval(this.heartbeat);
    this.inbound?.abort(new JobEndedError());
    this.inbound = undefined;
    this.options.metrics.connected.set(0);
    this.options.metrics.isConnected = false;
    this.dropJob();
    const log = this.options.logger;
    if (this.stopped) return this.resolveDone(0);
    if (FATAL_CLOSE_CODES.has(code)) {
      log.error({ code, reason }, 'coordinator refused this worker; not reconnecting');
      return this.resolveDone(EXIT_CODES.REFUSED);
    }
    const base = this.options.reconnectDelayMs ?? 250;
    const max = this.options.maxReconnectDelayMs ?? 10_000;
    const delay = Math.min(max, base * 2 ** this.attempts++) * (0.5 + Math.random() * 0.5);
    log.warn({ code, reason, retryInMs: Math.round(delay) }, 'disconnected from coordinator; reconnecting');
    setTimeout(() => !this.stopped && this.start(), delay);
  }

  private fail(err: Error): void {
    const code = err instanceof ProtocolError ? err.closeCode : 1011;
    this.options.logger.error({ err: err.message }, 'closing connection');
    this.ws?.close(code, err instanceof ProtocolError ? err.closeReason : 'internal error');
  }

  private send(message: WorkerMessageInput, payload?: ArrayBufferView): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encodeMessage(message, payload));
  }

  /**
   * A message of job `jobId` failed here. The failure is reported for that job only: a job
   * that already ended here (its computation was cut short by `job-end` or a lost connection)
   * is not reported, so a late error never lands on the next job this worker runs.
   */
  private reportFailure(err: unknown, jobId: string | undefined): void {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof JobEndedError || (jobId !== undefined && jobId !== this.jobId)) {
      this.options.logger.info({ err: message, jobId }, 'a computation of a job that ended here was dropped');
      return;
    }
    this.options.logger.error({ err: message, jobId: this.jobId }, 'job failed on this worker');
    this.send({ t: 'failure', ...(this.jobId ? { jobId: this.jobId } : {}), message: message.slice(0, 4000) });
    this.dropJob();
  }

  private dropJob(): void {
    this.dataPlane?.close();
    this.dataPlane = undefined;
    for (const w of this.appliedWaiters.splice(0)) w.reject(new JobEndedError());
    this.replica?.dispose();
    this.replica = undefined;
    this.jobId = undefined;
  }

  private requireJob(jobId: string): Replica {
    if (!this.replica || jobId !== this.jobId) throw new Error(`message for job ${jobId}, which is not running here`);
    return this.replica;
  }

  private async handle(
    msg: CoordinatorMessage,
    payload: Uint8Array,
    state: StateReceiver<MemoryStateSink> | undefined,
  ): Promise<void> {
    switch (msg.t) {
      case 'welcome':
        this.timeoutMs = msg.heartbeatTimeoutMs;
        this.workerId = msg.workerId;
        this.options.logger.info({ workerId: msg.workerId }, 'registered');
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => this.beat(), msg.heartbeatIntervalMs);
        return;
      case 'heartbeat':
      case 'prefetch': // handled on arrival
        return;
      case 'job-start': {
        this.dropJob();
        this.jobId = msg.jobId;
        const spec = parseJobSpec(msg.spec);
        this.chunkBytes = stateChunkBytes(spec.bucketBytes);
        await state!.done;
        const values = state!.sink.values;
        const data = await this.datasets.get(msg.data, spec.dataset === 'mnist');
        const replica = await Replica.create(spec, msg.layout, values, data, msg.optimizer);
        if (this.jobId !== msg.jobId) return replica.dispose();
        replica.onChunk = this.slowdown;
        replica.pacer.budgetMs = Math.min(replica.pacer.budgetMs, this.timeoutMs * CHUNK_BUDGET_OF_TIMEOUT);
        await replica.prepareProbe();
        if (this.jobId !== msg.jobId) return replica.dispose();
        replica.probe();
        this.replica = replica;
        const wire = (this.wire = new GradientWire(replica.exchangeLength, spec));
        this.stream = spec.checksumEverySteps > 0 ? new UpdateStreamHash() : undefined;
        this.bucketDigests = new Array<Buffer>(wire.plan.count);
        this.timings = { compute: 0, apply: 0, steps: 0 };
        if (msg.dataPlane) {
          this.applied = msg.dataPlane.step;
          const url = new URL(this.options.coordinator);
          const dataPlane = await DataPlaneClient.connect(
            {
              host: url.hostname.replace(/^\[|\]$/g, ''),
              tls: url.protocol === 'wss:',
              ca: this.options.ca,
              token: this.options.token,
              jobId: msg.jobId,
              workerId: this.workerId ?? '',
              shards: msg.dataPlane.shards,
              maxUpdateBytes: (b) => wire.maxUpdateBytes(b),
              onUpdate: (h, payload) => this.onDataUpdate(msg.jobId, h, payload),
              onError: (err) => this.fail(new ProtocolError('WORKER_FAILED', err.message)),
            },
            wire.plan.count,
          );
          if (this.jobId !== msg.jobId) return dataPlane.close();
          this.dataPlane = dataPlane;
        }
        this.options.logger.info(
          {
            jobId: msg.jobId,
            rank: msg.rank,
            worldSize: msg.worldSize,
            params: replica.paramCount,
            exchanged: replica.exchangeLength,
          },
          'job started',
        );
        this.send({
          t: 'ready',
          jobId: msg.jobId,
          trainCount: replica.trainCount,
          testCount: replica.testCount,
          validationCount: replica.validationCount,
        });
        return;
      }
      case 'train': {
        const replica = this.requireJob(msg.jobId);
        const wire = this.wire!;
        if (this.dataPlane) await this.waitApplied(msg.step);
        const wait0 = replica.dataWaitMs;
        const t0 = performance.now();
        const stats = await replica.computeGradient(uint32View(payload), wire.gradient);
        const dataWaitMs = replica.dataWaitMs - wait0; // fetching the slice's chunks: reported apart from compute
        const computeMs = performance.now() - t0 - dataWaitMs;
        this.timings.compute += computeMs;
        this.timings.steps++;
        this.options.metrics.compute.observe(computeMs / 1000);
        this.options.metrics.dataWait.observe(dataWaitMs / 1000);
        this.options.metrics.samples.inc(stats.count);
        this.options.metrics.steps.inc();
        const header = {
          t: 'gradient' as const,
          jobId: msg.jobId,
          step: msg.step,
          samples: stats.count,
          lossSum: stats.lossSum,
          correct: stats.correct,
          computeMs,
          applyMs: this.lastApplyMs,
          dataWaitMs,
        };
        this.lastApplyMs = 0;
        const dataPlane = this.dataPlane;
        if (dataPlane && msg.round !== undefined) {
          const sent = { ...header, t: 'gradient-sent' as const, round: msg.round };
          if (this.lateStatsMs === undefined) this.send(sent);
          wire.sendData(msg.round, msg.step, stats.count, (b, frame, done) => dataPlane.send(b, frame, done));
          if (this.lateStatsMs !== undefined) setTimeout(() => this.send(sent), this.lateStatsMs);
          return;
        }
        const ws = this.ws;
        if (ws?.readyState === WebSocket.OPEN) wire.send(header, (frame, done) => ws.send(frame, done));
        return;
      }
      case 'update': {
        const replica = this.requireJob(msg.jobId);
        const t0 = performance.now();
        this.faults?.corruptUpdate(msg.step, msg.bucket, payload);
        this.stream?.add(msg.step, msg.bucket, payload); // the bytes this replica applies, for the replica check
        const mean = this.wire!.receive(msg.bucket, payload);
        if (!mean) return;
        this.stream?.endStep();
        replica.applyUpdate(mean);
        if (this.faults?.corruptWeights(msg.step)) replica.perturb(1e-3, this.faults.kind === 'stats');
        this.lastApplyMs = performance.now() - t0;
        this.timings.apply += this.lastApplyMs;
        this.options.metrics.apply.observe(this.lastApplyMs / 1000);
        if (msg.checksum) {
          const stream = this.stream?.take();
          this.send({
            t: 'checksum',
            jobId: msg.jobId,
            step: msg.step,
            ...replica.checksum(),
            ...(stream ? { stream } : {}),
          });
        }
        return;
      }
      case 'load-state': {
        await state!.done;
        await this.requireJob(msg.jobId).loadState(state!.sink.values, msg.optimizer);
        this.setApplied(msg.step); // a joiner starts here; a resynced replica drops any stale update
        this.stream?.reset(); // a new state: the next report covers the updates applied from here
        this.options.logger.info({ jobId: msg.jobId, step: msg.step }, 'took the state of a live replica');
        return;
      }
      case 'evaluate': {
        if (msg.step !== undefined && this.dataPlane) await this.waitApplied(msg.step);
        const stats = await this.requireJob(msg.jobId).evaluate(msg.split, msg.start, msg.end);
        this.send({ t: 'eval-result', jobId: msg.jobId, requestId: msg.requestId, ...stats });
        return;
      }
      case 'fetch-weights': {
        if (msg.step !== undefined && this.dataPlane) await this.waitApplied(msg.step);
        const replica = this.requireJob(msg.jobId);
        const weights = replica.weights();
        const { specs, values } = msg.withOptimizer
          ? await replica.optimizerState()
          : { specs: [], values: new Float32Array(0) };
        // Weights then optimizer state, in chunks of a bucket straight from the two arrays (never joined).
        const source = new ArrayStateSource([weights, values]);
        const state = { transfer: this.nextTransfer++, bytes: source.bytes, chunkBytes: this.chunkBytes };
        await this.sendAsync({ t: 'weights', jobId: msg.jobId, requestId: msg.requestId, optimizer: specs, state });
        await sendStateChunks(source, state, (index, chunk) =>
          this.sendAsync({ t: 'state-chunk', transfer: state.transfer, index }, chunk),
        );
        return;
      }
      case 'job-end':
        if (msg.jobId === this.jobId) {
          const t = this.timings;
          this.options.logger.info(
            {
              jobId: msg.jobId,
              state: msg.state,
              steps: t.steps,
              computeMsPerStep: t.compute / t.steps,
              applyMsPerStep: t.apply / t.steps,
            },
            'job ended',
          );
          this.dropJob();
        }
        return;
    }
  }

  /**
   * Data plane: an update bucket from a shard. Once every bucket of the round is in, the
   * replica applies the whole (never a part), in step order; an update for a step this
   * replica already holds (it loaded a live replica's state meanwhile) is dropped.
   */
  private onDataUpdate(jobId: string, h: DataFrameHeader, payload: Uint8Array): void {
    const replica = this.replica;
    if (!replica || this.jobId !== jobId || !this.wire) return;
    this.faults?.corruptUpdate(h.step, h.bucket, payload);
    if (this.stream) this.bucketDigests[h.bucket] = bucketDigest(payload); // hashed as it arrives: the view is transient
    const mean = this.wire.receiveData(h.round, h.bucket, payload);
    if (!mean || h.step < this.applied) return;
    if (h.step !== this.applied)
      return this.fail(
        new ProtocolError('UNKNOWN_STEP', `update for step ${h.step}, this replica applied ${this.applied} steps`),
      );
    const t0 = performance.now();
    if (this.stream) {
      // The bytes this replica applies, in bucket order, for the replica check.
      for (let b = 0; b < this.wire.plan.count; b++) this.stream.addDigest(h.step, b, this.bucketDigests[b]!);
      this.stream.endStep();
    }
    replica.applyUpdate(mean);
    if (this.faults?.corruptWeights(h.step)) replica.perturb(1e-3, this.faults.kind === 'stats');
    this.lastApplyMs = performance.now() - t0;
    this.timings.apply += this.lastApplyMs;
    this.options.metrics.apply.observe(this.lastApplyMs / 1000);
    if (h.flags & DATA_FLAG_CHECKSUM) {
      const stream = this.stream?.take();
      this.send({ t: 'checksum', jobId, step: h.step, ...replica.checksum(), ...(stream ? { stream } : {}) });
    }
    this.setApplied(h.step + 1);
  }

  private setApplied(step: number): void {
    this.applied = step;
    this.appliedWaiters = this.appliedWaiters.filter((w) => (w.step <= step ? (w.resolve(), false) : true));
  }

  /** Resolves once the replica applied `step` committed updates (they may still be on the data connections). */
  private waitApplied(step: number): Promise<void> {
    if (this.applied >= step) return Promise.resolve();
    return new Promise((resolve, reject) => this.appliedWaiters.push({ step, resolve, reject }));
  }

  private beat(): void {
    if (Date.now() - this.lastSeen > this.timeoutMs) {
      this.options.logger.warn(
        { silentMs: Date.now() - this.lastSeen },
        'coordinator silent past the heartbeat timeout',
      );
      this.ws?.terminate();
      return;
    }
    const mem = tf.memory();
    const cache = this.datasets.chunks;
    this.send({
      t: 'heartbeat',
      numTensors: mem.numTensors,
      numBytes: mem.numBytes,
      ...(cache.hits + cache.misses > 0 ? { chunkHits: cache.hits, chunkMisses: cache.misses } : {}),
    });
  }

  /** Leaves the coordinator cleanly (SIGTERM/SIGINT). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.heartbeat);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'worker shutting down');
    else this.resolveDone(0);
  }
}
