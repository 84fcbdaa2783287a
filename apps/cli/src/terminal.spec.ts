import { describe, expect, it } from 'vitest';
import { terminalSafe } from './terminal.js';

describe('terminalSafe', () => {
  it('keeps line breaks and shows every other control character escaped', () => {
    expect(terminalSafe('job a\nworker \u001b[2J\u001b[31mx\r\u202eevil\u0007')).toBe(
      'job a\nworker \\u{1b}[2J\\u{1b}[31mx\\u{d}\\u{202e}evil\\u{7}',
    );
  });
});
