import cliProgress from 'cli-progress';
import type { EpochResult, JobStatus, JobSummary } from '@gradfleet/core/client';

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(2)}%`);

/** A job's `metrics` values as `  <prefix>name value` pairs (4 decimals: mse and mae are not ratios). */
export function formatMetrics(prefix: string, values: Record<string, number> | undefined): string {
  return Object.entries(values ?? {})
    .map(([k, v]) => `  ${prefix}${k} ${v.toFixed(4)}`)
    .join('');
}

export function formatEpoch(e: EpochResult, epochs: number): string {
  const val =
    (e.valAccuracy === undefined ? '' : `  val_loss ${e.valLoss!.toFixed(4)}  val_acc ${pct(e.valAccuracy)}`) +
    formatMetrics('val_', e.valMetrics);
  const audit = e.audit.ok ? 'audit ok' : `AUDIT FAILED (missing ${e.audit.missing}, repeated ${e.audit.duplicated})`;
  return `epoch ${e.epoch + 1}/${epochs}  loss ${e.loss.toFixed(4)}  acc ${pct(e.accuracy)}${val}  ${(e.durationMs / 1000).toFixed(1)}s  ${audit}`;
}

/**
 * Live progress of a job in the terminal: a bar per epoch (examples done, samples/s) when
 * stdout is a TTY, and one line per finished epoch in every case.
 */
export class JobProgressView {
  private bar: cliProgress.SingleBar | undefined;
  private epochShown = -1;
  private printed = 0;
  private readonly tty = Boolean(process.stdout.isTTY);

  update(job: JobStatus | JobSummary): void {
    while (this.printed < job.history.length) {
      this.stopBar();
      console.log(formatEpoch(job.history[this.printed]!, job.spec.epochs));
      this.printed++;
    }
    const p = job.progress;
    if (!this.tty || job.state !== 'RUNNING' || p.phase !== 'training' || p.epochSize === 0) return;
    if (this.epochShown !== p.epoch || !this.bar) {
      this.stopBar();
      this.bar = new cliProgress.SingleBar(
        {
          format: `epoch ${p.epoch + 1}/${p.epochs} [{bar}] {percentage}% | {value}/{total} examples | {rate} samples/s | ETA {eta}s`,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.epochSize, p.samplesInEpoch, { rate: 0 });
      this.epochShown = p.epoch;
    }
    this.bar.update(p.samplesInEpoch, { rate: Math.round(p.samplesPerSecond) });
  }

  stopBar(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

export function formatReport(job: JobStatus | JobSummary, workers: { name: string; backend: string }[]): string {
  const r = job.result;
  const lines = [`job ${job.id}: ${job.state}${job.reason ? ` (${job.reason})` : ''}`];
  if (r) {
    lines.push(
      `  test accuracy   ${pct(r.testAccuracy)}${r.testLoss === undefined ? '' : `  (loss ${r.testLoss.toFixed(4)})`}`,
    );
    if (r.testMetrics) lines.push(`  test metrics   ${formatMetrics('', r.testMetrics)}`);
    lines.push(`  training time   ${(r.wallTimeMs / 1000).toFixed(1)} s (${r.steps} steps)`);
    lines.push(`  throughput      ${Math.round(r.samplesPerSecond)} samples/s`);
  }
  const es = job.earlyStopping;
  const monitor = job.spec.earlyStopping?.monitor;
  if (es && monitor)
    lines.push(
      `  early stopping  ${monitor} best ${es.best === null ? '–' : es.best.toFixed(4)}${es.bestEpoch === undefined ? '' : ` at epoch ${es.bestEpoch + 1}`}, ${es.wait}/${job.spec.earlyStopping!.patience} epoch(s) without improvement${es.stoppedEpoch === undefined ? '' : `, stopped after epoch ${es.stoppedEpoch + 1}`}`,
    );
  if (workers.length) lines.push(`  workers         ${workers.map((w) => `${w.name} (${w.backend})`).join(', ')}`);
  lines.push(`  replica checks  ${job.replicas.checks} checks, ${job.replicas.divergences} divergences`);
  const audits = job.history.map((h) => h.audit);
  if (audits.length)
    lines.push(`  sample audit    ${audits.every((a) => a.ok) ? 'every example exactly once per epoch' : 'FAILED'}`);
  return lines.join('\n');
}
