import type { JobSpecInput, JobStatus } from '@gradfleet/core';
import { TestCluster } from '../helpers/cluster.js';

export interface ClusterRun {
  status: JobStatus;
  /** The coordinator's /metrics text after the job. */
  metrics: string;
}

/** Runs one job on a fresh local cluster of `workers` real wasm worker processes. */
export async function clusterJob(workers: number, spec: JobSpecInput): Promise<ClusterRun> {
  const cluster = new TestCluster();
  try {
    await cluster.startCoordinator();
    await cluster.startWorkers(workers);
    const job = await cluster.client.submit({ ...spec, minWorkers: workers, maxWorkers: workers });
    const status = await cluster.client.waitForJob(job.id);
    if (status.state !== 'SUCCEEDED') throw new Error(`bench job ${status.state}: ${status.reason}\n${cluster.log}`);
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    return { status, metrics };
  } finally {
    await cluster.stop();
  }
}

/** Sum of a counter's samples in Prometheus text (all label sets). */
export function counterTotal(metrics: string, name: string): number {
  let total = 0;
  for (const line of metrics.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}
