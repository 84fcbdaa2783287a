import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { ApiRole, ApiTokenEntry } from './api-tokens.js';

/** Who a request authenticated as. `open` when no token is configured for that kind. */
export type Principal = 'worker' | 'client' | 'open' | 'none';

export interface TokenOptions {
  /** Token workers present at the WebSocket handshake (`Authorization: Bearer`). */
  workerToken?: string | undefined;
  /** Token API clients present (`Authorization: Bearer`); lets them submit and manage jobs (an admin token named `admin`). */
  apiToken?: string | undefined;
  /** Per-user API tokens (`--api-tokens FILE`): name, SHA-256 and role of each. */
  apiTokens?: readonly ApiTokenEntry[] | undefined;
}

/** Who an API request speaks for: the token's name (logged, owns jobs) and its role. */
export interface ApiIdentity {
  name: string;
  role: ApiRole | 'worker';
}

/** The identity of API calls on a coordinator without API tokens (loopback or --insecure). */
export const ANONYMOUS: ApiIdentity = { name: 'anonymous', role: 'admin' };

/** Shortest token accepted, in characters: 16 random characters are beyond guessing; shorter ones are typos or passwords. */
export const MIN_TOKEN_LENGTH = 16;

/** Why the configured tokens cannot be used (too short, or one token for both roles); undefined when fine. */
export function tokenProblem(tokens: TokenOptions): string | undefined {
  for (const [which, t] of [
    ['worker token (--worker-token, GRADFLEET_WORKER_TOKEN)', tokens.workerToken],
    ['API token (--api-token, GRADFLEET_API_TOKEN)', tokens.apiToken],
  ] as const) {
    if (t !== undefined && t.length < MIN_TOKEN_LENGTH)
      return `refusing to start: the ${which} has fewer than ${MIN_TOKEN_LENGTH} characters; use a long random one (openssl rand -base64 32)`;
  }
  if (
    tokens.workerToken !== undefined &&
    tokens.apiToken !== undefined &&
    tokensEqual(tokens.workerToken, tokens.apiToken)
  )
    return 'refusing to start: the worker and API tokens are equal, so every worker could submit jobs; give them different values';
  return undefined;
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

  private get apiSecured(): boolean {
    return Boolean(this.tokens.apiToken || this.tokens.apiTokens?.length);
  }

  get secured(): boolean {
    return Boolean(this.tokens.workerToken && this.apiSecured);
  }

  /** The API token a request presents, by name and role; undefined for none or an unknown one. */
  client(req: IncomingMessage): ApiIdentity | undefined {
    const t = bearer(req);
    if (t === undefined) return undefined;
    const { apiToken, apiTokens = [] } = this.tokens;
    if (apiToken && tokensEqual(t, apiToken)) return { name: 'admin', role: 'admin' };
    const d = digest(t);
    let found: ApiTokenEntry | undefined;
    for (const e of apiTokens) if (timingSafeEqual(d, e.sha256)) found = e; // every entry compared: no early exit
    return found && { name: found.name, role: found.role };
  }

  /** What an allowed API request speaks for (`allowsApi` said yes): its token, the worker, or anonymous. */
  who(req: IncomingMessage): ApiIdentity {
    const client = this.client(req);
    if (client) return client;
    if (this.identify(req) === 'worker') return { name: 'worker', role: 'worker' };
    return ANONYMOUS;
  }

  /** What the request's bearer token grants. */
  identify(req: IncomingMessage): Principal {
    const t = bearer(req);
    const { workerToken } = this.tokens;
    if (t !== undefined) {
      if (this.client(req)) return 'client';
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
    if (!this.apiSecured && (scope === 'client' || !this.tokens.workerToken)) return true;
    const who = this.identify(req);
    return who === 'client' || (scope === 'worker' && (who === 'worker' || !this.tokens.workerToken));
  }
}

/** Loopback addresses a coordinator may serve without tokens. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
