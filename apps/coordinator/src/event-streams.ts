import type { IncomingMessage, ServerResponse } from 'node:http';
import { TERMINAL_STATES, summarizeJob, type Logger } from '@gradfleet/core';
import { JobRequestError } from './job-manager.js';
import type { JobRecord } from './job-record.js';
import type { JobStore } from './job-store.js';
import type { CoordinatorMetrics } from './metrics.js';

/** How often a stream looks at its job for changes, in ms. */
const EVENT_POLL_MS = 250;
/** Log lines read from the store per look: a job with millions of lines is sent in slices, never loaded whole. */
const LOG_ROWS_PER_POLL = 500;

export interface EventStreamOptions {
  /** Streams open at once, all tokens together. @defaultValue 256 (`COORDINATOR_DEFAULTS.maxEventStreams`) */
  maxStreams: number;
  /** Streams open at once per API token. @defaultValue 16 */
  maxPerToken: number;
  /** How long a stream may leave its socket buffer full before it is closed, in ms. @defaultValue 10000 */
  stallMs: number;
}

/**
 * Server-sent events of jobs (`GET /v1/jobs/:id/events`), capped per token and in all.
 *
 * Events: first `status`, the job without its topology (`summarizeJob`); then `change`,
 * only the top-level fields that changed since the last event (a JSON merge patch: a field
 * that went away is `null`); `log` lines. The stream ends once the job has ended and
 * everything is sent.
 *
 * Backpressure: nothing is written while the socket's buffer is full (`write()` answered
 * false until `drain`); changes made meanwhile are coalesced into the next `change`, and
 * log lines wait in the store. A client that leaves the buffer full for `stallMs` is
 * closed (`gradfleet_event_streams_closed_total`), so memory per stream stays at one
 * buffer whatever the client does.
 */
export class EventStreams {
  private open = 0;
  private readonly perToken = new Map<string, number>();

  constructor(
    private readonly options: EventStreamOptions,
    private readonly store: JobStore,
    private readonly metrics: CoordinatorMetrics,
    private readonly log: Logger,
  ) {}

  /** Opens a stream of `job` for `token`; refused with 429 `TOO_MANY_STREAMS` past the limits. */
  start(job: JobRecord, token: string, req: IncomingMessage, res: ServerResponse): void {
    const mine = this.perToken.get(token) ?? 0;
    if (mine >= this.options.maxPerToken)
      throw new JobRequestError(
        429,
        'TOO_MANY_STREAMS',
        `token ${token} has ${mine} event streams open, the most this coordinator allows per token (--max-event-streams-per-token ${this.options.maxPerToken}); close one`,
      );
    if (this.open >= this.options.maxStreams)
      throw new JobRequestError(
        429,
        'TOO_MANY_STREAMS',
        `${this.open} event streams are open, the most this coordinator allows (--max-event-streams ${this.options.maxStreams}); retry later or poll GET /v1/jobs/:id`,
      );
    this.open++;
    this.perToken.set(token, mine + 1);
    this.metrics.eventStreams.set(this.open);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });

    /** Each top-level field of the summary as last sent, as JSON. */
    const sent = new Map<string, string>();
    let row = 0;
    let first = true;
    let stalledSince: number | undefined;
    let done = false;

    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(timer);
      this.open--;
      const n = this.perToken.get(token)! - 1;
      if (n > 0) this.perToken.set(token, n);
      else this.perToken.delete(token);
      this.metrics.eventStreams.set(this.open);
    };
    /** Writes one event; false once the socket buffer is full (stop writing until `drain`). */
    const write = (event: string, data: string): boolean => res.write(`event: ${event}\ndata: ${data}\n\n`);

    const tick = () => {
      if (done) return;
      if (res.writableNeedDrain) {
        stalledSince ??= Date.now();
        if (Date.now() - stalledSince >= this.options.stallMs) {
          this.log.warn(
            { job_id: job.id, token, bufferedBytes: res.writableLength, stallMs: this.options.stallMs },
            'event stream closed: the client stopped reading (--event-stream-stall-ms)',
          );
          this.metrics.eventStreamsClosed.inc();
          finish();
          res.destroy();
        }
        return;
      }
      stalledSince = undefined;
      const ended = TERMINAL_STATES.includes(job.state); // read before the status, so the last change is sent
      const summary = summarizeJob(job.status) as unknown as Record<string, unknown>;
      const patch: Record<string, unknown> = {};
      let changed = false;
      for (const [key, value] of Object.entries(summary)) {
        const json = JSON.stringify(value);
        if (sent.get(key) === json) continue;
        sent.set(key, json);
        patch[key] = value;
        changed = true;
      }
      for (const key of sent.keys()) {
        if (key in summary) continue;
        sent.delete(key);
        patch[key] = null;
        changed = true;
      }
      let open = true;
      if (first) open = write('status', JSON.stringify(summary));
      else if (changed) open = write('change', JSON.stringify(patch));
      first = false;
      let more = false;
      while (open) {
        const lines = this.store.logs(job.id, row, LOG_ROWS_PER_POLL);
        for (const l of lines) {
          row = l.row;
          if (!(open = write('log', JSON.stringify({ time: l.time, line: l.line })))) break;
        }
        more = lines.length === LOG_ROWS_PER_POLL;
        if (!more) break;
      }
      if (!open) {
        stalledSince = Date.now();
        return; // `drain` looks again
      }
      if (ended && !more) {
        finish();
        res.end();
      }
    };
    const timer = setInterval(tick, EVENT_POLL_MS);
    res.on('drain', tick);
    res.on('close', finish);
    req.on('close', finish);
    tick();
  }
}
