import { readFileSync } from 'node:fs';

/** What an API token may do: `submit` sees and changes only its own jobs, `admin` all of them. */
export type ApiRole = 'submit' | 'admin';

/** One line of `--api-tokens FILE`: the token's name (logged), its SHA-256 and its role. */
export interface ApiTokenEntry {
  name: string;
  sha256: Buffer;
  role: ApiRole;
}

/** Names are logged and stored with jobs: short and printable. */
const NAME = /^[A-Za-z0-9._@-]{1,64}$/;
/** Most entries a token file may hold (each request checks them all, in constant time each). */
export const MAX_API_TOKENS = 1000;

/**
 * Parses `--api-tokens FILE`: one `NAME SHA256-HEX ROLE` per line (`#` comments and blank
 * lines skipped), e.g. `alice 9f86d0…0f00a08 submit` from
 * `printf %s "$TOKEN" | sha256sum`. The file holds no token, only hashes. Errors name the
 * file, line and reason, never the line's content.
 */
export function parseApiTokens(text: string, file: string): ApiTokenEntry[] {
  const entries: ApiTokenEntry[] = [];
  const names = new Set<string>();
  const hashes = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const where = `${file}: line ${i + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 3) throw new Error(`${where}: expected NAME SHA256 ROLE (3 fields), found ${fields.length}`);
    const [name, hash, role] = fields as [string, string, string];
    if (!NAME.test(name)) throw new Error(`${where}: a name is 1-64 of A-Z a-z 0-9 . _ @ -`);
    if (!/^[0-9a-fA-F]{64}$/.test(hash))
      throw new Error(`${where}: the second field must be a SHA-256 in hex (64 digits)`);
    if (role !== 'submit' && role !== 'admin') throw new Error(`${where}: the role must be submit or admin`);
    if (names.has(name)) throw new Error(`${where}: the name ${name} appears twice`);
    if (hashes.has(hash.toLowerCase())) throw new Error(`${where}: the same token hash appears twice`);
    names.add(name);
    hashes.add(hash.toLowerCase());
    entries.push({ name, sha256: Buffer.from(hash, 'hex'), role });
    if (entries.length > MAX_API_TOKENS) throw new Error(`${file}: more than ${MAX_API_TOKENS} tokens`);
  });
  if (entries.length === 0) throw new Error(`${file}: no tokens (one NAME SHA256 ROLE per line)`);
  return entries;
}

/** Reads `--api-tokens FILE`; see `parseApiTokens`. */
export function readApiTokens(file: string): ApiTokenEntry[] {
  return parseApiTokens(readFileSync(file, 'utf8'), file);
}
