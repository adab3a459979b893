// `npm start` as a person runs it: the whole demo store with the till on the terminal, in a tmux pane
// of 80×25 with TERM=linux, on free ports. The link is cut for real with the connection switch
// (`npm run net -- down`: the switch's TCP proxy drops the register's link and the terminal simulator
// follows it offline), a card is paid with the terminal's messages live and approved offline, a card
// over the offline limit is refused with the reason in full, and Ctrl-C stops everything: the pane's
// program exits 0 and no process of the store is left.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasSocat } from '../../scripts/sim/pty.js';
import { processesMentioning } from '../support/processes.js';
import { code } from '../support/till-fixtures.js';
import { waitFor } from '../support/wait.js';
import { hasTmux, startPane } from './tmux.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
const ESPRESSO = code('COF-250'); // 6.49
/** The store comes up in seconds (tsx compiles, the ledger migrates): more than a key's answer. */
const START_MS = 60_000;
/** The register sees the switch within its reconnect backoff (3 s in the demo) plus a keepalive. */
const LINK_MS = 30_000;
/** A clean stop takes well under a second; the demo's own hard stop is at 20 s. */
const STOP_MS = 30_000;

// Without socat the card terminal is in-process and never goes offline: nothing here to test.
const skip = !hasSocat() && 'socat is needed for the card terminal that follows the link';

t.test(
  'npm start in a terminal: a card paid offline for real, one refused, Ctrl-C stops all',
  { skip },
  async (t) => {
    if (!hasTmux) throw new Error('tmux is required (CI installs it)');
    // Short: the control socket's path in it must fit in 107 bytes.
    const dir = mkdtempSync(path.join(tmpdir(), 'demo-ui-'));
    t.teardown(async () => {
      // A failed test still leaves nothing running (the tmux server's end hangs the demo up first).
      await waitFor('the demo gone', () => processesMentioning(dir).length === 0, {
        timeoutMs: STOP_MS,
      }).catch(() => {
        for (const pid of processesMentioning(dir)) process.kill(pid, 'SIGKILL');
      });
      rmSync(dir, { recursive: true, force: true });
    });
    const net = (what: string) =>
      execFileSync(tsx, ['scripts/net.ts', what, '--state', dir], { cwd: root, encoding: 'utf8' });

    const till = startPane(t, `${tsx} scripts/demo.ts --state ${dir} --http 0 --mqtt 0`, { cwd: root });
    await till.see(/Who are you\?[\s\S]*1 {2}Ana/, 'the login screen', START_MS);
    await till.see(/ONLINE q\d/, 'the register online', LINK_MS);
    till.keys('1');
    await till.see(/Ana, type your PIN/);
    till.type('1111');
    till.keys('Enter');
    await till.see(/Welcome, Ana/);
    till.keys('F2');
    await till.see(/1 {2}Open shift/);
    till.keys('1');
    await till.see(/count the float/);
    till.type('2');
    till.keys('+');
    await till.see(/Shift open, float 1000\.00/);

    // The switch cuts the link: the register goes offline, and so does the card terminal.
    t.match(net('down'), /net: down .*the card terminal approves offline/);
    await till.see(/OFFLINE q\d/, 'the register offline', LINK_MS);

    till.type(ESPRESSO);
    till.keys('Enter');
    await till.see(/1 Espresso beans 250 g/);
    till.keys('/');
    await till.see(/Terminal: (Present card|Enter PIN|Processing)/, "the terminal's messages live");
    await till.see(/Receipt 1: thank you/);
    await till.see(/card offline 1|offl\.card 1/, 'the offline approval on the status line');

    // Over the offline limit: refused, with what to do instead (the message's second row).
    till.type(ESPRESSO);
    till.keys('Enter');
    await till.see(/1 Espresso beans 250 g/);
    till.type('40');
    till.keys('*');
    await till.see(/40 x 6\.49 +259\.60/);
    till.keys('/');
    await till.see(
      /over\s+the\s+offline\s+limit\s+of\s+250\.00\s+EUR:\s+take\s+cash\s+or\s+another\s+tender\./,
    );

    t.match(net('up'), /net: up/);
    await till.see(/ONLINE q\d/, 'the register online again', LINK_MS);

    // Ctrl-C: the till closes, the store stops, nothing is left.
    till.keys('C-c');
    const status = await waitFor('the demo to exit', () => till.exitStatus() ?? undefined, {
      timeoutMs: STOP_MS,
    }).catch(() => till.exitStatus());
    t.equal(status, 0, 'npm start exits 0 after Ctrl-C');
    t.match(readFileSync(path.join(dir, 'demo.log'), 'utf8'), /"reason":"the till was closed"/);
    // The pane's program is tsx, whose node child may be a moment behind it: a short deadline.
    const left = await waitFor(
      'every process of the demo gone',
      () => processesMentioning(dir).length === 0,
      {
        timeoutMs: 5000,
      },
    ).catch(() => processesMentioning(dir).map((pid) => commandLine(pid)));
    t.equal(left, true, 'no process of the demo is left (no socat, no node)');
  },
);

function commandLine(pid: number): string {
  try {
    return `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`;
  } catch {
    return `${pid}: gone`;
  }
}
