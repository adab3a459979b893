// Draws the controller's view with blessed, in 80×25 (the Linux console) and anything larger:
//   row 0      the status line (inverse): link, queue, devices, cashier, clock
//   row 1      the screen's title
//   rows 2–    the body (sale lines, menus, counts, reports)
//   3 rows     the big figure (TOTAL / DUE / CHANGE) in a block font a customer reads from afar
//   1 row      the message (the last scan, a refusal in red)
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
      bottom: 3,
      right: 1,
      width: '100%-2',
      height: 3,
      align: 'right',
    });
    this.message = line('100%-3');
    this.input = line('100%-2', { bold: true });
    this.keys = line('100%-1', { fg: 'black', bg: 'cyan' });
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
    this.message.setContent(v.message ? ` ${v.message.text}` : '');
    this.message.style.fg = v.message?.level === 'error' ? 'red' : 'green';
    this.input.setContent(v.prompt ? ` ${v.prompt}: ${v.input}_` : '');
    this.keys.setContent(` ${v.keys}`);
    this.screen.render();
  }

  destroy(): void {
    this.screen.destroy();
  }
}
