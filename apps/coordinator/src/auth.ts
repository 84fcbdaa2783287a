import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';

/** Who a request authenticated as. `open` when no token is configured for that kind. */
export type Principal = 'worker' | 'client' | 'open' | 'none';

export interface TokenOptions {
  /** Token workers present at the WebSocket handshake (`Authorization: Bearer`). */
  workerToken?: string | undefined;
  /** Token API clients present (`Authorization: Bearer`); lets them submit and manage jobs. */
  apiToken?: string | undefined;
}

/** Reads a token from a flag, else a file, else an environment variable; trims whitespace. */
export function resolveToken(
  value: string | undefined,
  file: string | undefined,
  env: string | undefined,
): string | undefined {
  if (value) return value.trim();
  if (file) return readFileSync(file, 'utf8').trim();
  return env?.trim() || undefined;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time equality (both sides hashed first so lengths never leak). */
export function tokensEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  return h?.startsWith('Bearer ') ? h.slice(7) : undefined;
}

/**
 * Token checks for the two kinds of peers. Workers may connect and fetch dataset shards;
 * only clients may submit or manage jobs. With no token configured for a kind, that kind
 * is open (allowed only on loopback or with `--insecure`).
 */
export class Authenticator {
  constructor(private readonly tokens: TokenOptions) {}

  get secured(): boolean {
    return Boolean(this.tokens.workerToken && this.tokens.apiToken);
  }

  /** What the request's bearer token grants. */
  identify(req: IncomingMessage): Principal {
    const t = bearer(req);
    const { workerToken, apiToken } = this.tokens;
    if (t !== undefined) {
      if (apiToken && tokensEqual(t, apiToken)) return 'client';
      if (workerToken && tokensEqual(t, workerToken)) return 'worker';
    }
    return 'none';
  }

  /** May this request open a worker connection? */
  allowsWorker(req: IncomingMessage): boolean {
    return !this.tokens.workerToken || this.identify(req) === 'worker';
  }

  /** May this request use the job API (`worker` scope: dataset shards only)? */
  allowsApi(req: IncomingMessage, scope: 'client' | 'worker'): boolean {
    if (!this.tokens.apiToken && (scope === 'client' || !this.tokens.workerToken)) return true;
    const who = this.identify(req);
    return who === 'client' || (scope === 'worker' && (who === 'worker' || !this.tokens.workerToken));
  }
}

/** Loopback addresses a coordinator may serve without tokens. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
