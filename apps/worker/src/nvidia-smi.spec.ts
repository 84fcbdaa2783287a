import { describe, expect, it } from 'vitest';
import { GpuDiscoveryError, parseGpuCsv, selectGpus } from './nvidia-smi.js';

const csv = `0, GPU-aaa, NVIDIA H200, 143771, 1203, 142568, 37
1, GPU-bbb, NVIDIA H200, 143771, [N/A], [N/A], [N/A]
3, GPU-ddd, NVIDIA H200, 143771, 0, 143771, 0
`;

describe('nvidia-smi parsing and --gpus selection', () => {
  it('parses --query-gpu CSV, treating [N/A] as absent', () => {
    const gpus = parseGpuCsv(csv);
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 3]);
    expect(gpus[0]).toEqual({
      index: 0,
      uuid: 'GPU-aaa',
      name: 'NVIDIA H200',
      memoryTotalMiB: 143771,
      memoryUsedMiB: 1203,
      memoryFreeMiB: 142568,
      utilizationPercent: 37,
    });
    expect(gpus[1]!.utilizationPercent).toBeUndefined();
    expect(() => parseGpuCsv('garbage')).toThrow(GpuDiscoveryError);
  });

  it('selects all, or the listed indices, and names the installed ones when one is missing', () => {
    const gpus = parseGpuCsv(csv);
    expect(selectGpus('all', gpus)).toHaveLength(3);
    expect(selectGpus('3,0', gpus).map((g) => g.index)).toEqual([3, 0]);
    expect(() => selectGpus('0,2', gpus)).toThrow('--gpus 0,2: no GPU 2 (installed: 0, 1, 3)');
    expect(() => selectGpus('x', gpus)).toThrow(GpuDiscoveryError);
    expect(() => selectGpus('all', [])).toThrow('nvidia-smi reports no GPUs');
  });
});
