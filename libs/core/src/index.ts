// Public API of @gradfleet/core. Import only from here.
export * from './protocol/constants.js';
export * from './protocol/protocol-error.js';
export * from './protocol/frame.js';
export * from './protocol/messages.js';
export * from './sampler/prng.js';
export * from './sampler/epoch-sampler.js';
export * from './math/gradient-math.js';
export * from './math/gradient-reducer.js';
export * from './job/job-spec.js';
export * from './job/job-status.js';
export * from './model/model-factory.js';
export * from './data/idx.js';
export * from './data/dataset.js';
export * from './backend/select-backend.js';
export * from './backend/wasm-conv2d-backprop-filter.js';
export * from './client/gradfleet-client.js';
export * from './logger.js';
