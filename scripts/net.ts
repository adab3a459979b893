// `npm run net -- down|up|status [--state DIR]`: the demo store's internet connection switch.
//   down     cut the register's link to the ledger (and the card terminal's to its host)
//   up       restore it; the register reconnects on its own backoff, within a few seconds (the demo's
//            registerd retries at most 3 s apart; the switch reads its file every 250 ms)
//   status   the switch's position and the register's sync queue (pending records, oldest age)
// It writes `up` or `down` to <state>/net in one step (temp file + rename); the running demo polls it.
import { callControl } from '../appliance/control/client.js';
import {
  DemoError,
  formatAge,
  readNetFile,
  requireRunningDemo,
  parseDemoCommand,
  writeFileAtomic,
} from './demo/state.js';

const USAGE = 'usage: npm run net -- down|up|status [--state DIR]';
/** How long to wait for the register's status, ms: it answers in milliseconds unless a card payment runs. */
const STATUS_TIMEOUT_MS = 5000;

interface SyncFigures {
  state: string;
  pending: number;
  oldestPendingTs: number | null;
  ackedThrough: number;
  lastSeq: number;
  lastError?: string;
}

async function syncLine(socket: string): Promise<string> {
  try {
    const answer = await callControl(socket, 'status', {}, STATUS_TIMEOUT_MS);
    if (!answer.ok) return `register: ${answer.error.code}: ${answer.error.message}`;
    const sync = (answer.result as { sync: SyncFigures | null }).sync;
    if (!sync) return 'register: no link to the ledger configured';
    const oldest =
      sync.oldestPendingTs === null ? '' : `, the oldest ${formatAge(Date.now() - sync.oldestPendingTs)} old`;
    const error = sync.lastError && sync.state !== 'connected' ? ` (last error: ${sync.lastError})` : '';
    return `register: ${sync.state}${error}; ${sync.pending} record${sync.pending === 1 ? '' : 's'} not yet in the ledger${oldest}`;
  } catch (err) {
    return `register: not answering (${(err as Error).message})`;
  }
}

async function main(argv: string[]): Promise<number> {
  const { stateDir, positionals } = parseDemoCommand(argv, USAGE);
  const [what, ...rest] = positionals;
  if (rest.length || (what !== 'up' && what !== 'down' && what !== 'status'))
    throw new DemoError(
      `${what === undefined ? 'say down, up or status' : `not a net command: ${positionals.join(' ')}`}\n${USAGE}`,
      2,
    );
  const demo = requireRunningDemo(stateDir);
  if (what !== 'status') {
    writeFileAtomic(demo.netFile, `${what}\n`);
    process.stdout.write(
      what === 'down'
        ? `net: down (the register is cut off from the ledger${demo.devices.terminal === 'ecr' ? '; the card terminal approves offline' : ''})\n`
        : 'net: up (the register reconnects within a few seconds and sends what it queued)\n',
    );
    return 0;
  }
  const state = readNetFile(demo.netFile) ?? `unreadable (${demo.netFile} holds neither up nor down)`;
  process.stdout.write(`net: ${state}\n${await syncLine(demo.controlSocket)}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`net: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(err instanceof DemoError ? err.exitCode : 1);
  },
);
