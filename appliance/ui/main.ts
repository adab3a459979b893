// register-ui: the till on the terminal (the Linux console on tty1 in the shop, any terminal in the
// demo). A client of registerd's control socket and nothing else: it keeps no state, so it can be
// restarted at any time, and it reconnects by itself when registerd restarts.
//
//   register-ui [--socket PATH] [--keymap FILE]
//   npm run ui -- --socket demo-state/control.sock
//
// Without --keymap the shop's keymap is /etc/register/keymap.json when there is one (the POS keypad's,
// appliance/ui/keymaps/pos-keypad.json, installed there), else the defaults for a PC keyboard.
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { existsSync, realpathSync } from 'node:fs';
import { TillController, type RegisterStatus } from './controller.js';
import { defaultKeymap, loadKeymap, KeymapError } from './keymap.js';
import { ControlLink } from './link.js';
import { TillScreen } from './screen.js';

export interface TillUiOptions {
  socketPath: string;
  keymapFile?: string;
  /** A line for the login screen (the demo shows its PINs there). */
  loginHint?: string;
}

export interface RunningTillUi {
  /** Resolves when the till is left (the quit key) or stopped. */
  done: Promise<void>;
  stop(): void;
}

/** The shop's keymap on the appliance, used when there is no --keymap (docs/till-ui.md). */
export const SITE_KEYMAP_FILE = '/etc/register/keymap.json';

/** The keymap file to load: the one asked for, else the shop's when it exists, else none (defaults). */
export function keymapFileFor(asked: string | undefined, siteFile = SITE_KEYMAP_FILE): string | undefined {
  if (asked) return asked;
  return existsSync(siteFile) ? siteFile : undefined;
}

/** How often the screen redraws without news: the clock and the queue's age move on their own. */
const TICK_MS = 15_000;

export async function runTillUi(opts: TillUiOptions): Promise<RunningTillUi> {
  const keymap = opts.keymapFile ? loadKeymap(opts.keymapFile) : defaultKeymap();
  const link = new ControlLink({ socketPath: opts.socketPath });
  const screen = new TillScreen();
  let scheduled = false;
  const redraw = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      if (!stopped) screen.draw(till.view(screen.width));
    });
  };
  const till = new TillController(
    { call: (m, p) => link.call(m, p), nowMs: () => Date.now() },
    redraw,
    opts.loginHint,
  );
  let stopped = false;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const tick = setInterval(redraw, TICK_MS);
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(tick);
    link.stop();
    screen.destroy();
    finish();
  };
  link.on('state', (s) => till.setStatus(s as RegisterStatus));
  link.on('link', (up) => till.setLink(up));
  screen.onKey((name) => {
    const action = keymap.get(name);
    if (!action) return;
    if (action === 'quit') return stop();
    void till.press(action);
  });
  redraw();
  link.start();
  return { done, stop };
}

async function main(argv: string[]): Promise<void> {
  let values: { socket?: string; keymap?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { socket: { type: 'string' }, keymap: { type: 'string' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(
      `register-ui: ${(err as Error).message}\nusage: register-ui [--socket PATH] [--keymap FILE]\n`,
    );
    process.exit(2);
  }
  const stateDir = process.env.REGISTER_STATE_DIR ?? '/var/lib/register';
  const socketPath = values.socket ?? path.join(stateDir, 'control.sock');
  let ui: RunningTillUi;
  try {
    const keymapFile = keymapFileFor(values.keymap);
    ui = await runTillUi({ socketPath, ...(keymapFile ? { keymapFile } : {}) });
  } catch (err) {
    process.stderr.write(`register-ui: ${err instanceof KeymapError ? err.message : String(err)}\n`);
    process.exit(78);
  }
  process.on('SIGTERM', () => ui.stop());
  process.on('SIGINT', () => ui.stop());
  await ui.done;
  process.exit(0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  void main(process.argv.slice(2));
}
