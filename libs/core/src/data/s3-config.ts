/**
 * How the coordinator and the workers configure their S3 clients: as the AWS tools do, from
 * their own environment. Region from `AWS_REGION` / `AWS_DEFAULT_REGION` (default us-east-1),
 * the endpoint from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (MinIO and other
 * S3-compatible stores); a custom endpoint uses path-style addressing
 * (`AWS_S3_FORCE_PATH_STYLE=false` turns it off; `true` turns it on for AWS too). Credentials
 * are never part of it: the SDK's default chain finds them (`AWS_ACCESS_KEY_ID` /
 * `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and the shared config files, instance roles), so none
 * travel between processes. Plain data, so this library needs no AWS SDK: `new S3Client(s3ConfigFromEnv())`.
 */
export interface S3Config {
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
}

export function s3ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3Config {
  const endpoint = env['AWS_ENDPOINT_URL_S3'] ?? env['AWS_ENDPOINT_URL'];
  const flag = env['AWS_S3_FORCE_PATH_STYLE'];
  const forcePathStyle = flag === undefined ? endpoint !== undefined : flag === 'true' || flag === '1';
  return {
    region: env['AWS_REGION'] ?? env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle,
  };
}

/** The reason of an S3 failure, without anything the server echoed back (keys, bodies, request ids). */
export function s3Reason(err: unknown): string {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; code?: string };
  return `${e.name ?? e.code ?? 'error'}${e.$metadata?.httpStatusCode ? ` ${e.$metadata.httpStatusCode}` : ''}`;
}
