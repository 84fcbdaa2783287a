import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { GradfleetClient, type DatasetInfo, type IngestRequestInput } from '@gradfleet/core/client';
import { print } from '../terminal.js';
import type { ClientOptions } from './job-commands.js';

export interface IngestOptions extends ClientOptions {
  name: string;
  /** csv | jsonl | idx | images | chunked; guessed from SRC when absent. */
  kind?: string;
  test?: string;
  /** IDX: the labels file of SRC (and of --test with --test-labels). */
  idxLabels?: string;
  testLabels?: string;
  labels?: 'class' | 'binary' | 'regression';
  labelColumn?: string;
  /** Images: HxW. */
  size?: string;
  channels?: string;
  store?: string;
  chunkBytes?: number;
  /** Return once the ingestion started instead of following it. */
  wait?: boolean;
}

function client(opts: ClientOptions): GradfleetClient {
  return new GradfleetClient({
    url: opts.coordinator,
    token: opts.token,
    ca: opts.ca ? readFileSync(opts.ca) : undefined,
  });
}

/** A local path made absolute (the coordinator reads it, so it must name the same file there); URLs as given. */
function where(src: string): string {
  return /^(s3|https?):\/\//i.test(src) || src.startsWith('upload:') ? src : resolve(src);
}

/** The ingestion request for SRC and the options (`docs/datasets.md`). */
export function ingestRequest(src: string, o: IngestOptions): IngestRequestInput {
  const kind =
    o.kind ??
    (src.trim().startsWith('{')
      ? 'json'
      : src.startsWith('dataset:') || /(^|\/)manifest\.json$/.test(src)
        ? 'chunked'
        : /\.csv(\.gz)?$/i.test(src)
          ? 'csv'
          : /\.(jsonl|ndjson)$/i.test(src)
            ? 'jsonl'
            : /(ubyte|\.idx\d?)(\.gz)?$/i.test(src)
              ? 'idx'
              : o.size
                ? 'images'
                : undefined);
  const common = {
    ...(o.labels ? { labels: o.labels } : {}),
    ...(o.store ? { store: o.store } : {}),
    ...(o.chunkBytes ? { chunkBytes: o.chunkBytes } : {}),
  };
  const test = o.test ? { test: where(o.test) } : {};
  switch (kind) {
    case 'json':
      return { source: JSON.parse(src) as IngestRequestInput['source'], ...common };
    case 'csv': {
      const col =
        o.labelColumn === undefined
          ? {}
          : { labelColumn: /^\d+$/.test(o.labelColumn) ? Number(o.labelColumn) : o.labelColumn };
      return { source: { csv: { train: where(src), ...test, ...col } }, ...common };
    }
    case 'jsonl':
      return { source: { jsonl: { train: where(src), ...test } }, ...common };
    case 'idx':
      if (!o.idxLabels) throw new Error('IDX images need their labels file: --idx-labels FILE');
      if (o.test && !o.testLabels) throw new Error('--test with IDX needs --test-labels FILE');
      return {
        source: {
          idx: {
            trainImages: where(src),
            trainLabels: where(o.idxLabels),
            ...(o.test ? { testImages: where(o.test), testLabels: where(o.testLabels!) } : {}),
          },
        },
        ...common,
      };
    case 'chunked':
      // dataset:NAME (a named dataset here), or the directory / s3:// prefix of a manifest.json.
      return {
        source: {
          chunked: src.startsWith('dataset:')
            ? { dataset: src.slice('dataset:'.length) }
            : { dir: where(src.replace(/\/?manifest\.json$/, '')) },
        },
        ...common,
      };
    case 'images': {
      const m = /^(\d+)x(\d+)$/.exec(o.size ?? '');
      if (!m) throw new Error('an image folder needs --size HxW (e.g. --size 28x28)');
      const channels = Number(o.channels ?? 3);
      if (channels !== 1 && channels !== 3) throw new Error('--channels is 1 or 3');
      return {
        source: {
          images: {
            dir: where(src),
            ...(o.test ? { testDir: where(o.test) } : {}),
            size: [Number(m[1]), Number(m[2])],
            channels: channels as 1 | 3,
          },
        },
        ...common,
      };
    }
    default:
      throw new Error(
        `cannot tell what ${src} is: name a .csv, .jsonl or IDX (*-ubyte) file, an image folder with --size HxW, dataset:NAME or a chunked dataset's manifest.json, or pass --kind`,
      );
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

export function describeDataset(d: DatasetInfo): string {
  if (d.state === 'INGESTING')
    return `${d.name}  INGESTING  ${d.progress.examples} examples, ${mb(d.progress.bytesRead)} read`;
  if (d.state === 'FAILED') return `${d.name}  FAILED  ${d.error?.code ?? ''}: ${d.error?.message ?? ''}`;
  const test = d.test ? ` + ${d.test.examples} test` : '';
  return `${d.name}  READY  ${d.train?.examples ?? 0} train${test} examples of ${d.featureShape?.join('x')} ${d.dtype}, labels ${d.labels?.kind} (${d.labels?.numClasses}), ${(d.train?.chunks ?? 0) + (d.test?.chunks ?? 0)} chunks, ${mb(d.bytes ?? 0)}${d.store ? `  in ${d.store}` : ''}`;
}

/**
 * `gradfleet dataset ingest SRC --name N`: starts the ingestion on the coordinator and follows
 * it with a progress bar (bytes when the source's size is known, else examples) until READY
 * or FAILED; exit code 0 when READY.
 */
export async function ingest(src: string, o: IngestOptions): Promise<number> {
  const c = client(o);
  const request = ingestRequest(src, o);
  let info = await c.ingestDataset(o.name, request);
  if (o.wait === false) {
    print(o.json ? JSON.stringify(info, null, 2) : describeDataset(info));
    return 0;
  }
  const tty = Boolean(process.stdout.isTTY) && !o.json;
  let bar: cliProgress.SingleBar | undefined;
  info = await c.waitForDataset(o.name, (d) => {
    if (!tty || d.state !== 'INGESTING') return;
    const p = d.progress;
    if (!bar) {
      bar = new cliProgress.SingleBar(
        {
          format: `ingest ${o.name} [{bar}] {percentage}% | {mb} read | {examples} examples | {chunks} chunks`,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(1, p.bytesTotal), 0, { mb: mb(0), examples: 0, chunks: 0 });
    }
    if (p.bytesTotal > 0) bar.setTotal(p.bytesTotal);
    bar.update(Math.min(p.bytesRead, Math.max(1, p.bytesTotal)), {
      mb: mb(p.bytesRead),
      examples: p.examples,
      chunks: p.chunks,
    });
  });
  bar?.stop();
  print(o.json ? JSON.stringify(info, null, 2) : describeDataset(info));
  return info.state === 'READY' ? 0 : 1;
}

/** `gradfleet dataset ls`. */
export async function listDatasets(o: ClientOptions): Promise<number> {
  const list = await client(o).datasets();
  if (o.json) print(JSON.stringify(list, null, 2));
  else if (list.length === 0) print('no datasets (gradfleet dataset ingest SRC --name N adds one)');
  else for (const d of list) print(describeDataset(d));
  return 0;
}

/** `gradfleet dataset rm N`. */
export async function removeDataset(name: string, o: ClientOptions): Promise<number> {
  await client(o).removeDataset(name);
  if (!o.json) print(`removed dataset ${name}`);
  return 0;
}
