/**
 * GPU training through the cluster: `mnist-cnn` and a ~25M-parameter CNN, on one GPU
 * (`gradfleet worker --gpus 0`) and on every GPU of the machine (`--gpus all`: one pinned
 * worker process per GPU), with `--backend tensorflow` (`@tensorflow/tfjs-node-gpu`, never
 * a silent fall back to the CPU); training samples per second, all GPUs against one.
 *
 * Runs only where a GPU can be used: without `nvidia-smi`, without GPUs, or where
 * `@tensorflow/tfjs-node-gpu` is missing or cannot load (CUDA, cuDNN), it prints that it
 * was skipped and why, writes nothing and exits 0. `npm run bench` runs it when
 * `nvidia-smi` lists a GPU, or when asked (`--gpu`, `--only=gpu`).
 *
 *   gpu.ts [--quick]
 */
import { execFileSync } from 'node:child_process';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  TFJS_NODE_GPU_REQUIREMENTS,
  explainTensorflowLoadError,
  selectBackend,
  type JobSpecInput,
} from '@gradfleet/core';
import { TestCluster, writeSmallMnist } from '../helpers/cluster.js';
import { QUICK, ROOT, saveResult, type Row } from './bench-lib.js';
import { reap, withDeadline } from './watchdog.js';

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';

/** The GPUs `nvidia-smi` lists, or why none can be used. */
function gpus(): { count: number; names: string[] } | { skip: string } {
  let out: string;
  try {
    out = execFileSync('nvidia-smi', ['--query-gpu=index,name', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return {
      skip:
        e.code === 'ENOENT'
          ? 'nvidia-smi is not installed (no NVIDIA driver)'
          : `nvidia-smi failed: ${e.message.split('\n')[0]}`,
    };
  }
  const names = out.split('\n').filter((l) => l.trim());
  return names.length ? { count: names.length, names } : { skip: 'nvidia-smi lists no GPU' };
}

/** Whether the GPU binding loads here, tried in a child process (a failed native load can abort it). */
function gpuBinding(): string | undefined {
  try {
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const tf = await import('${GPU_PACKAGE}'); await tf.ready(); console.log(tf.getBackend());`,
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    return undefined;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const message = (e.stderr || e.message).trim();
    if (/ERR_MODULE_NOT_FOUND|Cannot find (package|module)/.test(message))
      return `${GPU_PACKAGE} is not installed (npm install ${GPU_PACKAGE}; it needs ${TFJS_NODE_GPU_REQUIREMENTS})`;
    return explainTensorflowLoadError(GPU_PACKAGE, message.split('\n').find((l) => /error/i.test(l)) ?? message);
  }
}

/** ~25M weights: conv 3×3×32, pool, conv 3×3×64, dense 1984 on the 14×14×64 map (24.9M of them), dense 10. */
async function cnn25m(): Promise<Record<string, unknown>> {
  await selectBackend('cpu');
  const m = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 1984, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  const params = m.countParams();
  const topology = m.toJSON(null, false) as Record<string, unknown>;
  m.dispose();
  console.error(`gpu: the large CNN has ${(params / 1e6).toFixed(1)} M weights`);
  return topology;
}

/** One job on a fresh cluster whose only worker is `gradfleet worker --gpus <which>`; samples per second. */
async function run(which: string, workers: number, spec: JobSpecInput): Promise<number> {
  const cluster = new TestCluster();
  try {
    await cluster.startCoordinator();
    const supervisor = cluster.startWorker(['--backend', 'tensorflow', '--gpus', which, '--name', 'bench']);
    reap(() => supervisor.kill('SIGKILL'));
    const job = await cluster.client.submit({ ...spec, minWorkers: workers, maxWorkers: workers });
    const done = await withDeadline(
      `GPU job on --gpus ${which}`,
      cluster.client.waitForJob(job.id),
      QUICK ? 300_000 : 1_200_000,
      async () => JSON.stringify(await cluster.client.job(job.id)) + '\n' + cluster.log.slice(-4000),
    );
    if (done.state !== 'SUCCEEDED') throw new Error(`GPU bench job ${done.state}: ${done.reason}\n${cluster.log}`);
    return done.result!.samplesPerSecond;
  } finally {
    await cluster.stop();
  }
}

const found = gpus();
const skip = 'skip' in found ? found.skip : gpuBinding();
if (skip !== undefined) {
  console.error(`gpu: skipped: ${skip}`);
  process.exit(0);
}
const { count, names } = found as { count: number; names: string[] };
const { dataset } = await writeSmallMnist(QUICK ? 2048 : 20_480, 100);
const models: [string, JobSpecInput['model'], number][] = [
  ['mnist-cnn', 'mnist-cnn', 256],
  ['CNN, 25M weights', { topology: await cnn25m() }, 128],
];
const rows: Row[] = [];
for (const [label, model, batchSize] of models) {
  const spec: JobSpecInput = { model, dataset, epochs: 1, batchSize, validationSplit: 0 };
  console.error(`gpu: ${label}, 1 GPU...`);
  const one = await run('0', 1, spec);
  console.error(`gpu: ${label}, 1 GPU: ${one.toFixed(0)} samples/s; ${count} GPUs...`);
  const all = count > 1 ? await run('all', count, spec) : one;
  rows.push({
    case: `${label}, batch ${batchSize}: ${count} GPU(s) vs 1`,
    value: all,
    baseline: one,
    unit: 'samples/s',
    ratio: all / one,
    ...(count === 1 ? { note: '(one GPU on this machine: nothing to scale to)' } : {}),
  });
}
saveResult({
  name: 'gpu',
  title: `GPU workers through the cluster (${GPU_PACKAGE}, --gpus)`,
  baselineName: '1 GPU',
  rows,
  notes: [`GPUs: ${names.join('; ')}. One worker process per GPU (\`gradfleet worker --gpus\`), --backend tensorflow.`],
});
