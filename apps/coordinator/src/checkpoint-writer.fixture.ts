// Child process of checkpoint-store.spec.ts: writes checkpoints as fast as it can until
// it is killed. Checkpoint n has every weight equal to n and every optimizer value to -n.
import { CheckpointStore } from './checkpoint-store.js';

const dir = process.argv[2]!;
const store = new CheckpointStore(dir, 3);
const size = 64 * 1024;
let step = (await store.latest())?.step ?? 0;
process.stdout.write('started\n');
for (;;) {
  step++;
  await store.write(
    {
      step,
      epoch: 0,
      sampler: { epoch: 0, cursor: step, retry: [] },
      runner: { step },
      weights: new Float32Array(size).fill(step),
      optimizer: new Float32Array(size * 2).fill(-step),
      optimizerSpecs: [{ name: 'm', shape: [size * 2], dtype: 'float32' }],
    },
    { step },
  );
}
