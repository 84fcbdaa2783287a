import { isIP } from 'node:net';

/**
 * Keeps web pages on the same machine (or network) away from the coordinator: a page can
 * send requests to 127.0.0.1 without being able to read the answers, unless DNS rebinding
 * makes the coordinator look same-origin (its name then resolves to us: refused by the Host
 * check), and it can open a WebSocket to any address (its browser always sends `Origin`:
 * refused by the Origin check). Nothing in gradfleet sends `Origin` (Node's `ws`, `fetch` and
 * `http` do not), so refusing it costs real clients nothing.
 */
export interface BrowserGuardOptions {
  /** The address the coordinator listens on (`--host`). */
  listenHost: string;
  /** Other names clients use to reach it (`--public-host`, e.g. a DNS name or a compose service). */
  publicHosts?: readonly string[];
  /** Browser origins allowed to call it (`--allow-origin`, e.g. `https://dashboard.example`). */
  allowOrigins?: readonly string[];
}

const LOOPBACK_NAMES = new Set(['localhost', 'localhost.']);

/** The host name of a Host header (`name:port`, `[v6]:port`), lowercased, without brackets or port. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon === -1 || h.indexOf(':') !== colon ? h : h.slice(0, colon);
}

export class BrowserGuard {
  private readonly names: Set<string>;
  private readonly origins: Set<string>;

  constructor(options: BrowserGuardOptions) {
    this.names = new Set(
      [options.listenHost, ...(options.publicHosts ?? [])].map((h) => hostName(h)).filter((h) => h !== ''),
    );
    this.origins = new Set((options.allowOrigins ?? []).map((o) => o.trim().toLowerCase().replace(/\/+$/, '')));
  }

  /**
   * Whether a Host header names this coordinator: an IP address (a rebinding attack needs a
   * name), a loopback name, the listen address or a `--public-host`. A missing Host is refused.
   */
  allowsHost(header: string | undefined): boolean {
    if (!header) return false;
    const name = hostName(header);
    return isIP(name) !== 0 || LOOPBACK_NAMES.has(name) || this.names.has(name);
  }

  /** Whether a request's `Origin` may pass: none at all, or one named by `--allow-origin`. */
  allowsOrigin(origin: string | undefined): boolean {
    return origin === undefined || this.origins.has(origin.trim().toLowerCase());
  }
}
