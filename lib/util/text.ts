// Untrusted text on its way out: the one escaping of text placed into Markdown, the one
// neutralising of text written to a terminal.

// C0 controls, DEL and C1 controls (ESC starts ANSI/OSC sequences; CSI is also U+009B), and the
// Unicode line and paragraph separators and bidirectional overrides that reorder what is shown.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const hex = (c: string): string => {
  const n = c.codePointAt(0)!;
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
};

/**
 * Text for one line of Markdown (a table cell, a list item): HTML-significant characters become
 * entities (no tag, comment or entity of the text survives), the Markdown punctuation that could
 * open emphasis, a link, a code span or a table cell is backslash-escaped, and control characters,
 * newlines included, are shown escaped (\x0a) so the text cannot start a new block.
 */
export function markdownText(s: string): string {
  return (
    String(s)
      .replace(CONTROL, hex)
      .replace(/[\\`*[\]|~]/g, '\\$&')
      // '_' inside a word (int8_per_tensor) is no emphasis; at a word's edge it could be
      .replace(/(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])/g, '\\_')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
  );
}

/** Text for a terminal: control characters (escape sequences among them) shown as \xNN; newlines kept when `keepNewlines`. */
export function terminalText(s: string, keepNewlines = false): string {
  return String(s).replace(CONTROL, (c) => (keepNewlines && c === '\n' ? c : hex(c)));
}
