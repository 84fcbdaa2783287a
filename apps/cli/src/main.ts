#!/usr/bin/env node
import { Command, Option } from 'commander';
import { runForeground } from './app-process.js';
import { status } from './commands/client-commands.js';
import { checkpoints, download } from './commands/checkpoint-commands.js';
import { cancel, jobs, logs, run, submit } from './commands/job-commands.js';
import { ingest, listDatasets, removeDataset } from './commands/dataset-commands.js';
import { up } from './commands/up.js';

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
};
const nonNegativeInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new Error(`${name} must be an integer 0..2^32-1, got ${v}`);
  return n;
};
const nonNegativeStep = (v: string) => {
  if (!/^\d{1,15}$/.test(v))
    throw new Error(`--checkpoint must be a step number (gradfleet checkpoints JOB lists them), got ${v}`);
  return Number(v);
};
const defaultCoordinator = process.env['GRADFLEET_COORDINATOR'] ?? 'http://127.0.0.1:7070';

const program = new Command('gradfleet')
  .description('Distributed data-parallel training for TensorFlow.js')
  .showHelpAfterError();

program
  .command('up')
  .description('start a local cluster (coordinator + N workers) and train a job: the reference MNIST recipe by default')
  .option('-w, --workers <n>', 'worker processes', positiveInt('--workers'), 2)
  .option('-j, --job <file>', 'job spec JSON (default: the reference MNIST MLP recipe)')
  .option('--epochs <n>', 'override the number of epochs', positiveInt('--epochs'))
  .option('--batch-size <n>', 'override the global batch size', positiveInt('--batch-size'))
  .option(
    '--seed <n>',
    'a reproducible run: seeds the initialisation, the shuffles and the dropout masks (seededDropout)',
    nonNegativeInt('--seed'),
  )
  .addOption(
    new Option('-b, --backend <name>', 'worker backend').choices(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
  )
  .option('-p, --port <port>', 'coordinator port (0: any free port)', (v) => Number(v), 0)
  .option('--data-dir <dir>', 'where each run keeps its jobs, models and logs', '.gradfleet')
  .option('-v, --verbose', 'show coordinator and worker logs')
  .action(async (opts) => {
    process.exitCode = await up(opts);
  });

for (const app of ['coordinator', 'worker'] as const) {
  program
    .command(app)
    .description(
      app === 'coordinator'
        ? 'run a coordinator (see `gradfleet coordinator --help`)'
        : 'run a worker (see `gradfleet worker --help`)',
    )
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await runForeground(app, args);
    });
}

const coordinatorOption = () =>
  new Option('-c, --coordinator <url>', 'coordinator URL (or GRADFLEET_COORDINATOR)').default(defaultCoordinator);
const tokenOption = () => new Option('-t, --token <token>', 'API token (or GRADFLEET_TOKEN)').env('GRADFLEET_TOKEN');
const caOption = () =>
  new Option('--ca <file>', 'CA certificate (PEM) of an https:// coordinator (or GRADFLEET_CA)').env('GRADFLEET_CA');

/** A command that talks to a coordinator: --coordinator, --token, --ca and --json (with `jsonHelp`). */
const clientCommand = (name: string, description: string, jsonHelp = 'print JSON') =>
  program
    .command(name)
    .description(description)
    .addOption(coordinatorOption())
    .addOption(tokenOption())
    .addOption(caOption())
    .option('--json', jsonHelp);

clientCommand('submit', 'submit a job spec (JSON) to a coordinator')
  .argument('<job.json>')
  .option('-d, --data <file>', 'upload a CSV or JSON Lines training set and use it as the dataset')
  .option('--validation-data <file>', 'upload a validation set of the same kind (replaces validationSplit)')
  .option('--test-data <file>', 'upload a test set of the same kind')
  .option('--initial-model <job>', 'fine-tune: start from the final weights of this SUCCEEDED job')
  .option(
    '--initial-model-dir <dir>',
    'fine-tune: upload the TensorFlow.js model in DIR (model.json + weights) and start from it',
  )
  .option('-f, --follow', 'follow the job until it ends (progress bar, log lines)')
  .action(async (file: string, opts) => {
    process.exitCode = await run('submit', () => submit(file, opts));
  });

clientCommand('jobs', 'list jobs')
  .addOption(
    new Option('-s, --state <state>', 'only jobs in this state').choices([
      'QUEUED',
      'RUNNING',
      'PAUSED',
      'SUCCEEDED',
      'FAILED',
      'CANCELLED',
      'queued',
      'running',
      'paused',
      'succeeded',
      'failed',
      'cancelled',
    ]),
  )
  .action(async (opts) => {
    process.exitCode = await run('jobs', () => jobs(opts));
  });

clientCommand('status', 'the cluster at a glance (samples/s, workers, jobs), or one job in detail')
  .argument('[job]')
  .action(async (job: string | undefined, opts) => {
    process.exitCode = await status(job, opts);
  });

clientCommand('logs', "a job's log; -f follows it live with a progress bar", 'print JSON lines')
  .argument('<job>')
  .option('-f, --follow', 'follow until the job ends')
  .action(async (job: string, opts) => {
    process.exitCode = await run('logs', () => logs(job, opts));
  });

clientCommand('cancel', 'cancel a job (its workers stop within one step)')
  .argument('<job>')
  .action(async (job: string, opts) => {
    process.exitCode = await run('cancel', () => cancel(job, opts));
  });

clientCommand('checkpoints', "list a job's kept checkpoints (step, epoch, time, size, results)")
  .argument('<job>')
  .action(async (job: string, opts) => {
    process.exitCode = await run('checkpoints', () => checkpoints(job, opts));
  });

clientCommand('download', 'download the trained model (model.json + weights.bin, for tf.loadLayersModel)')
  .argument('<job>')
  .option('-o, --out <dir>', 'directory to write (default ./model-<job>, or ./model-<job>-step-<step>)')
  .option(
    '--checkpoint <step>',
    'the weights of the kept checkpoint at this step instead (gradfleet checkpoints JOB lists them)',
    nonNegativeStep,
  )
  .action(async (job: string, opts) => {
    process.exitCode = await run('download', () => download(job, opts));
  });

const dataset = program.command('dataset').description('named chunked datasets on the coordinator (docs/datasets.md)');
const datasetCommand = (name: string, description: string) =>
  dataset
    .command(name)
    .description(description)
    .addOption(coordinatorOption())
    .addOption(tokenOption())
    .addOption(caOption())
    .option('--json', 'print JSON');

datasetCommand(
  'ingest',
  'ingest a CSV, JSON Lines, IDX file, image folder, s3:// source or existing chunked dataset as a named chunked dataset',
)
  .argument(
    '<src>',
    'a path on the coordinator, an s3:// or http(s) URL, upload:<id>, dataset:NAME (copy a named dataset), a chunked dataset directory or s3:// prefix (its manifest.json, or --kind chunked), or a JSON source object',
  )
  .requiredOption('--name <name>', 'the dataset name jobs use: dataset: { "name": ... }')
  .addOption(
    new Option('--kind <kind>', 'what SRC is (guessed from its name)').choices([
      'csv',
      'jsonl',
      'idx',
      'images',
      'chunked',
    ]),
  )
  .option('--test <src>', 'a test split of the same kind')
  .option('--idx-labels <file>', 'IDX: the labels file of SRC')
  .option('--test-labels <file>', 'IDX: the labels file of --test')
  .addOption(new Option('--labels <kind>', 'what the labels are').choices(['class', 'binary', 'regression']))
  .option('--label-column <col>', 'CSV: the label column (name or 0-based index)')
  .option('--size <HxW>', 'image folder: resize every image to H x W')
  .option('--channels <n>', 'image folder: 1 (grey) or 3 (RGB)', '3')
  .option('--store <s3url>', 'keep the chunks in s3://bucket/prefix instead of the coordinator')
  .option('--chunk-bytes <n>', 'target bytes per chunk', (v) => Number(v))
  .option('--no-wait', 'return once the ingestion started')
  .action(async (src: string, opts) => {
    process.exitCode = await run('dataset ingest', () => ingest(src, opts));
  });

datasetCommand('ls', 'list named datasets').action(async (opts) => {
  process.exitCode = await run('dataset ls', () => listDatasets(opts));
});

datasetCommand('rm', 'remove a named dataset (jobs already running keep their data)')
  .argument('<name>')
  .action(async (name: string, opts) => {
    process.exitCode = await run('dataset rm', () => removeDataset(name, opts));
  });

// A token given as a flag is readable by every user of the machine (ps, /proc/PID/cmdline).
program.hook('preAction', (_program, action) => {
  if (action.getOptionValueSource('token') === 'cli')
    process.stderr.write(
      'gradfleet: warning: --token on the command line is visible to every user of this machine (ps); set GRADFLEET_TOKEN instead\n',
    );
});
await program.parseAsync();
