#!/usr/bin/env node
import { Command, Option } from 'commander';
import { runForeground } from './app-process.js';
import { status } from './commands/client-commands.js';
import { cancel, download, jobs, logs, run, submit } from './commands/job-commands.js';
import { up } from './commands/up.js';

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
};
const defaultCoordinator = process.env['GRADFLEET_COORDINATOR'] ?? 'http://127.0.0.1:7070';

const program = new Command('gradfleet').description('Distributed data-parallel training for TensorFlow.js').showHelpAfterError();

program
  .command('up')
  .description('start a local cluster (coordinator + N workers) and train a job: the reference MNIST recipe by default')
  .option('-w, --workers <n>', 'worker processes', positiveInt('--workers'), 2)
  .option('-j, --job <file>', 'job spec JSON (default: the reference MNIST MLP recipe)')
  .option('--epochs <n>', 'override the number of epochs', positiveInt('--epochs'))
  .option('--batch-size <n>', 'override the global batch size', positiveInt('--batch-size'))
  .addOption(new Option('-b, --backend <name>', 'worker backend').choices(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'))
  .option('-p, --port <port>', 'coordinator port (0: any free port)', (v) => Number(v), 0)
  .option('--data-dir <dir>', 'where each run keeps its jobs, models and logs', '.gradfleet')
  .option('-v, --verbose', 'show coordinator and worker logs')
  .action(async (opts) => {
    process.exitCode = await up(opts);
  });

for (const app of ['coordinator', 'worker'] as const) {
  program
    .command(app)
    .description(app === 'coordinator' ? 'run a coordinator (see `gradfleet coordinator --help`)' : 'run a worker (see `gradfleet worker --help`)')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await runForeground(app, args);
    });
}

const coordinatorOption = () => new Option('-c, --coordinator <url>', 'coordinator URL (or GRADFLEET_COORDINATOR)').default(defaultCoordinator);
const tokenOption = () => new Option('-t, --token <token>', 'API token (or GRADFLEET_TOKEN)').env('GRADFLEET_TOKEN');
const caOption = () => new Option('--ca <file>', 'CA certificate (PEM) of an https:// coordinator (or GRADFLEET_CA)').env('GRADFLEET_CA');

program
  .command('submit')
  .description('submit a job spec (JSON) to a coordinator')
  .argument('<job.json>')
  .addOption(coordinatorOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .option('-d, --data <file>', 'upload a CSV or JSON Lines training set and use it as the dataset')
  .option('--test-data <file>', 'upload a test set of the same kind')
  .option('-f, --follow', 'follow the job until it ends (progress bar, log lines)')
  .option('--json', 'print JSON')
  .action(async (file: string, opts) => {
    process.exitCode = await run('submit', () => submit(file, opts));
  });

program
  .command('jobs')
  .description('list jobs')
  .addOption(coordinatorOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(new Option('-s, --state <state>', 'only jobs in this state').choices(['QUEUED', 'RUNNING', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled']))
  .option('--json', 'print JSON')
  .action(async (opts) => {
    process.exitCode = await run('jobs', () => jobs(opts));
  });

program
  .command('status')
  .description('the cluster at a glance (samples/s, workers, jobs), or one job in detail')
  .argument('[job]')
  .addOption(coordinatorOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .option('--json', 'print JSON')
  .action(async (job: string | undefined, opts) => {
    process.exitCode = await status(job, opts);
  });

program
  .command('logs')
  .description("a job's log; -f follows it live with a progress bar")
  .argument('<job>')
  .addOption(coordinatorOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .option('-f, --follow', 'follow until the job ends')
  .option('--json', 'print JSON lines')
  .action(async (job: string, opts) => {
    process.exitCode = await run('logs', () => logs(job, opts));
  });

program
  .command('cancel')
  .description('cancel a job (its workers stop within one step)')
  .argument('<job>')
  .addOption(coordinatorOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .option('--json', 'print JSON')
  .action(async (job: string, opts) => {
    process.exitCode = await run('cancel', () => cancel(job, opts));
  });

program
  .command('download')
  .description('download the trained model (model.json + weights.bin, for tf.loadLayersModel)')
  .argument('<job>')
  .addOption(coordinatorOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .option('-o, --out <dir>', 'directory to write (default ./model-<job>)')
  .option('--json', 'print JSON')
  .action(async (job: string, opts) => {
    process.exitCode = await run('download', () => download(job, opts));
  });

await program.parseAsync();
