import { createWriteStream } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { InvalidDataError } from '@gradfleet/core';
import { isBlockedAddress } from './address-policy.js';

/** Redirects followed for one dataset URL; each hop is checked like the first. */
export const MAX_DATASET_REDIRECTS = 5;
/** Time allowed for a whole dataset download, in ms (a 1 GiB file at ~30 Mbit/s). */
export const DATASET_FETCH_TIMEOUT_MS = 300_000;

export interface UrlPolicy {
  /** Host names (or IP addresses) a dataset URL may name; empty refuses every URL. */
  allow: readonly string[];
  /** Decoded bytes accepted, counted while streaming. */
  maxBytes: number;
  /** Logs what an error message may not say (e.g. where a redirect went). */
  note?: (fields: Record<string, unknown>, message: string) => void;
}

/** The URL without credentials, query or fragment: what error messages may name. */
export function urlName(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'the dataset URL';
  }
}

const bare = (host: string) => host.replace(/^\[(.*)\]$/, '$1').toLowerCase();

/**
 * Resolves a host name once, refusing names that resolve into blocked ranges; the answer is
 * the only address the request connects to (no second lookup a rebinding DNS could change).
 */
function pinnedLookup(host: string, refused: (reason: string) => void): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, verbatim: true })
      .then((found) => {
        if (found.length === 0) throw Object.assign(new Error('no address'), { code: 'ENOTFOUND' });
        if (found.some((a) => isBlockedAddress(a.address))) {
          refused(`${host} resolves to a loopback, private, link-local, multicast or reserved address`);
          throw Object.assign(new Error('blocked address'), { code: 'EADDRBLOCKED' });
        }
        const first = found[0]!;
        if (options.all) callback(null, [first]);
        else callback(null, first.address, first.family);
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, '', 0));
  };
}

function decoder(encoding: string | undefined): Transform | undefined | null {
  switch ((encoding ?? 'identity').trim().toLowerCase()) {
    case 'identity':
    case '':
      return undefined;
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return null;
  }
}

/**
 * Downloads an http(s) dataset URL into `dest`: only hosts on `policy.allow`, names resolved
 * once and refused when they resolve to internal addresses, redirects followed by hand and
 * re-checked hop by hop, decoded bytes counted while streaming (aborted past the limit).
 * Errors name the URL (without credentials or query) and the reason, never response content.
 */
export async function downloadDataset(source: string, dest: string, policy: UrlPolicy, field: string): Promise<void> {
  const name = urlName(source);
  const fail = (reason: string): never => {
    throw new InvalidDataError(`${name}: ${reason}`, field);
  };
  const allowed = new Set(policy.allow.map(bare));
  const signal = AbortSignal.timeout(DATASET_FETCH_TIMEOUT_MS);
  let current = source;
  for (let hop = 0; ; hop++) {
    const where = hop === 0 ? '' : `redirect ${hop}: `;
    let url: URL;
    try {
      url = new URL(current);
    } catch {
      return fail(`${where}not a valid URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`${where}only http and https URLs are fetched`);
    const host = bare(url.hostname);
    if (!allowed.has(host)) {
      policy.note?.({ url: name, hop, host }, 'dataset URL refused: host not on --dataset-url-allow');
      fail(
        `${where}${hop === 0 ? `host ${host}` : 'the redirect target'} is not on the coordinator's --dataset-url-allow list; upload the file instead (gradfleet submit --data)`,
      );
    }
    // An address named on the allow list is allowed as named; names must resolve to public addresses.
    let blockedReason: string | undefined;
    const options: RequestOptions = {
      method: 'GET',
      headers: { 'accept-encoding': 'gzip, deflate, br', 'user-agent': 'gradfleet-coordinator' },
      signal,
      ...(isIP(host) ? {} : { lookup: pinnedLookup(url.hostname, (r) => (blockedReason = r)) }),
    };
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, resolve);
      req.on('error', reject);
      req.end();
    }).catch((err: NodeJS.ErrnoException) =>
      fail(`${where}${blockedReason ?? `fetch failed (${err.code ?? err.name})`}`),
    );
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location !== undefined) {
      res.resume();
      if (hop + 1 > MAX_DATASET_REDIRECTS) fail(`more than ${MAX_DATASET_REDIRECTS} redirects`);
      current = new URL(res.headers.location, url).href;
      continue;
    }
    if (status < 200 || status >= 300) {
      res.resume();
      fail(`${where}HTTP ${status}`);
    }
    await save(res, dest, policy.maxBytes, (reason) => fail(`${where}${reason}`));
    return;
  }
}

async function save(res: IncomingMessage, dest: string, limit: number, fail: (reason: string) => never): Promise<void> {
  const decode = decoder(res.headers['content-encoding']);
  if (decode === null) {
    res.resume();
    fail('unsupported Content-Encoding (identity, gzip, deflate or br)');
  }
  const declared = Number(res.headers['content-length'] ?? 0);
  if (!decode && declared > limit) {
    res.resume();
    fail(`${declared} bytes exceeds the coordinator's limit of ${limit} (--max-upload-bytes)`);
  }
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > limit) done(new RangeError('limit'));
      else done(null, chunk);
    },
  });
  const tmp = `${dest}.${randomUUID()}.tmp`;
  const stages: (Readable | Transform)[] = decode ? [res, decode, count] : [res, count];
  try {
    await pipeline([...stages, createWriteStream(tmp)]);
  } catch (err) {
    res.destroy();
    await rm(tmp, { force: true });
    if (bytes > limit) fail(`more than ${limit} bytes once decoded (--max-upload-bytes)`);
    fail(`download failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).name})`);
  }
  await rename(tmp, dest);
}
