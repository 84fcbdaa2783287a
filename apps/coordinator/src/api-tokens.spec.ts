import { describe, expect, it } from 'vitest';
import { parseApiTokens } from './api-tokens.js';

const HASH = 'ab'.repeat(32);

describe('parseApiTokens', () => {
  it('reads NAME SHA256 ROLE lines, skipping comments and blanks', () => {
    const got = parseApiTokens(`# users\nalice ${HASH} submit\n\nroot ${'cd'.repeat(32)} admin # ops\n`, 'f');
    expect(got.map((e) => [e.name, e.role, e.sha256.toString('hex')])).toEqual([
      ['alice', 'submit', HASH],
      ['root', 'admin', 'cd'.repeat(32)],
    ]);
  });

  it.each([
    [`alice ${HASH}`, /f: line 1: expected NAME SHA256 ROLE/],
    [`al ice ${HASH} submit`, /line 1: expected/],
    [`alice ${HASH} root`, /line 1: the role must be submit or admin/],
    [`alice not-a-hash submit`, /line 1: the second field must be a SHA-256/],
    [`a\u001bb ${HASH} submit`, /line 1: a name is/],
    [`alice ${HASH} submit\nalice ${'cd'.repeat(32)} admin`, /line 2: the name alice appears twice/],
    [`alice ${HASH} submit\nbob ${HASH} admin`, /line 2: the same token hash appears twice/],
    ['# nothing', /no tokens/],
  ])('refuses %j, naming the line and never echoing it', (text, why) => {
    expect(() => parseApiTokens(text, 'f')).toThrow(why);
    try {
      parseApiTokens(text, 'f');
    } catch (err) {
      expect((err as Error).message).not.toContain(HASH);
    }
  });
});
