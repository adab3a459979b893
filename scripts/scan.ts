// `npm run scan -- CODE [--state DIR]`: scan a barcode at the demo store's register, as a scanner would.
// With the demo's serial scanner (socat installed) the code goes down its line as `CODE\r\n`, and what
// became of it is the register's `lastScan`; without one it is rung up through the control socket
// (`sale.scan`). Exit status 0 when a line was rung up, 1 when the register refused the code (not logged
// in, no shift, unknown barcode …), 2 for a code that is no barcode.
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { callControl } from '../appliance/control/client.js';
import { DemoError, parseDemoCommand, requireRunningDemo } from './demo/state.js';

const USAGE = 'usage: npm run scan -- CODE [--state DIR]   (e.g. npm run scan -- 4006381333900)';
/** What a scanner sends at most (docs/devices.md): longer reads are rejected by the register anyway. */
const MAX_CODE_CHARS = 64;
/** How long the register has to read the code off the line and ring it up, ms (it takes milliseconds). */
const SCAN_TIMEOUT_MS = 5000;
const CALL_TIMEOUT_MS = 10_000;

interface Scan {
  code: string;
  atMs: number;
  ok: boolean;
  name?: string;
  error?: { code: string; message: string };
}
interface Status {
  lastScan: Scan | null;
  devices: Record<string, { state: string; detail?: string }>;
  sale: { lines: unknown[]; totals: { totalMinor: number } } | null;
}

/** A code a scanner could send: 1 to 64 printable ASCII characters. */
function checkCode(code: string | undefined): string {
  if (code === undefined || code === '') throw new DemoError(`which barcode?\n${USAGE}`, 2);
  if (code.length > MAX_CODE_CHARS)
    throw new DemoError(`a barcode is at most ${MAX_CODE_CHARS} characters; this one has ${code.length}`, 2);
  if (!/^[\x20-\x7e]+$/.test(code))
    throw new DemoError(
      `a barcode is printable characters only (letters, digits, punctuation): ${JSON.stringify(code)}`,
      2,
    );
  return code;
}

async function call(socket: string, method: string, params: unknown = {}) {
  return callControl(socket, method, params, CALL_TIMEOUT_MS);
}

async function status(socket: string): Promise<Status> {
  const answer = await call(socket, 'status');
  if (!answer.ok) throw new DemoError(`the register refused status: ${answer.error.message}`);
  return answer.result as Status;
}

/** Writes the code down the scanner's line and waits for the register to report what became of it. */
async function scanOnTheLine(socket: string, peer: string, code: string, before: Scan | null): Promise<Scan> {
  // O_NOCTTY: the pty must not become this process's terminal. No O_CREAT: a link gone is an error.
  const fd = openSync(peer, constants.O_WRONLY | constants.O_NOCTTY);
  try {
    writeSync(fd, `${code}\r\n`);
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + SCAN_TIMEOUT_MS;
  for (;;) {
    const last = (await status(socket)).lastScan;
    if (last && (last.atMs !== before?.atMs || last.code !== before?.code)) return last;
    if (Date.now() > deadline)
      throw new DemoError(`the register did not read the scan within ${SCAN_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(argv: string[]): Promise<number> {
  const { stateDir, positionals } = parseDemoCommand(argv, USAGE);
  if (positionals.length > 1) throw new DemoError(`one barcode at a time\n${USAGE}`, 2);
  const code = checkCode(positionals[0]);
  const demo = requireRunningDemo(stateDir);
  const socket = demo.controlSocket;
  const before = await status(socket);
  const scanner = before.devices.scanner;

  let scan: Scan;
  let via: string;
  if (demo.scannerPeer && scanner?.state === 'ok') {
    scan = await scanOnTheLine(socket, demo.scannerPeer, code, before.lastScan);
    via = 'serial scanner';
  } else {
    if (demo.scannerPeer)
      process.stderr.write(
        `the scanner is ${scanner?.state ?? 'not there'}${scanner?.detail ? ` (${scanner.detail})` : ''}: ` +
          'sending the code through the control socket\n',
      );
    const answer = await call(socket, 'sale.scan', { code });
    scan = answer.ok
      ? { code, atMs: Date.now(), ok: true, name: (answer.result as { line?: { name?: string } }).line?.name }
      : {
          code,
          atMs: Date.now(),
          ok: false,
          error: { code: answer.error.code, message: answer.error.message },
        };
    via = 'control socket';
  }
  if (!scan.ok) {
    process.stdout.write(`${code}: refused (${via}): ${scan.error?.code}: ${scan.error?.message}\n`);
    return 1;
  }
  const sale = (await status(socket)).sale;
  const figures = sale
    ? ` (sale: ${sale.lines.length} line${sale.lines.length === 1 ? '' : 's'}, total ${(sale.totals.totalMinor / 100).toFixed(2)})`
    : '';
  process.stdout.write(`${code}: ${scan.name ?? 'rung up'}${figures} (${via})\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    const what =
      err instanceof DemoError ? e.message : `${e?.code ? `${e.code}: ` : ''}${e?.message ?? String(err)}`;
    process.stderr.write(`scan: ${what}\n`);
    process.exit(err instanceof DemoError ? err.exitCode : 1);
  },
);
