// The ModelBuilder's thread: builds job models on the cpu backend, off the main event loop.
import { parentPort } from 'node:worker_threads';
import { InvalidJobSpecError, selectBackend, type JobSpec } from '@gradfleet/core';
import type { ModelBuildReply } from './model-builder.js';
import { describeModel, type InitialArtifact } from './model-info.js';

const ready = selectBackend('cpu');
const port = parentPort!;

port.on(
  'message',
  (m: {
    id: number;
    spec: JobSpec;
    data?: { featureShape: number[]; numClasses: number };
    maxParams?: number;
    check?: boolean;
    initial?: InitialArtifact;
  }) => {
    void (async () => {
      try {
        await ready;
        const info = await describeModel(m.spec, m.data, m.maxParams, m.initial);
        if (m.check) return port.postMessage({ id: m.id, params: info.trainableParams } satisfies ModelBuildReply);
        port.postMessage({ id: m.id, info } satisfies ModelBuildReply, [info.initialWeights.buffer as ArrayBuffer]);
      } catch (err) {
        const reply: ModelBuildReply =
          err instanceof InvalidJobSpecError
            ? { id: m.id, issues: err.issues }
            : { id: m.id, error: err instanceof Error ? err.message : String(err) };
        port.postMessage(reply);
      }
    })();
  },
);
