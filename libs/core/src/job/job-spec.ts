import { z } from 'zod';
import { COMPRESSIONS } from '../compression/codec.js';
import { DEFAULT_BUCKET_BYTES } from '../math/bucket-plan.js';
import { EarlyStoppingSchema } from './early-stopping.js';
import { ClassWeightSchema, LabelColumnsSchema, MetricsSchema, defaultMetrics, targetsIssues } from './targets-spec.js';

/** Where the workers read a named dataset's chunks (`dataStore`). */
export const DATA_STORES = ['coordinator', 's3'] as const;

export const BUILTIN_MODELS = ['mnist-mlp', 'mnist-cnn'] as const;
export const OPTIMIZERS = ['adam', 'sgd', 'momentum', 'rmsprop', 'adagrad'] as const;
export const LOSSES = [
  'categoricalCrossentropy',
  'sparseCategoricalCrossentropy',
  'meanSquaredError',
  'meanAbsoluteError',
  'binaryCrossentropy',
] as const;

/**
 * What a dataset's label column holds: `class` an index into the model's outputs (one-hot
 * targets), `binary` 0 or 1 (one sigmoid output), `regression` a number (one output),
 * `multilabel` a vector of 0/1 per example (one sigmoid output per target).
 */
export const LABEL_KINDS = ['class', 'binary', 'regression', 'multilabel'] as const;

/** The label kinds each loss takes; a spec pairing others is refused on `loss`. */
export const LOSS_LABELS = {
  categoricalCrossentropy: ['class'],
  sparseCategoricalCrossentropy: ['class'],
  binaryCrossentropy: ['binary', 'multilabel'],
  meanSquaredError: LABEL_KINDS,
  meanAbsoluteError: LABEL_KINDS,
} as const satisfies Record<(typeof LOSSES)[number], readonly (typeof LABEL_KINDS)[number][]>;

/**
 * Accepts what `model.toJSON()` returns (a JSON string, or an object with
 * `toJSON(null, false)`) in place of `{ topology }`.
 */
function topologyShorthand(value: unknown): unknown {
  if (typeof value === 'string' && value.trimStart().startsWith('{')) {
    try {
      return { topology: JSON.parse(value) as unknown };
    } catch {
      return value;
    }
  }
  if (value && typeof value === 'object' && 'class_name' in value) return { topology: value };
  return value;
}

/** A job's model: a built-in name, or a TensorFlow.js Layers topology (`model.toJSON()`), never code. */
export const ModelSpecSchema = z.preprocess(
  topologyShorthand,
  z.union([z.enum(BUILTIN_MODELS), z.object({ topology: z.record(z.string(), z.unknown()) }).strict()]),
);

/**
 * Where a dataset file comes from: a path on the coordinator, an http(s) URL the
 * coordinator fetches once, or `upload:<id>` from `POST /v1/datasets`.
 */
const source = z.string().min(1).max(4096);

/** A named dataset's name (`gradfleet dataset ingest SRC --name N`): also a directory and object-key component. */
export const DATASET_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const DatasetNameSchema = z
  .string()
  .regex(DATASET_NAME_PATTERN, 'a dataset name is 1-64 of a-z 0-9 . _ - and starts with a letter or digit');

/**
 * A job's dataset: the built-in MNIST (shipped with every worker), a named chunked dataset
 * the coordinator holds (`docs/datasets.md`), or IDX, CSV or JSON Lines files that the
 * coordinator reads and serves to the workers.
 */
export const DatasetSpecSchema = z.union([
  z.literal('mnist'),
  z.object({ name: DatasetNameSchema }).strict(),
  z
    .object({
      idx: z
        .object({
          trainImages: source,
          trainLabels: source,
          /** A validation set of its own (instead of `validationSplit`). */
          validationImages: source.optional(),
          validationLabels: source.optional(),
          testImages: source.optional(),
          testLabels: source.optional(),
        })
        .strict()
        .refine((d) => (d.testImages === undefined) === (d.testLabels === undefined), {
          message: 'testImages and testLabels must be given together',
        })
        .refine((d) => (d.validationImages === undefined) === (d.validationLabels === undefined), {
          message: 'validationImages and validationLabels must be given together',
        }),
    })
    .strict(),
  z
    .object({
      csv: z
        .object({
          train: source,
          /** A validation file of the same form (instead of `validationSplit`). */
          validation: source.optional(),
          test: source.optional(),
          labelColumn: z.union([z.string().min(1).max(256), z.number().int().min(0)]).optional(),
          /** The target columns of a multilabel job: names, 0-based indices, or `{ last: K }`. */
          labelColumns: LabelColumnsSchema.optional(),
          header: z.boolean().optional(),
          featureScale: z.number().positive().finite().default(1),
        })
        .strict(),
    })
    .strict(),
  z
    .object({
      jsonl: z
        .object({
          train: source,
          validation: source.optional(),
          test: source.optional(),
          featureScale: z.number().positive().finite().default(1),
        })
        .strict(),
    })
    .strict(),
]);

const warmupSteps = z.number().int().min(0).max(10_000_000).default(0);
const decaySteps = z.number().int().min(1).max(10_000_000);

/**
 * Learning rate per step (docs/api.md gives the formulas): `learningRate` scaled by the
 * schedule, after an optional linear warmup of `warmupSteps` steps. Each replica computes
 * it from the step number, so all apply the same rate.
 */
export const LrScheduleSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('constant'), warmupSteps }).strict(),
  z
    .object({
      type: z.literal('step'),
      warmupSteps,
      /** Multiply the rate by `gamma` every `stepSize` steps. */
      stepSize: decaySteps,
      gamma: z.number().gt(0).max(1).default(0.1),
    })
    .strict(),
  z
    .object({
      type: z.literal('exponential'),
      warmupSteps,
      /** The rate falls by `decayRate` every `decaySteps` steps (continuously unless `staircase`). */
      decaySteps,
      decayRate: z.number().gt(0).max(1),
      staircase: z.boolean().default(false),
    })
    .strict(),
  z
    .object({
      type: z.literal('cosine'),
      warmupSteps,
      /** Half a cosine from `learningRate` down to `alpha * learningRate` over this many steps, then flat. */
      decaySteps,
      alpha: z.number().min(0).max(1).default(0),
    })
    .strict(),
]);

/** Which optimizers take each of `optimizerOptions` (`weightDecay`: every one, decoupled). */
export const OPTIMIZER_OPTION_USERS = {
  beta1: ['adam'],
  beta2: ['adam'],
  epsilon: ['adam', 'rmsprop'],
  momentum: ['momentum', 'rmsprop'],
  nesterov: ['momentum'],
  weightDecay: OPTIMIZERS,
} as const satisfies Record<string, readonly (typeof OPTIMIZERS)[number][]>;

/** Hyperparameters of the optimizer; an absent one keeps TensorFlow.js's default (docs/api.md). */
export const OptimizerOptionsSchema = z
  .object({
    beta1: z.number().min(0).lt(1).optional(),
    beta2: z.number().min(0).lt(1).optional(),
    epsilon: z.number().positive().max(1).optional(),
    momentum: z.number().min(0).lt(1).optional(),
    nesterov: z.boolean().optional(),
    /** Decoupled weight decay (AdamW, SGDW): `w ← w · (1 − lr_t · weightDecay)` before each update. */
    weightDecay: z.number().min(0).max(1).default(0),
  })
  .strict();

/** A job id (`POST /v1/jobs` answers it): a UUID. */
const JOB_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
/** An uploaded file (`POST /v1/datasets` answers `upload:<id>`). */
const uploadSource = z
  .string()
  .regex(
    /^upload:[A-Za-z0-9_-][A-Za-z0-9._-]{0,300}$/,
    'an upload source: upload:<id> as POST /v1/datasets answers it',
  );

/**
 * Where a fine-tuning job's starting weights come from (docs/api.md, "Fine-tuning"): the final
 * model of a SUCCEEDED job this token can see, or a TensorFlow.js artifact uploaded as two
 * files (`model.json`, and its weights: one `weights.bin`, or the manifest's files concatenated).
 */
export const InitialModelSchema = z.union([
  z.object({ job: z.string().regex(JOB_ID_PATTERN, 'a job id as POST /v1/jobs answers it') }).strict(),
  z.object({ modelJson: uploadSource, weights: uploadSource }).strict(),
]);

/** Layer names (`model.layers[i].name`) to train; every other layer is frozen. */
export const TrainableLayersSchema = z
  .array(z.string().min(1).max(256))
  .min(1, 'name at least one layer to train; leave trainableLayers out to train every layer')
  .max(10_000)
  .refine((names) => new Set(names).size === names.length, { message: 'a layer is named twice' });

/**
 * A training job. Every field but `model` and `dataset` has a default: the defaults are
 * the reference recipe (Adam 0.001, batch 32, 5 epochs, validation split 0.1).
 */
export const JobSpecSchema = z
  .object({
    name: z.string().min(1).max(200).optional(),
    model: ModelSpecSchema.default('mnist-mlp'),
    dataset: DatasetSpecSchema.default('mnist'),
    optimizer: z.enum(OPTIMIZERS).default('adam'),
    learningRate: z.number().positive().max(10).default(0.001),
    /** Per-step learning rate, relative to `learningRate`; the default keeps it constant. */
    lrSchedule: LrScheduleSchema.default({ type: 'constant', warmupSteps: 0 }),
    optimizerOptions: OptimizerOptionsSchema.default({ weightDecay: 0 }),
    /** Scale the averaged gradient down to this global L2 norm when above it (0: off); after `clipValue`. */
    clipNorm: z.number().min(0).max(1e6).default(0),
    /** Clamp every entry of the averaged gradient to [-clipValue, clipValue] (0: off). */
    clipValue: z.number().min(0).max(1e6).default(0),
    /**
     * `include`: the loss whose gradient a replica computes adds the model's regularizer
     * losses (`kernelRegularizer`, `biasRegularizer`), as `model.fit` does; `ignore` leaves them out.
     */
    regularizers: z.enum(['include', 'ignore']).default('include'),
    loss: z.enum(LOSSES).default('categoricalCrossentropy'),
    /** What the labels are (`LABEL_KINDS`); `binary` and `regression` need a model with one output unit. */
    labels: z.enum(LABEL_KINDS).default('class'),
    /** Evaluation metrics (validation and test); absent: `accuracy` (none for regression). */
    metrics: MetricsSchema.optional(),
    /** Per-class loss weights (Keras `class_weight`), for labels `class` and `binary`. */
    classWeight: ClassWeightSchema.optional(),
    epochs: z.number().int().min(1).max(10_000).default(5),
    /** Global batch size: the examples of one step, split among the workers. */
    batchSize: z.number().int().min(1).max(65_536).default(32),
    /**
     * Gradient accumulation: each worker computes its slice of a step in this many
     * micro-batches, one after another, and sends their sample-weighted mean. The step's
     * gradient (of all `batchSize` examples) is unchanged; a forward pass holds 1/k of the
     * slice's activations, so a large global batch fits on small workers.
     */
    accumulationSteps: z.number().int().min(1).max(4096).default(1),
    /**
     * Fraction of the training set (its tail, as `model.fit` does) held out for validation.
     * Default 0.1, or 0 when the dataset names a `validation` file (which then replaces it).
     */
    validationSplit: z.number().min(0).max(0.9).optional(),
    /**
     * Stop before `epochs` when a logged value stops improving (`tf.callbacks.earlyStopping`'s
     * rule, checked at each epoch end); the job then ends SUCCEEDED with the reason. Absent: off.
     */
    earlyStopping: EarlyStoppingSchema.optional(),
    /**
     * Dropout layers draw their masks from streams of (seed, step, layer, example index):
     * the same spec and seed give the same weights run after run, whatever the worker count.
     * Off: unseeded masks, as `model.fit` draws them.
     */
    seededDropout: z.boolean().default(false),
    /** Seeds the weight initialisation and the per-epoch shuffles. */
    seed: z.number().int().min(0).max(0xffffffff).default(42),
    /** Higher runs first; equal priorities run in submission order. */
    priority: z.number().int().min(-1000).max(1000).default(0),
    /** Checkpoint every this many steps (and at every epoch end); 0: epoch ends only. */
    checkpointEverySteps: z.number().int().min(0).max(10_000_000).default(500),
    shuffle: z.boolean().default(true),
    /**
     * Chunked datasets: chunks shuffled together (docs/datasets.md, "the shuffle scheme").
     * An epoch draws its chunks in a seeded order, this many at a time, and the examples of
     * each window in a seeded order; each worker trains on (and fetches) only the chunks it
     * owns. A dataset of at most this many chunks is shuffled globally, as in-memory data.
     */
    shuffleWindowChunks: z.number().int().min(1).max(1_000_000).default(64),
    /**
     * Where the workers read a named dataset's chunks: from the coordinator (`/v1/jobs/:id/data/chunks/...`),
     * or straight from the S3 bucket the dataset is stored in (`--store s3://...`), with their
     * own AWS credentials, so the coordinator's network carries the manifest only.
     */
    dataStore: z.enum(DATA_STORES).default('coordinator'),
    minWorkers: z.number().int().min(1).max(1024).default(1),
    maxWorkers: z.number().int().min(1).max(1024).default(64),
    /** Replica consistency check every this many steps (0 turns it off). */
    checksumEverySteps: z.number().int().min(0).max(1_000_000).default(100),
    /** A worker whose gradient has not arrived by then is dropped from the job, in ms. */
    stepTimeoutMs: z.number().int().min(100).max(3_600_000).default(120_000),
    /**
     * Straggler deadline: once some gradients are in, the step waits at most this many
     * times the recent step time (but at least `stragglerMinDeadlineMs`) for the others;
     * late slices go back to the pool and the late worker stays. 0 turns it off.
     */
    stragglerDeadlineFactor: z.number().min(0).max(1000).default(4),
    stragglerMinDeadlineMs: z.number().int().min(1).max(3_600_000).default(2_000),
    /**
     * How a step's batch is split among the workers: `equal` shares (reproducible run after
     * run), or `throughput`: shares proportional to each worker's measured examples per ms of
     * compute, for fleets of unequal machines (the slices then depend on timing, so runs are
     * no longer bit-identical to each other).
     */
    sliceBalance: z.enum(['equal', 'throughput']).default('equal'),
    /** Backup workers: finish a step once all but this many gradients are in (their slices go back to the pool). */
    backupWorkers: z.number().int().min(0).max(1023).default(0),
    /** How gradients travel: raw float32, fp16, block-scaled int8, or top-k with error feedback (docs/protocol.md). */
    compression: z.enum(COMPRESSIONS).default('none'),
    /** Fraction of each bucket's entries top-k sends (only with `compression: 'topk'`). */
    topkRatio: z.number().gt(0).max(0.5).default(0.01),
    /** Gradients travel in buckets of this many bytes (float32 count x 4) so adding and sending overlap. */
    bucketBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(DEFAULT_BUCKET_BYTES),
    /** Start from these weights instead of the seeded initialisation (fine-tuning); absent: seeded. */
    initialModel: InitialModelSchema.optional(),
    /** Train only these layers (by name); the others keep their weights (`layer.trainable = false`). Absent: all. */
    trainableLayers: TrainableLayersSchema.optional(),
    /** Evaluate the test split after every epoch (recorded in the epoch history), not only at the end. */
    testEveryEpoch: z.boolean().default(false),
  })
  .strict()
  .refine((s) => s.maxWorkers >= s.minWorkers, { message: 'maxWorkers must be >= minWorkers', path: ['maxWorkers'] })
  .superRefine((s, ctx) => {
    if (s.accumulationSteps > s.batchSize)
      ctx.addIssue({
        code: 'custom',
        path: ['accumulationSteps'],
        message: `${s.accumulationSteps} micro-batches do not fit a batch of ${s.batchSize} examples: at most batchSize`,
      });
    const file = hasValidationFile(s.dataset);
    if (file && s.validationSplit !== undefined && s.validationSplit > 0)
      ctx.addIssue({
        code: 'custom',
        path: ['validationSplit'],
        message: `the dataset names a validation file; validationSplit ${s.validationSplit} would hold out training examples as well: remove it or set 0`,
      });
    if (s.earlyStopping?.monitor.startsWith('val_') && s.validationSplit === 0 && !file)
      ctx.addIssue({
        code: 'custom',
        path: ['earlyStopping', 'monitor'],
        message: `'${s.earlyStopping.monitor}' needs validation data: set validationSplit above 0, or monitor '${s.earlyStopping.monitor.slice(4)}'`,
      });
    if (s.dataStore === 's3' && !(typeof s.dataset === 'object' && 'name' in s.dataset))
      ctx.addIssue({
        code: 'custom',
        path: ['dataStore'],
        message:
          "'s3' reads the chunks of a named dataset stored in S3 (dataset: { name }); this dataset is served by the coordinator: remove dataStore or set 'coordinator'",
      });
    if (s.dataset === 'mnist' && s.labels !== 'class')
      ctx.addIssue({ code: 'custom', path: ['labels'], message: "the built-in 'mnist' dataset has labels 'class'" });
    const takes: readonly string[] = LOSS_LABELS[s.loss];
    if (!takes.includes(s.labels)) {
      const fits = LOSSES.filter((l) => (LOSS_LABELS[l] as readonly string[]).includes(s.labels));
      ctx.addIssue({
        code: 'custom',
        path: ['loss'],
        message: `'${s.loss}' needs labels ${takes.map((t) => `'${t}'`).join(' or ')}; with labels '${s.labels}' use ${fits.map((l) => `'${l}'`).join(' or ')}`,
      });
    }
    for (const issue of targetsIssues(s)) ctx.addIssue({ code: 'custom', ...issue });
    for (const [option, users] of Object.entries(OPTIMIZER_OPTION_USERS)) {
      const value = s.optimizerOptions[option as keyof typeof OPTIMIZER_OPTION_USERS];
      if (value === undefined || (users as readonly string[]).includes(s.optimizer)) continue;
      ctx.addIssue({
        code: 'custom',
        path: ['optimizerOptions', option],
        message: `applies to optimizer ${users.map((u) => `'${u}'`).join(' or ')}, not '${s.optimizer}': remove it or change the optimizer`,
      });
    }
  })
  .transform((s) => ({
    ...s,
    validationSplit: s.validationSplit ?? (hasValidationFile(s.dataset) ? 0 : 0.1),
    metrics: s.metrics ?? defaultMetrics(s.labels),
  }));

/** Whether a dataset names a validation file of its own. */
export function hasValidationFile(dataset: z.output<typeof DatasetSpecSchema>): boolean {
  if (dataset === 'mnist' || 'name' in dataset) return false; // named datasets: no validation file yet
  if ('idx' in dataset) return dataset.idx.validationImages !== undefined;
  if ('csv' in dataset) return dataset.csv.validation !== undefined;
  return dataset.jsonl.validation !== undefined;
}

export type JobSpec = z.output<typeof JobSpecSchema>;
export type JobSpecInput = z.input<typeof JobSpecSchema>;
export type LabelKind = (typeof LABEL_KINDS)[number];
export type DataStore = (typeof DATA_STORES)[number];
export type LrSchedule = z.output<typeof LrScheduleSchema>;
export type OptimizerOptions = z.output<typeof OptimizerOptionsSchema>;
export type ModelSpec = z.output<typeof ModelSpecSchema>;
export type InitialModel = z.output<typeof InitialModelSchema>;
export type DatasetSpec = z.output<typeof DatasetSpecSchema>;

export interface FieldIssue {
  /** Dotted path of the offending field, e.g. `model.topology` or `epochs`. */
  path: string;
  message: string;
}

/** A job spec that failed validation; `issues` name each field and what is wrong. */
export class InvalidJobSpecError extends Error {
  readonly code = 'INVALID_JOB_SPEC';
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    super(`invalid job spec: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
    this.name = 'InvalidJobSpecError';
    this.issues = issues;
  }
}

/** Validates a job spec and fills its defaults. Throws InvalidJobSpecError. */
export function parseJobSpec(input: unknown): JobSpec {
  const result = JobSpecSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  throw new InvalidJobSpecError(
    result.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
  );
}
