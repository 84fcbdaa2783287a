/** Why the coordinator could not start serving; stable codes for logs and callers (never match on messages). */
export type StartErrorCode =
  /** A non-loopback address without worker and API tokens, and no `--insecure`. */
  | 'INSECURE_WITHOUT_TOKENS'
  /** A non-loopback address without TLS, and no `--insecure`. */
  | 'INSECURE_PLAINTEXT'
  /** A reducer shard could not listen on its port (`--port` + 1 + k). */
  | 'SHARD_ADDRESS_IN_USE'
  /** The port is taken (another coordinator?). */
  | 'ADDRESS_IN_USE'
  /** The port needs privileges this process lacks (ports below 1024). */
  | 'ADDRESS_NOT_PERMITTED'
  /** The host is not an address of this machine. */
  | 'ADDRESS_NOT_AVAILABLE';

export class CoordinatorStartError extends Error {
  constructor(
    readonly code: StartErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CoordinatorStartError';
  }
}

/** A `listen` failure as a `CoordinatorStartError` saying what to do; other errors as they are. */
export function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new CoordinatorStartError(
        'ADDRESS_IN_USE',
        `cannot listen on ${host}:${port}: the port is in use (another coordinator?); stop it or choose another --port`,
      );
    case 'EACCES':
      return new CoordinatorStartError(
        'ADDRESS_NOT_PERMITTED',
        `cannot listen on ${host}:${port}: permission denied; use a port above 1024 or grant the process the right to bind it`,
      );
    case 'EADDRNOTAVAIL':
      return new CoordinatorStartError(
        'ADDRESS_NOT_AVAILABLE',
        `cannot listen on ${host}:${port}: ${host} is not an address of this machine; check --host`,
      );
    default:
      return err;
  }
}
