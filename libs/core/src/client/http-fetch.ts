import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array | null;
  signal?: AbortSignal;
}

/**
 * `fetch`, plus certificate verification against a custom CA (PEM) for `https:` URLs:
 * Node's global fetch takes no CA option, so those requests go through `node:https`.
 * Verification is never turned off; a certificate the CA did not sign fails the request.
 */
export async function httpFetch(url: string, init: FetchInit = {}, ca?: string | Buffer): Promise<Response> {
  if (!ca || !url.startsWith('https:')) return fetch(url, init);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: init.method ?? 'GET', headers: init.headers, ca, ...(init.signal ? { signal: init.signal } : {}) },
      (res) => {
        const status = res.statusCode ?? 500;
        const headers = Object.fromEntries(
          Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v ?? '')]),
        );
        const body = status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
        resolve(new Response(body, { status, headers }));
      },
    );
    req.on('error', (err) => reject(Object.assign(new TypeError('fetch failed'), { cause: err })));
    req.end(init.body ?? undefined);
  });
}
