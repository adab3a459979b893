// A program in a tmux pane the size of the shop's console (80×25, TERM=linux), driven as a cashier
// would: keys in with send-keys, the screen read back with capture-pane. Every wait polls the screen
// with a deadline and fails showing the screen as it was.
import type { Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { waitFor } from '../support/wait.js';

export const hasTmux = spawnSync('tmux', ['-V']).status === 0;

/** How long the screen has to show something: a key's answer comes in milliseconds, a start in seconds. */
const SEE_MS = 15_000;

export interface Pane {
  screen(): string;
  keys(...keys: string[]): void;
  /** Type a string one key at a time. */
  type(text: string): void;
  /** Wait until the screen shows `re`; fail with the screen as it was. */
  see(re: RegExp, what?: string, timeoutMs?: number): Promise<string>;
  /** The pane's program's exit status (128 + n: killed by signal n), or null while it runs. */
  exitStatus(): number | null;
}

/** `command` (a shell line) in its own tmux server, killed at teardown; the pane stays after it exits. */
export function startPane(t: Test, command: string, opts: { cwd?: string } = {}): Pane {
  const socketDir = mkdtempSync(path.join(tmpdir(), 'tmux-'));
  const tmuxSocket = path.join(socketDir, 'tmux.sock');
  t.teardown(() => {
    spawnSync('tmux', ['-S', tmuxSocket, 'kill-server']);
    rmSync(socketDir, { recursive: true, force: true });
  });
  const tmux = (...args: string[]) => execFileSync('tmux', ['-S', tmuxSocket, ...args], { encoding: 'utf8' });
  // The command runs from a script, so the tmux server's own command line (it keeps its arguments)
  // does not name what the test looks for among the processes left. The script writes the exit status
  // down: tmux's own pane_dead_status can lag the pane's end by more than a test waits.
  const script = path.join(socketDir, 'run.sh');
  const statusFile = path.join(socketDir, 'status');
  writeFileSync(
    script,
    `${opts.cwd ? `cd '${opts.cwd}' || exit 1\n` : ''}TERM=linux ${command}\necho $? > ${statusFile}\n`,
  );
  // remain-on-exit, set in the same tmux command as the session: the last screen stays to be read.
  tmux(
    'new-session',
    '-d',
    '-s',
    'till',
    '-x',
    '80',
    '-y',
    '25',
    `sh ${script}`,
    ';',
    'set-option',
    '-t',
    'till',
    'remain-on-exit',
    'on',
  );
  const screen = () => tmux('capture-pane', '-p', '-t', 'till');
  const keys = (...k: string[]) => void tmux('send-keys', '-t', 'till', ...k);
  return {
    screen,
    keys,
    type: (text) => keys(...[...text]),
    see: async (re, what = String(re), timeoutMs = SEE_MS) => {
      try {
        return await waitFor(what, () => re.test(screen()) && screen(), { timeoutMs, intervalMs: 50 });
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- screen ---\n${screen()}`, { cause: err });
      }
    },
    exitStatus: () => {
      let text = '';
      try {
        text = readFileSync(statusFile, 'utf8').trim();
      } catch {
        // not written yet: still running
      }
      // Empty: caught between the shell creating the file and writing it.
      return text ? Number(text) : null;
    },
  };
}
