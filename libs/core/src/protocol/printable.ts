/**
 * Control characters (C0, DEL, C1), line and paragraph separators and bidirectional
 * overrides: in a terminal or a log viewer they move the cursor, rewrite earlier lines,
 * change colours or reorder text, so a peer could forge output with them.
 */
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Text a peer supplied, with every unprintable character written as `\u{XX}`: safe to print or log. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}
