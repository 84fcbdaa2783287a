import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One GPU as `nvidia-smi --query-gpu` reports it (memory in MiB, utilisation in %). */
export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMiB: number;
  memoryUsedMiB?: number;
  memoryFreeMiB?: number;
  utilizationPercent?: number;
}

/** Thrown when `nvidia-smi` is missing or fails: the message says what to do. */
export class GpuDiscoveryError extends Error {
  readonly code = 'GPU_DISCOVERY_FAILED';
}

const FIELDS = ['index', 'uuid', 'name', 'memory.total', 'memory.used', 'memory.free', 'utilization.gpu'] as const;

/** Parses `--format=csv,noheader,nounits` output of the FIELDS query. */
export function parseGpuCsv(csv: string): GpuInfo[] {
  const num = (v: string | undefined) => (v === undefined || !/^\d+(\.\d+)?$/.test(v) ? undefined : Number(v)); // "[N/A]" -> undefined
  return csv
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((line) => {
      const [index, uuid, name, total, used, free, util] = line.split(',').map((c) => c.trim());
      const idx = num(index);
      if (idx === undefined || !uuid || !name)
        throw new GpuDiscoveryError(`unexpected nvidia-smi output line: ${line}`);
      const gpu: GpuInfo = { index: idx, uuid, name, memoryTotalMiB: num(total) ?? 0 };
      if (num(used) !== undefined) gpu.memoryUsedMiB = num(used)!;
      if (num(free) !== undefined) gpu.memoryFreeMiB = num(free)!;
      if (num(util) !== undefined) gpu.utilizationPercent = num(util)!;
      return gpu;
    });
}

/** The GPUs `nvidia-smi` sees (only `index` when given). */
export async function queryGpus(index?: number): Promise<GpuInfo[]> {
  const args = [
    `--query-gpu=${FIELDS.join(',')}`,
    '--format=csv,noheader,nounits',
    ...(index === undefined ? [] : ['-i', String(index)]),
  ];
  try {
    const { stdout } = await run('nvidia-smi', args, { timeout: 10_000 });
    return parseGpuCsv(stdout);
  } catch (err) {
    if (err instanceof GpuDiscoveryError) throw err;
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new GpuDiscoveryError(
        'nvidia-smi not found on PATH: install the NVIDIA driver (it ships nvidia-smi), or run without --gpus',
      );
    throw new GpuDiscoveryError(`nvidia-smi failed: ${(e.stderr || e.message).trim().split('\n')[0]}`);
  }
}

/** Which GPUs `--gpus all|0,1,3` means, checked against what is installed. */
export function selectGpus(spec: string, installed: GpuInfo[]): GpuInfo[] {
  if (installed.length === 0) throw new GpuDiscoveryError('nvidia-smi reports no GPUs');
  if (spec === 'all') return installed;
  const wanted = spec.split(',').map((s) => s.trim());
  return wanted.map((w) => {
    const gpu = /^\d+$/.test(w) ? installed.find((g) => g.index === Number(w)) : undefined;
    if (!gpu)
      throw new GpuDiscoveryError(
        `--gpus ${spec}: no GPU ${w} (installed: ${installed.map((g) => g.index).join(', ')})`,
      );
    return gpu;
  });
}
