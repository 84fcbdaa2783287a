import type { CheckpointInfo } from '@gradfleet/core/client';
import { describe, expect, it } from 'vitest';
import { checkpointTable } from './checkpoint-commands.js';

describe('gradfleet checkpoints: the table', () => {
  it('names each kept checkpoint by step, where it was taken, its size and the last epoch’s results', () => {
    const list: CheckpointInfo[] = [
      {
        step: 10,
        epoch: 1,
        epochEnd: true,
        samplesInEpoch: 0,
        time: '2026-12-02T01:02:03.456Z',
        bytes: 3_000_000,
        weightsBytes: 1_000_000,
        weightsSha256: 'ab',
        lastEpoch: {
          epoch: 0,
          loss: 0.51234,
          accuracy: 0.8,
          valLoss: 0.4,
          valAccuracy: 0.91666,
          samples: 480,
          steps: 10,
          durationMs: 1,
          audit: { epoch: 0, ok: true, seen: 480, missing: 0, duplicated: 0 },
        },
        earlyStopping: { best: 0.4, wait: 0, bestEpoch: 0 },
      },
      {
        step: 14,
        epoch: 1,
        epochEnd: false,
        samplesInEpoch: 192,
        time: '2026-12-02T01:02:04.000Z',
        bytes: 3_000_000,
        weightsBytes: 1_000_000,
        weightsSha256: 'cd',
      },
    ];
    expect(checkpointTable(list).split('\n')).toEqual([
      'STEP  TAKEN                     TIME                 SIZE    LOSS    VAL_LOSS  VAL_ACC  BEST',
      '10    end of epoch 1            2026-12-02 01:02:03  3.0 MB  0.5123  0.4000    91.67%   epoch 1',
      '14    epoch 2, 192 examples in  2026-12-02 01:02:04  3.0 MB  -       -         -        -',
    ]);
  });
});
