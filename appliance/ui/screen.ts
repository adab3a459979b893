// Draws the controller's view with blessed, in 80×25 (the Linux console) and anything larger:
//   row 0      the status line (inverse): link, queue, devices, cashier, clock
//   row 1      the screen's title
//   rows 2–    the body (sale lines, menus, counts, reports)
//   3 rows     the big figure (TOTAL / DUE / CHANGE) in a block font a customer reads from afar
//   2 rows     the message (the last scan, a refusal in red), wrapped: a refusal's last words say what
//              to do instead ("…: take cash or another tender.")
//   1 row      what is being typed
//   1 row      the keys that do something here
// No mouse; the keys reach the controller as actions through the keymap.
import blessed from 'blessed';
import type { View } from './controller.js';

/** A 3-row block font for the big figure: digits, point, minus. Characters the Linux console has. */
const FONT: Record<string, [string, string, string]> = {
  '0': ['█▀█', '█ █', '▀▀▀'],
  '1': [' ▄█', '  █', '  ▀'],
  '2': ['▀▀█', '█▀▀', '▀▀▀'],
  '3': ['▀▀█', ' ▀█', '▀▀▀'],
  '4': ['█ █', '▀▀█', '  ▀'],
  '5': ['█▀▀', '▀▀█', '▀▀▀'],
  '6': ['█▀▀', '█▀█', '▀▀▀'],
  '7': ['▀▀█', '  █', '  ▀'],
  '8': ['█▀█', '█▀█', '▀▀▀'],
  '9': ['█▀█', '▀▀█', '▀▀▀'],
  '.': [' ', ' ', '▀'],
  '-': ['   ', '▀▀▀', '   '],
  ' ': [' ', ' ', ' '],
};

/** Rows the message has: the longest refusal the register gives fits in two at 80 columns. */
export const MESSAGE_ROWS = 2;

/**
 * `text` wrapped at spaces into at most `rows` rows of at most `width` columns; a word longer than a
 * row is split, and text past the last row ends in `…`.
 */
export function wrapMessage(text: string, width: number, rows = MESSAGE_ROWS): string[] {
  const out: string[] = [];
  let rest = text.trim();
  while (rest && out.length < rows) {
    if (rest.length <= width) {
      out.push(rest);
      rest = '';
      break;
    }
    const cut = rest.lastIndexOf(' ', width);
    const at = cut > 0 ? cut : width;
    out.push(rest.slice(0, at).trimEnd());
    rest = rest.slice(at).trimStart();
  }
  if (rest && out.length) {
    const last = out.length - 1;
    out[last] = `${out[last]!.slice(0, width - 1)}…`;
  }
  return out;
}

/** `text` in the block font: three lines. Characters the font lacks are left out. */
export function bigText(text: string): [string, string, string] {
  const rows: [string, string, string] = ['', '', ''];
  for (const ch of text) {
    const glyph = FONT[ch];
    if (!glyph) continue;
    for (let r = 0; r < 3; r++) rows[r] += glyph[r] + ' ';
  }
  return rows;
}

export class TillScreen {
  readonly screen: blessed.Widgets.Screen;
  private readonly status: blessed.Widgets.BoxElement;
  private readonly title: blessed.Widgets.BoxElement;
  private readonly body: blessed.Widgets.BoxElement;
  private readonly big: blessed.Widgets.BoxElement;
  private readonly message: blessed.Widgets.BoxElement;
  private readonly input: blessed.Widgets.BoxElement;
  private readonly keys: blessed.Widgets.BoxElement;

  constructor() {
    this.screen = blessed.screen({ smartCSR: true, fullUnicode: true, title: 'Register' });
    const line = (top: number | string, style: Record<string, unknown> = {}) =>
      blessed.box({ parent: this.screen, top, left: 0, width: '100%', height: 1, tags: false, style });
    this.status = line(0, { fg: 'black', bg: 'white' });
    this.title = line(1, { bold: true });
    this.body = blessed.box({ parent: this.screen, top: 2, left: 0, width: '100%', height: '100%-9' });
    this.big = blessed.box({
      parent: this.screen,
      bottom: 2 + MESSAGE_ROWS,
      right: 1,
      width: '100%-2',
      height: 3,
      align: 'right',
    });
    this.message = blessed.box({
      parent: this.screen,
      top: `100%-${2 + MESSAGE_ROWS}`,
      left: 0,
      width: '100%',
      height: MESSAGE_ROWS,
      wrap: false,
    });
    this.input = line('100%-2', { bold: true });
    this.keys = line('100%-1', { fg: 'black', bg: 'cyan' });
  }

  /** Columns on the terminal: what the status line and the message are fitted to. */
  get width(): number {
    return Number(this.screen.width) || 80;
  }

  onKey(handler: (name: string) => void): void {
    this.screen.on(
      'keypress',
      (_ch: string | undefined, key: { full?: string; name?: string } | undefined) => {
        const name = key?.full ?? key?.name;
        if (name) handler(name);
      },
    );
  }

  draw(v: View): void {
    this.status.setContent(v.statusLine);
    this.status.style.bg =
      v.statusLine.includes('OFFLINE') || v.statusLine.includes('DOWN') ? 'yellow' : 'white';
    this.title.setContent(` ${v.title}`);
    this.body.setContent(v.body.join('\n'));
    if (v.big) {
      const [a, b, c] = bigText(v.big.amount);
      this.big.setContent(`${a}\n${b}\n${v.big.label.padEnd(8)} ${c}`);
    } else this.big.setContent('');
    // One column kept at the left edge, as on every other row.
    const rows = v.message ? wrapMessage(v.message.text, this.width - 2) : [];
    this.message.setContent(rows.map((r) => ` ${r}`).join('\n'));
    this.message.style.fg = v.message?.level === 'error' ? 'red' : 'green';
    this.input.setContent(v.prompt ? ` ${v.prompt}: ${v.input}_` : '');
    this.keys.setContent(` ${v.keys}`);
    this.screen.render();
  }

  destroy(): void {
    this.screen.destroy();
  }
}
