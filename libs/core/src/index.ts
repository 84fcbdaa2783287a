// Public API of @gradfleet/core: named exports only, so what the package promises is visible here.
// Programs that only talk to a coordinator import `@gradfleet/core/client` (no TensorFlow.js);
// reducer shards import `@gradfleet/core/dataplane`.
export {
  ALLOCATOR_ENV,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  MAX_CONTROL_MESSAGE_BYTES,
  MAX_HEADER_BYTES,
  MAX_OPTIMIZER_VALUES_PER_WEIGHT,
  MAX_STATE_BYTES,
  MAX_PREFETCH_CHUNKS,
  MAX_STATE_CHUNK_BYTES,
  PROTOCOL_VERSION,
  STATE_SEND_WINDOW,
  WORKER_WS_PATH,
} from './protocol/constants.js';
export { CLOSE_CODES, errorCodeForClose, ProtocolError, type ProtocolErrorCode } from './protocol/protocol-error.js';
export {
  allocFrame,
  type DecodedFrame,
  decodeFrame,
  encodeFrame,
  float32View,
  framePrefix,
  FrameWriter,
  uint32View,
} from './protocol/frame.js';
export {
  type CoordinatorMessage,
  type CoordinatorMessageInput,
  CoordinatorMessageSchema,
  type CoordinatorMessageType,
  decodeCoordinatorMessage,
  decodeWorkerMessage,
  encodeMessage,
  type Received,
  type RemoteSplit,
  RemoteSplitSchema,
  type S3Location,
  S3LocationSchema,
  type TensorSpec,
  TensorSpecSchema,
  type WorkerMessage,
  type WorkerMessageInput,
  WorkerMessageSchema,
  type WorkerMessageType,
} from './protocol/messages.js';
export { printable } from './protocol/printable.js';
export {
  ArrayStateSource,
  chunkCount,
  chunkRange,
  MemoryStateSink,
  sendStateChunks,
  stateChunkBytes,
  type StateHeader,
  StateHeaderSchema,
  StateReceiver,
  type StateReceiverOptions,
  type StateSink,
  type StateSource,
  stateValues,
} from './protocol/state-transfer.js';
export { epochPermutation, mulberry32 } from './sampler/prng.js';
export {
  type ChunkWindowOptions,
  type ChunkWindows,
  chunkWindows,
  splitByChunkOwner,
} from './sampler/chunk-windows.js';
export {
  type EpochAudit,
  EpochSampler,
  type SamplerOptions,
  type SamplerState,
  splitBatch,
} from './sampler/epoch-sampler.js';
export { maxRelativeDifference, weightsChecksum } from './math/gradient-math.js';
export { GradientReducer } from './math/gradient-reducer.js';
export { BUCKET_GRANULE_FLOATS, BucketPlan, DEFAULT_BUCKET_BYTES } from './math/bucket-plan.js';
export { Accumulator, STAGE_FLOATS } from './math/accumulator.js';
export { clipGradient } from './math/gradient-clip.js';
export { bucketCodec, type BucketCodec, type Compression, COMPRESSIONS } from './compression/codec.js';
export { decodeHalves } from './compression/fp16.js';
export { decodeInt8 } from './compression/int8.js';
export {
  BUILTIN_MODELS,
  DATA_STORES,
  type DataStore,
  DATASET_NAME_PATTERN,
  DatasetNameSchema,
  type DatasetSpec,
  DatasetSpecSchema,
  type FieldIssue,
  type InitialModel,
  InitialModelSchema,
  InvalidJobSpecError,
  type JobSpec,
  type JobSpecInput,
  JobSpecSchema,
  LABEL_KINDS,
  type LabelKind,
  LOSS_LABELS,
  LOSSES,
  type LrSchedule,
  LrScheduleSchema,
  type ModelSpec,
  ModelSpecSchema,
  OPTIMIZER_OPTION_USERS,
  type OptimizerOptions,
  OptimizerOptionsSchema,
  OPTIMIZERS,
  parseJobSpec,
  TrainableLayersSchema,
} from './job/job-spec.js';
export {
  ClassWeightSchema,
  type ClassWeight,
  classWeightIssues,
  classWeightVector,
  DEFAULT_TOP_K,
  defaultMetrics,
  LabelColumnsSchema,
  type LabelColumns,
  METRIC_LABELS,
  METRIC_NAMES,
  type Metric,
  type MetricName,
  MetricSchema,
  metricKey,
  metricParts,
} from './job/targets-spec.js';
export {
  EARLY_STOPPING_MONITORS,
  type EarlyStoppingDecision,
  type EarlyStoppingMonitor,
  type EarlyStoppingOptions,
  EarlyStoppingSchema,
  type EarlyStoppingState,
  EarlyStopper,
  type EpochLogs,
} from './job/early-stopping.js';
export {
  type EpochResult,
  JOB_STATES,
  type JobEvent,
  type JobProgress,
  type JobResult,
  type JobState,
  type JobStatus,
  type JobSummary,
  summarizeJob,
  type ReplicaReport,
  type StepTiming,
  TERMINAL_STATES,
  type WorkerInfo,
  type WorkerStats,
} from './job/job-status.js';
export type { CheckpointInfo } from './job/checkpoint-info.js';
export { assertTransition, canTransition, IllegalTransitionError, JOB_TRANSITIONS } from './job/job-lifecycle.js';
export { bucketDigest, chainDigest, UpdateStreamHash } from './replica/update-stream-hash.js';
export {
  buildModel,
  createOptimizer,
  flattenWeights,
  InvalidModelError,
  loadFlatWeights,
  lossFunction,
  optimizerLearningRate,
  setOptimizerLearningRate,
  trainableParameterCount,
  weightLayout,
} from './model/model-factory.js';
export { correctCount, exampleWeights, metricSumCount, metricSums, metricValues } from './model/eval-metrics.js';
export { learningRateAt } from './model/lr-schedule.js';
export { applyTrainableLayers } from './model/trainable-layers.js';
export { dropoutMask, seedDropout, type SeededDropout } from './model/seeded-dropout.js';
export { MovingStatsCapture, movingStatsCount } from './model/moving-stats.js';
export { type IdxArray, InvalidDataError, MAX_IDX_BYTES, MAX_LABEL } from './data/idx.js';
export {
  checkLabels,
  type Dataset,
  type DataSplit,
  type TrainingData,
  type FileReader,
  gatherBatch,
  type IdxFiles,
  loadDataset,
  mnistDirectory,
  targetWidth,
  trainingSize,
} from './data/dataset.js';
export {
  type BackendName,
  type BackendPreference,
  type BackendSelection,
  BackendUnavailableError,
  selectBackend,
  type SelectBackendOptions,
} from './backend/select-backend.js';
export { explainTensorflowLoadError, TFJS_NODE_GPU_REQUIREMENTS } from './backend/tensorflow-requirements.js';
export { registerWasmConv2DBackpropFilter } from './backend/wasm-conv2d-backprop-filter.js';
export { ApiError, GradfleetClient, type GradfleetClientOptions } from './client/gradfleet-client.js';
export { createLogger, type Logger } from './logger.js';
export { decodeShard, encodeShard, sha256Hex, type ShardHeader } from './data/data-shard.js';
export { type CsvOptions, parseCsv, type ParsedSplit, parseJsonl } from './data/text-datasets.js';
export { ALLOWED_CLASSES, checkTopology, MAX_LAYER_DIMENSION } from './model/topology-policy.js';
export { MAX_TOPOLOGY_DEPTH, MAX_TOPOLOGY_NODES } from './model/normalize-topology.js';
export { countTopologyParams } from './model/param-count.js';
export { httpFetch } from './client/http-fetch.js';
export {
  CHUNK_HEADER_BYTES,
  CHUNK_MAGIC,
  MAX_CHUNK_BYTES,
  chunkBytes,
  decodeChunk,
  featureBytes,
  writeChunkHeader,
  type DecodedChunk,
  type FeatureDtype,
  type LabelDtype,
} from './data/chunk-format.js';
export { DatasetChunkError, type DatasetChunkErrorCode } from './data/dataset-chunk-error.js';
export {
  ChunkEntrySchema,
  DatasetManifestSchema,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  MAX_CHUNKS,
  MAX_MANIFEST_BYTES,
  checkManifest,
  chunkName,
  featureSizeOf,
  locateExample,
  parseManifest,
  type ChunkEntry,
  type DatasetManifest,
  type SplitManifest,
  type SplitName,
} from './data/dataset-manifest.js';
export { chunkEntry, verifyChunk } from './data/chunk-reader.js';
export { s3ConfigFromEnv, s3Reason, type S3Config } from './data/s3-config.js';
export { DEFAULT_CHUNK_BYTES, SplitChunkWriter, chunkExamplesFor, type ChunkSink } from './data/chunk-writer.js';
export { DEFAULT_MAX_LINE_BYTES, readLines, type Line, type LineReaderOptions } from './data/line-reader.js';
export {
  CsvRowParser,
  DEFAULT_MAX_FIELDS,
  DEFAULT_MAX_RECORD_VALUES,
  JsonlRecordParser,
  type CsvRowOptions,
} from './data/row-parsers.js';
export { ByteReader } from './data/byte-reader.js';
export { maybeGunzip } from './data/gunzip-stream.js';
export { IdxStream } from './data/idx-stream.js';
export {
  IngestRequestSchema,
  IngestSourceSchema,
  InvalidIngestRequestError,
  MAX_IMAGE_SIDE,
  type DatasetInfo,
  type DatasetState,
  type IngestProgress,
  type IngestRequest,
  type IngestRequestInput,
  type IngestSource,
} from './data/ingest-request.js';
export { ChunkCache, ChunkedSplit, DEFAULT_CACHE_BYTES, type ChunkFetcher } from './data/chunked-split.js';
