import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { InvalidDataError } from '@gradfleet/core';

const inside = (root: string, path: string) => {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).name;

/**
 * Where the open `file` really is. On Linux, `/proc/self/fd/N` names the file the descriptor
 * holds, whatever happened to the path since it was opened. Elsewhere, the path is resolved
 * again and must still be the same file (device and inode) as the one open.
 */
export async function openedPath(file: FileHandle, path: string): Promise<string | undefined> {
  if (process.platform === 'linux') return realpath(`/proc/self/fd/${file.fd}`).catch(() => undefined);
  const again = await realpath(path).catch(() => undefined);
  if (again === undefined) return undefined;
  const [held, named] = await Promise.all([file.stat(), stat(again).catch(() => undefined)]);
  return named && named.dev === held.dev && named.ino === held.ino ? again : undefined;
}

/**
 * The real path of `source` (realpath, so neither `..` nor a symlink leads out) and the real
 * roots, refused unless it lies under one of `roots`. `alternative` ends the refusals with
 * what the user can do instead.
 */
async function realUnderRoots(
  source: string,
  roots: readonly string[],
  fail: (reason: string) => never,
  alternative: string,
): Promise<{ real: string; realRoots: (string | undefined)[] }> {
  if (roots.length === 0)
    fail(
      `dataset paths on the coordinator are refused: it was started without --dataset-root; ${alternative}start the coordinator with --dataset-root DIR`,
    );
  let real: string;
  try {
    real = await realpath(resolve(source));
  } catch (err) {
    return fail(`cannot read (${code(err)})`);
  }
  const realRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => undefined)));
  if (!realRoots.some((r) => r !== undefined && inside(r, real)))
    fail(`outside the coordinator --dataset-root directories; copy it there${alternative ? ' or upload it' : ''}`);
  return { real, realRoots };
}

/**
 * The whole content of an open file: only a regular file, at most `maxBytes` (checked from
 * the open file before reading, and counted while reading for files such as /proc entries
 * that report size 0). What is read is the file that was opened and checked, whatever
 * happens to its path meanwhile.
 */
async function readHeld(file: FileHandle, maxBytes: number, fail: (reason: string) => never): Promise<Buffer> {
  const info = await file.stat();
  if (!info.isFile()) fail('not a regular file');
  if (info.size > maxBytes)
    fail(`${info.size} bytes exceeds the coordinator's limit of ${maxBytes} (--max-upload-bytes)`);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(Math.min(1024 * 1024, maxBytes - total + 1));
    const { bytesRead } = await file.read(buf, 0, buf.length, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total > maxBytes) fail(`more than ${maxBytes} bytes (--max-upload-bytes)`);
    chunks.push(buf.subarray(0, bytesRead));
  }
  return Buffer.concat(chunks, total);
}

/** `readHeld`, then closes the file; a read error is refused with its code, never its message. */
async function readAndClose(file: FileHandle, maxBytes: number, fail: (reason: string) => never): Promise<Buffer> {
  try {
    return await readHeld(file, maxBytes, fail);
  } catch (err) {
    if (err instanceof InvalidDataError) throw err;
    return fail(`cannot read (${code(err)})`);
  } finally {
    await file.close();
  }
}

/** Flags of every dataset file open: read only, never through a symlink, never blocking on a FIFO. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * Reads a file the coordinator stored itself (an upload, a URL download) in one open:
 * no stat-then-read window in which the file could be replaced, and the same checks
 * as `readDatasetPath` (regular file, size limit) on what was opened. `name` is how errors
 * name it (`upload:<id>`, the URL without query), `missing` the reason when it is not there.
 */
export async function readStoredFile(
  path: string,
  name: string,
  maxBytes: number,
  field: string,
  missing = 'no such file',
): Promise<Buffer> {
  const fail = (reason: string): never => {
    throw new InvalidDataError(`${name}: ${reason}`, field);
  };
  const file = await open(path, OPEN_FLAGS).catch((err: unknown) =>
    fail((err as NodeJS.ErrnoException).code === 'ENOENT' ? missing : `cannot read (${code(err)})`),
  );
  return readAndClose(file, maxBytes, fail);
}

/**
 * Opens a dataset file named by path in a request. Allowed only under one of `roots`
 * (`--dataset-root`; none by default: every path is refused until an operator opts in).
 * The path is resolved with realpath, so neither `..` nor a symlink leads outside a root;
 * and since a directory on the way can be swapped for a symlink between that check and the
 * open (O_NOFOLLOW guards only the last component), the file once open is checked again by
 * where its descriptor really points (`openedPath`): what is read is what was checked.
 * Only regular files. The caller reads from the handle and closes it.
 * Errors name the path as given and the reason, never the file's content.
 */
export async function openDatasetPath(
  source: string,
  roots: readonly string[],
  field: string,
): Promise<{ file: FileHandle; bytes: number }> {
  const fail = (reason: string): never => {
    throw new InvalidDataError(`${source}: ${reason}`, field);
  };
  const { real, realRoots } = await realUnderRoots(
    source,
    roots,
    fail,
    'upload the file (gradfleet submit --data) or ',
  );
  const file = await open(real, OPEN_FLAGS).catch((err: unknown) => fail(`cannot read (${code(err)})`));
  try {
    const held = await openedPath(file, real);
    if (held === undefined || !realRoots.some((r) => r !== undefined && inside(r, held)))
      fail('changed while being opened (a symlink on the way was swapped); refused');
    const info = await file.stat();
    if (!info.isFile()) fail('not a regular file');
    return { file, bytes: info.size };
  } catch (err) {
    await file.close();
    if (err instanceof InvalidDataError) throw err;
    return fail(`cannot read (${code(err)})`);
  }
}

/**
 * Reads a dataset file named by path in a job spec (`openDatasetPath`'s rules), at most
 * `maxBytes` (checked from the open file before reading, and counted while reading for files
 * such as /proc entries that report size 0).
 */
export async function readDatasetPath(
  source: string,
  roots: readonly string[],
  maxBytes: number,
  field: string,
): Promise<Buffer> {
  const fail = (reason: string): never => {
    throw new InvalidDataError(`${source}: ${reason}`, field);
  };
  const { file } = await openDatasetPath(source, roots, field);
  return readAndClose(file, maxBytes, fail);
}

/**
 * Resolves a dataset directory named in a request under one of `roots`, with the same rules
 * as `openDatasetPath` (realpath, so neither `..` nor a symlink leads out); returns its real
 * path. Its files are opened one by one through `openDatasetPath`.
 */
export async function resolveDatasetDir(source: string, roots: readonly string[], field: string): Promise<string> {
  const fail = (reason: string): never => {
    throw new InvalidDataError(`${source}: ${reason}`, field);
  };
  const { real } = await realUnderRoots(source, roots, fail, '');
  const info = await stat(real).catch((err: unknown) => fail(`cannot read (${code(err)})`));
  if (!info.isDirectory()) fail('not a directory');
  return real;
}
