import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The coordinator's Prometheus metrics (served at `/metrics`). Labels are bounded: job id
 * and worker id, never step numbers. Each coordinator has its own registry.
 */
export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly samples = new Counter({ name: 'gradfleet_samples_total', help: 'Training examples whose gradients were aggregated.', labelNames: ['job'], registers: [this.registry] });
  readonly workerSamples = new Counter({ name: 'gradfleet_worker_samples_total', help: 'Training examples processed, per worker.', labelNames: ['job', 'worker'], registers: [this.registry] });
  readonly steps = new Counter({ name: 'gradfleet_steps_total', help: 'Synchronous steps completed.', labelNames: ['job'], registers: [this.registry] });
  readonly stepDuration = new Histogram({
    name: 'gradfleet_step_duration_seconds',
    help: 'Wall time of one step: slices sent to averaged gradient sent.',
    labelNames: ['job'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly workersConnected = new Gauge({ name: 'gradfleet_workers_connected', help: 'Workers past the handshake.', registers: [this.registry] });
  readonly gradientBytes = new Counter({ name: 'gradfleet_gradient_bytes_received_total', help: 'Gradient payload bytes received.', labelNames: ['worker'], registers: [this.registry] });
  readonly updateBytes = new Counter({ name: 'gradfleet_update_bytes_sent_total', help: 'Averaged-gradient payload bytes sent.', labelNames: ['worker'], registers: [this.registry] });
  readonly protocolErrors = new Counter({ name: 'gradfleet_protocol_errors_total', help: 'Connections closed for a protocol violation, by error code.', labelNames: ['code'], registers: [this.registry] });
  readonly replicaDivergences = new Counter({ name: 'gradfleet_replica_divergence_total', help: 'Replica checksum mismatches.', labelNames: ['job'], registers: [this.registry] });
  readonly jobs = new Gauge({ name: 'gradfleet_jobs', help: 'Jobs by state.', labelNames: ['state'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
