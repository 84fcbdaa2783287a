import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CLOSE_CODES } from '@gradfleet/core';

/** Step-time buckets, in seconds: 0.5 ms .. 10 s. */
const STEP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * How long a finished job's series stay on `/metrics`, in ms, by default: two scrape
 * intervals of the shipped Prometheus config (15 s, deploy/prometheus/prometheus.yml), so the
 * final values are scraped at least once before the series go.
 */
export const DEFAULT_JOB_SERIES_GRACE_MS = 30_000;

/** Phases of one step (docs/metrics.md says how each is measured). */
export type StepPhase = 'compute' | 'upload' | 'straggler_wait' | 'aggregate' | 'broadcast' | 'apply' | 'data_wait';

/**
 * The coordinator's Prometheus metrics (`/metrics`), catalogued in docs/metrics.md (a test
 * keeps the two equal). Labels are bounded: job id, worker id, state, phase, error code;
 * never step numbers. Each coordinator has its own registry.
 */
export class CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly r = [this.registry];
  /** Finished jobs whose series are about to be removed, with their timers. */
  private readonly retiring = new Map<string, NodeJS.Timeout>();
  /** How long a finished job's series stay, in ms (`--job-metrics-grace-ms`). */
  jobSeriesGraceMs = DEFAULT_JOB_SERIES_GRACE_MS;

  readonly samples = new Counter({
    name: 'gradfleet_samples_total',
    help: 'Training examples whose gradients were aggregated.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly steps = new Counter({
    name: 'gradfleet_steps_total',
    help: 'Synchronous steps completed.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly workerSamples = new Counter({
    name: 'gradfleet_worker_samples_total',
    help: 'Training examples processed, per worker.',
    labelNames: ['job_id', 'worker'],
    registers: this.r,
  });
  readonly workerSteps = new Counter({
    name: 'gradfleet_worker_steps_total',
    help: 'Gradients received, per worker.',
    labelNames: ['job_id', 'worker'],
    registers: this.r,
  });
  readonly workerComputeSeconds = new Counter({
    name: 'gradfleet_worker_compute_seconds_total',
    help: 'Forward+backward time reported by each worker.',
    labelNames: ['job_id', 'worker'],
    registers: this.r,
  });
  readonly stepDuration = new Histogram({
    name: 'gradfleet_step_duration_seconds',
    help: 'Wall time of one step: slices sent to averaged gradient sent.',
    labelNames: ['job_id'],
    buckets: STEP_BUCKETS,
    registers: this.r,
  });
  readonly stepPhase = new Histogram({
    name: 'gradfleet_step_phase_seconds',
    help: 'Time of each phase of a step.',
    labelNames: ['job_id', 'phase'],
    buckets: STEP_BUCKETS,
    registers: this.r,
  });
  readonly stragglerEvents = new Counter({
    name: 'gradfleet_straggler_events_total',
    help: 'Steps in which this worker arrived last by a clear margin (max(2 ms, 25 % of the median compute)).',
    labelNames: ['job_id', 'worker'],
    registers: this.r,
  });
  readonly excusedSlices = new Counter({
    name: 'gradfleet_excused_slices_total',
    help: 'Slices of this worker that went back to the pool unfinished: past the straggler deadline, with backup workers, or past stepTimeoutMs.',
    labelNames: ['job_id', 'worker'],
    registers: this.r,
  });
  readonly gradientReceivedBytes = new Counter({
    name: 'gradfleet_gradient_received_bytes_total',
    help: 'Gradient bytes received (whole frames, headers included, as on the wire), per worker.',
    labelNames: ['worker'],
    registers: this.r,
  });
  readonly gradientSentBytes = new Counter({
    name: 'gradfleet_gradient_sent_bytes_total',
    help: 'Averaged-gradient bytes sent (whole frames, headers included), per worker.',
    labelNames: ['worker'],
    registers: this.r,
  });
  /** Counts of connected workers by state, read at scrape time (set by the job manager). */
  workerStates: (() => Record<'IDLE' | 'BUSY', number>) | undefined;
  readonly workers: Gauge<'state'> = new Gauge({
    name: 'gradfleet_workers',
    help: 'Connected workers by state.',
    labelNames: ['state'],
    registers: this.r,
    collect: () => {
      const states = this.workerStates?.() ?? { IDLE: 0, BUSY: 0 };
      for (const [state, n] of Object.entries(states)) this.workers.set({ state }, n);
    },
  });
  readonly workersConnected = new Gauge({
    name: 'gradfleet_workers_connected',
    help: 'Workers past the handshake.',
    registers: this.r,
  });
  readonly workerJoins = new Counter({
    name: 'gradfleet_worker_joins_total',
    help: 'Workers that completed the handshake.',
    registers: this.r,
  });
  readonly workerLeaves = new Counter({
    name: 'gradfleet_worker_leaves_total',
    help: 'Registered workers that disconnected, for any reason.',
    registers: this.r,
  });
  readonly workerDeaths = new Counter({
    name: 'gradfleet_worker_deaths_total',
    help: 'Workers lost without a clean close (heartbeat timeout, dropped connection).',
    registers: this.r,
  });
  readonly workerInfo = new Gauge({
    name: 'gradfleet_worker_info',
    help: 'Always 1; labels describe each connected worker.',
    labelNames: ['worker', 'name', 'host', 'backend', 'device'],
    registers: this.r,
  });
  readonly workerTensors = new Gauge({
    name: 'gradfleet_worker_backend_tensors',
    help: 'Tensors alive in the worker’s TF.js engine.',
    labelNames: ['worker'],
    registers: this.r,
  });
  readonly workerMemory = new Gauge({
    name: 'gradfleet_worker_backend_memory_bytes',
    help: 'Bytes held by the worker’s TF.js engine.',
    labelNames: ['worker'],
    registers: this.r,
  });
  readonly protocolErrors = new Counter({
    name: 'gradfleet_protocol_errors_total',
    help: 'Connections closed for a protocol violation, by error code.',
    labelNames: ['code'],
    registers: this.r,
  });
  readonly largestMessage = new Gauge({
    name: 'gradfleet_ws_largest_message_bytes',
    help: 'Largest WebSocket message sent to or received from a worker since the coordinator started, in bytes.',
    labelNames: ['direction'],
    registers: this.r,
  });
  readonly stateTransferBytes = new Counter({
    name: 'gradfleet_state_transfer_bytes_total',
    help: 'Bytes of whole-model state (weights, optimizer state) moved in chunks, by direction.',
    labelNames: ['direction'],
    registers: this.r,
  });
  readonly authFailures = new Counter({
    name: 'gradfleet_auth_failures_total',
    help: 'Requests and connections refused for a missing or wrong token, by kind (worker, api).',
    labelNames: ['kind'],
    registers: this.r,
  });
  readonly replicaDivergences = new Counter({
    name: 'gradfleet_replica_divergence_total',
    help: 'Replica checksum mismatches.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly replicaChecks = new Counter({
    name: 'gradfleet_replica_checks_total',
    help: 'Replica checksum rounds.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  /** Counts of jobs by state, read at scrape time (set by the job manager). */
  jobStates: (() => Record<string, number>) | undefined;
  readonly jobs: Gauge<'state'> = new Gauge({
    name: 'gradfleet_jobs',
    help: 'Jobs by state.',
    labelNames: ['state'],
    registers: this.r,
    collect: () => {
      for (const [state, n] of Object.entries(this.jobStates?.() ?? {})) this.jobs.set({ state }, n);
    },
  });
  readonly trainLoss = new Gauge({
    name: 'gradfleet_train_loss',
    help: 'Mean training loss of the current epoch so far.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly learningRate = new Gauge({
    name: 'gradfleet_learning_rate',
    help: 'Learning rate of the next step (learningRate through lrSchedule).',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly trainAccuracy = new Gauge({
    name: 'gradfleet_train_accuracy_ratio',
    help: 'Training accuracy of the current epoch so far.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly validationLoss = new Gauge({
    name: 'gradfleet_validation_loss',
    help: 'Validation loss after the last epoch.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly validationAccuracy = new Gauge({
    name: 'gradfleet_validation_accuracy_ratio',
    help: 'Validation accuracy after the last epoch.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly testAccuracy = new Gauge({
    name: 'gradfleet_test_accuracy_ratio',
    help: 'Test accuracy of a finished job.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly validationMetric = new Gauge({
    name: 'gradfleet_validation_metric',
    help: 'Each metric the job lists (metrics), on the validation data after the last epoch.',
    labelNames: ['job_id', 'metric'],
    registers: this.r,
  });
  readonly testMetric = new Gauge({
    name: 'gradfleet_test_metric',
    help: 'Each metric the job lists (metrics), on the test split of a finished job.',
    labelNames: ['job_id', 'metric'],
    registers: this.r,
  });
  readonly epoch = new Gauge({
    name: 'gradfleet_epoch',
    help: 'Current epoch (0-based).',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly epochProgress = new Gauge({
    name: 'gradfleet_epoch_progress_ratio',
    help: 'Fraction of the current epoch’s examples done.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly jobModelsResident = new Gauge({
    name: 'gradfleet_job_models_resident',
    help: 'Jobs whose model and initial weights are in memory (running or about to start).',
    registers: this.r,
  });
  readonly eventStreams = new Gauge({
    name: 'gradfleet_event_streams',
    help: 'Open server-sent event streams (GET /v1/jobs/:id/events).',
    registers: this.r,
  });
  readonly eventStreamsClosed = new Counter({
    name: 'gradfleet_event_streams_closed_total',
    help: 'Event streams the coordinator closed because the client read too slowly.',
    registers: this.r,
  });
  readonly ingestReadBytes = new Counter({
    name: 'gradfleet_ingest_read_bytes_total',
    help: 'Source bytes read by named-dataset ingestions (failed ones included).',
    registers: this.r,
  });
  readonly ingestWrittenBytes = new Counter({
    name: 'gradfleet_ingest_written_bytes_total',
    help: 'Chunk bytes written by named-dataset ingestions (failed ones included).',
    registers: this.r,
  });
  readonly ingestExamples = new Counter({
    name: 'gradfleet_ingest_examples_total',
    help: 'Examples written into chunks by named-dataset ingestions (failed ones included).',
    registers: this.r,
  });
  readonly chunksServed = new Counter({
    name: 'gradfleet_dataset_chunks_served_total',
    help: 'Chunks of named datasets the coordinator served to workers over HTTP (none for dataStore s3).',
    registers: this.r,
  });
  readonly chunkBytesServed = new Counter({
    name: 'gradfleet_dataset_chunk_served_bytes_total',
    help: 'Bytes of the chunks the coordinator served to workers over HTTP.',
    registers: this.r,
  });
  /** Named-dataset ingestions running, read at scrape time (set by the coordinator). */
  ingestionsRunning: (() => number) | undefined;
  readonly datasetIngestions: Gauge = new Gauge({
    name: 'gradfleet_ingestions_running',
    help: 'Named-dataset ingestions running.',
    registers: this.r,
    collect: () => this.datasetIngestions.set(this.ingestionsRunning?.() ?? 0),
  });
  readonly jobRunning = new Gauge({
    name: 'gradfleet_job_running',
    help: '1 while the job is RUNNING, else 0.',
    labelNames: ['job_id'],
    registers: this.r,
  });
  readonly lastStep = new Gauge({
    name: 'gradfleet_last_step_timestamp_seconds',
    help: 'Unix time of the job’s last completed step (stuck-job alerts).',
    labelNames: ['job_id'],
    registers: this.r,
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    for (const code of Object.keys(CLOSE_CODES)) this.protocolErrors.inc({ code }, 0);
    for (const kind of ['worker', 'api']) this.authFailures.inc({ kind }, 0);
    for (const direction of ['sent', 'received']) {
      this.largestMessage.set({ direction }, 0);
      this.stateTransferBytes.inc({ direction }, 0);
    }
  }

  /**
   * A job ended: its series (every metric labelled `job_id`) are removed after
   * `jobSeriesGraceMs`, so Prometheus scrapes the final values and the series do not grow
   * with every job.
   */
  retireJob(job: string, graceMs = this.jobSeriesGraceMs): void {
    clearTimeout(this.retiring.get(job));
    const timer = setTimeout(() => {
      this.retiring.delete(job);
      void this.removeJob(job);
    }, graceMs);
    timer.unref(); // never keeps a stopping coordinator alive
    this.retiring.set(job, timer);
  }

  /** Removes every series labelled with `job` now. */
  async removeJob(job: string): Promise<void> {
    clearTimeout(this.retiring.get(job));
    this.retiring.delete(job);
    // Every metric prom-client registers (Counter, Gauge, Histogram) has these two methods.
    const metrics = this.registry.getMetricsAsArray() as unknown as Pick<Counter<string>, 'get' | 'remove'>[];
    for (const metric of metrics) {
      const { values } = await metric.get();
      const seen = new Set<string>();
      for (const { labels } of values) {
        if (labels['job_id'] !== job) continue;
        const { le: _bucket, ...series } = labels; // histogram buckets: one series per label set
        const key = JSON.stringify(series);
        if (seen.has(key)) continue;
        seen.add(key);
        metric.remove(series as Record<string, string | number>);
      }
    }
  }

  /** Creates a job's series at zero so every panel and alert has data from the start. */
  initJob(job: string, workers: string[]): void {
    clearTimeout(this.retiring.get(job)); // ran again (never after a terminal state; kept for safety)
    this.retiring.delete(job);
    this.samples.inc({ job_id: job }, 0);
    this.steps.inc({ job_id: job }, 0);
    this.replicaDivergences.inc({ job_id: job }, 0);
    this.replicaChecks.inc({ job_id: job }, 0);
    this.jobRunning.set({ job_id: job }, 1);
    this.lastStep.set({ job_id: job }, Date.now() / 1000);
    for (const worker of workers) {
      this.workerSamples.inc({ job_id: job, worker }, 0);
      this.workerSteps.inc({ job_id: job, worker }, 0);
      this.workerComputeSeconds.inc({ job_id: job, worker }, 0);
      this.stragglerEvents.inc({ job_id: job, worker }, 0);
      this.excusedSlices.inc({ job_id: job, worker }, 0);
    }
  }
}
