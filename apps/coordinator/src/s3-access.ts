import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { InvalidDataError, s3ConfigFromEnv } from '@gradfleet/core';

/** `s3://bucket/key`, split; the key may be empty (a whole bucket) or a prefix. */
export function parseS3Url(url: string, field: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,62})(?:\/(.*))?$/.exec(url);
  if (!m) throw new InvalidDataError(`${url.slice(0, 100)}: not an s3://bucket/key URL`, field);
  return { bucket: m[1]!, key: m[2] ?? '' };
}

/** An S3 client configured from this process's AWS environment (`s3ConfigFromEnv`, shared with the workers). */
export function s3ClientFromEnv(env: NodeJS.ProcessEnv = process.env): S3Client {
  return new S3Client(s3ConfigFromEnv(env));
}

/** Objects of a bucket under a prefix (all pages), with their sizes. */
export async function listObjects(
  client: S3Client,
  bucket: string,
  prefix: string,
  max: number,
): Promise<{ key: string; size: number }[]> {
  const out: { key: string; size: number }[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const o of page.Contents ?? []) {
      if (o.Key === undefined) continue;
      out.push({ key: o.Key, size: o.Size ?? 0 });
      if (out.length > max) throw new InvalidDataError(`s3://${bucket}/${prefix}: more than ${max} objects`);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

export async function getObjectStream(
  client: S3Client,
  bucket: string,
  key: string,
): Promise<{ stream: AsyncIterable<Uint8Array>; bytes: number }> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!res.Body) throw new Error('empty body');
  return { stream: res.Body as AsyncIterable<Uint8Array>, bytes: res.ContentLength ?? 0 };
}

export async function headObject(client: S3Client, bucket: string, key: string): Promise<number> {
  const res = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  return res.ContentLength ?? 0;
}

export async function putObject(client: S3Client, bucket: string, key: string, body: Uint8Array): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.byteLength }));
}

export async function deletePrefix(client: S3Client, bucket: string, prefix: string): Promise<void> {
  for (;;) {
    const objects = await listObjects(client, bucket, prefix, 1000).catch(() => []);
    if (objects.length === 0) return;
    await client.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects.map((o) => ({ Key: o.key })) } }),
    );
    if (objects.length < 1000) return;
  }
}
