import { Gauge, type Registry } from 'prom-client';
import { queryGpus } from './nvidia-smi.js';

/**
 * Utilisation and memory of the GPU a worker is pinned to, read from `nvidia-smi` at each
 * scrape, under the DCGM exporter's names and labels so dashboards built for it work.
 */
export function registerGpuMetrics(registry: Registry, index: number): void {
  const labelNames = ['gpu', 'UUID', 'modelName'];
  let last: Promise<Awaited<ReturnType<typeof queryGpus>>[number] | undefined> | undefined;
  const read = () =>
    (last ??= queryGpus(index)
      .then(
        (g) => g[0],
        () => undefined,
      )
      .finally(() => setTimeout(() => (last = undefined), 1000).unref()));
  const gauge = (
    name: string,
    help: string,
    value: (g: NonNullable<Awaited<ReturnType<typeof read>>>) => number | undefined,
  ) => {
    const g: Gauge = new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const gpu = await read();
        g.reset();
        const v = gpu && value(gpu);
        if (gpu && v !== undefined) g.set({ gpu: String(gpu.index), UUID: gpu.uuid, modelName: gpu.name }, v);
      },
    });
  };
  gauge('DCGM_FI_DEV_GPU_UTIL', 'GPU utilisation (in %), from nvidia-smi.', (g) => g.utilizationPercent);
  gauge('DCGM_FI_DEV_FB_USED', 'Framebuffer memory used (in MiB), from nvidia-smi.', (g) => g.memoryUsedMiB);
  gauge('DCGM_FI_DEV_FB_FREE', 'Framebuffer memory free (in MiB), from nvidia-smi.', (g) => g.memoryFreeMiB);
}
