#!/usr/bin/env node
import { Command, Option } from 'commander';
import { runForeground } from './app-process.js';
import { status, submit } from './commands/client-commands.js';
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
  .option('--data-dir <dir>', 'where logs are written', '.gradfleet')
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

program
  .command('submit')
  .description('submit a job spec (JSON) to a coordinator')
  .argument('<job.json>')
  .option('-c, --coordinator <url>', 'coordinator URL', defaultCoordinator)
  .option('--wait', 'follow the job until it ends')
  .action(async (file: string, opts) => {
    process.exitCode = await submit(file, opts);
  });

program
  .command('status')
  .description('show workers and jobs, or one job')
  .argument('[job]')
  .option('-c, --coordinator <url>', 'coordinator URL', defaultCoordinator)
  .option('--json', 'print JSON')
  .action(async (job: string | undefined, opts) => {
    process.exitCode = await status(job, opts);
  });

await program.parseAsync();
