// registerd as a real process with its devices on real transports: the card terminal simulator on a
// socat pty, the printer simulator on TCP, a serial scanner on another pty. A shift's work through the
// hardware, a printer running out of paper mid-sale, offline card limits, and kill -9 between a card
// request and its result: exactly one charge, the sale completed after the restart.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SerialPortStream } from '@serialport/stream';
import { serialBinding } from '../../appliance/devices/serial-link.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { ptyPair } from '../../scripts/sim/pty.js';
import { TerminalSimulator } from '../../scripts/sim/terminal-sim.js';
import { PrinterSimulator } from '../../scripts/sim/printer-sim.js';
import { Journal } from '../../appliance/journal/journal.js';
import { registerReducer, type RegisterState } from '../../appliance/till/state.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE, PINS, code } from '../support/till-fixtures.js';
import { controlCaller, kill9, startDaemon } from '../support/registerd-process.js';
import { waitFor } from '../support/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The parts of `status` this test reads. */
interface Status {
  devices: Record<string, { state: string; printer?: string; queued?: number }>;
  lastScan: { code: string; ok: boolean } | null;
  sale: { lines: { sku: string; lineId: string }[] } | null;
  offlineCard: { count: number; totalMinor: number };
  pendingCard: unknown;
  receiptNo: number;
}

const WAIT_MS = 10_000; // a bound on every wait below; each normally ends in milliseconds

/** Polls a condition until it holds or the bound passes (the daemon is another process). */
const until = <T>(what: string, probe: () => Promise<T | undefined | false>): Promise<T> =>
  waitFor(what, probe, { timeoutMs: WAIT_MS });

t.test('registerd with its devices on ptys and TCP, across kill -9', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'regdev-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = await bundle(path.join(here, '../../appliance/registerd.ts'), dir);

  const termPty = await ptyPair(dir, 'term');
  const scanPty = await ptyPair(dir, 'scan');
  t.teardown(() => Promise.all([termPty.close(), scanPty.close()]));
  const terminal = new TerminalSimulator({ path: termPty.peer, backoff: { initialMs: 20, maxMs: 100 } });
  await terminal.start();
  t.teardown(() => terminal.stop());
  const printer = new PrinterSimulator({ columns: 42 });
  const printerPort = await printer.listenTcp(0);
  t.teardown(() => printer.stop());
  // The hang-up-aware binding, as the printer simulator's: serialport's own retries a 0-byte read on a
  // hung-up pty for ever when the pair closes first at teardown.
  const scanner = new SerialPortStream({ binding: serialBinding, path: scanPty.peer, baudRate: 9600 });
  await once(scanner, 'open');
  t.teardown(() => new Promise((r) => scanner.close(() => r(undefined))));

  const config = path.join(dir, 'config.json');
  const stateDir = path.join(dir, 'state');
  writeFileSync(
    config,
    JSON.stringify({
      deviceId: 'till-dev',
      storeId: 'demo-store',
      stateDir,
      clock: { assumeTrusted: true },
      seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
      devices: {
        terminal: { kind: 'ecr', path: termPty.device, ackTimeoutMs: 2000, resultTimeoutMs: 30_000 },
        printer: { kind: 'tcp', host: '127.0.0.1', port: printerPort },
        scanners: [{ kind: 'serial', path: scanPty.device }],
      },
    }),
  );
  const call = controlCaller(path.join(stateDir, 'control.sock'), 40_000);
  let d = await startDaemon(bin, config);
  t.teardown(() => d.proc.kill('SIGKILL'));

  const status = async () => (await call('status')) as unknown as Status;
  await until('every device up', async () => {
    const s = await status();
    return ['terminal', 'printer', 'scanner'].every((n) => s.devices[n]?.state === 'ok') && s;
  });
  await call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
  await call('shift.open', { floatCounts: { '1000': 5 } });

  // The scanner: codes typed by a serial scanner ring up; an unknown one is fed back, not thrown.
  scanner.write(`${code('COF-250')}\r\n`);
  scanner.write(`${code('WAT-150')}\r`);
  scanner.write('\n0000000000000\n');
  const fed = await until('three scans', async () => {
    const s = await status();
    return s.lastScan?.code === '0000000000000' && s;
  });
  t.match(fed.lastScan, { ok: false, error: { code: /BARCODE/ } });
  t.match(fed.sale?.lines, [{ sku: 'COF-250' }, { sku: 'WAT-150' }]);

  // Cash: the drawer opens, the receipt prints and is cut.
  t.match(await call('sale.tender', { kind: 'cash', amountMinor: 1000 }), { completed: true, receiptNo: 1 });
  const first = await printer.waitForReceipt('Espresso beans', WAIT_MS);
  t.match(first.text, /7[.,]38/, 'the total is on the paper');
  t.not(first.cut, 'none');
  await until('a drawer kick', async () => printer.kicks.length >= 1);

  // Card online through the terminal.
  await call('sale.scan', { code: code('MUG-CER') });
  t.match(await call('sale.tender', { kind: 'card' }), { completed: true, receiptNo: 2 });
  t.equal(terminal.charges.length, 1);
  // Printed before the paper runs out: a card sale returns once it is journaled, and on a busy machine
  // its receipt could still be in the queue when the roll ends (then two would wait, not one).
  await printer.waitForReceipt('Ceramic mug', WAIT_MS);

  // Paper runs out mid-sale: the sale completes, the receipt waits, and prints when paper is back.
  printer.setState('paper-out');
  await call('sale.scan', { code: code('CHO-100') });
  t.match(await call('sale.tender', { kind: 'cash', amountMinor: 199 }), { completed: true, receiptNo: 3 });
  const waiting = await until('the receipt to wait', async () => {
    const s = await status();
    // The receipt is queued at once; the paper-end state shows once the printer has been polled.
    return s.devices.printer.queued === 1 && s.devices.printer.state === 'fault' && s;
  });
  t.match(waiting.devices.printer, { state: 'fault', printer: 'paper-end' });
  printer.setState('ok');
  const third = await printer.waitForReceipt('Dark chocolate', WAIT_MS);
  t.ok(third, 'the queued receipt printed by itself once paper was back');
  await until('the queue to empty', async () => (await status()).devices.printer.queued === 0);

  // Offline: over the per-card ceiling the cashier is told; within it, approved offline, forwarded later.
  terminal.setOnline(false);
  await call('sale.scan', { code: code('COF-250') });
  await call('sale.setQty', {
    lineId: (await status()).sale!.lines[0]!.lineId,
    qty: 40,
  });
  await t.rejects(call('sale.tender', { kind: 'card' }), {
    code: 'CARD_OFFLINE_LIMIT',
    message: /offline and 259\.60 EUR is over the offline limit of 250\.00 EUR/,
  });
  await call('sale.setQty', {
    lineId: (await status()).sale!.lines[0]!.lineId,
    qty: 1,
  });
  t.match(await call('sale.tender', { kind: 'card' }), { completed: true });
  t.match((await status()).offlineCard, { count: 1, totalMinor: 649 });
  terminal.setOnline(true);
  await until('the SAF outcome', async () => (await status()).offlineCard.count === 0);

  // kill -9 while the customer is at the PIN pad: the request was journaled and sent once; the
  // terminal charges while registerd is down; after the restart the register asks and books it once.
  terminal.hold(true);
  await call('sale.scan', { code: code('BRD-RYE') });
  const requested = once(terminal, 'received');
  const tender = call('sale.tender', { kind: 'card' }).catch((e: unknown) => e);
  const [request] = (await requested) as [{ type: string; txn: string }];
  t.equal(request.type, 'payment.request');
  await kill9(d);
  t.match(await tender, { code: 'CONTROL_UNAVAILABLE' }, 'the caller saw registerd go');
  terminal.hold(false);
  terminal.release(request.txn);
  t.equal(terminal.chargesFor(request.txn), 1);
  d = await startDaemon(bin, config);
  const after = await until('the open card request settled', async () => {
    const s = await status();
    return s.pendingCard === null && s;
  });
  t.equal(after.sale, null, 'the sale completed with the charge the terminal made');
  t.equal(after.receiptNo, 5);
  t.equal(terminal.chargesFor(request.txn), 1, 'charged exactly once');
  t.equal(terminal.requestsFor(request.txn), 1, 'the request was never sent again');
  await printer.waitForReceipt('Rye bread', WAIT_MS);

  // The journal tells the same story: one request, one approved result, one completed sale.
  d.proc.kill('SIGTERM');
  await d.exited;
  const journal = Journal.open<RegisterState>({
    dir: path.join(stateDir, 'journal'),
    deviceId: 'till-dev',
    reducer: registerReducer,
  });
  const events = [...journal.read(1)].flatMap((r) =>
    r.events.filter((e) => e.txn === request.txn || (e.tender as { txn?: string })?.txn === request.txn),
  );
  journal.close();
  t.same(
    events.map((e) => e.type),
    ['card.requested', 'card.result', 'sale.tendered'],
  );
  t.match(events[1], { outcome: 'approved', mode: 'online' });
});
