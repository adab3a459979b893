// The ESC/POS printer driver against the printer simulator through an in-memory transport, with timers
// that fire only when the test says (status timeouts, the poll interval) and the reprint queue on the
// fault-injecting file system, so a power cut keeps only what was synced.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { manualClock } from '../../../appliance/clock.js';
import { RegisterError } from '../../../appliance/errors.js';
import type { Logger } from '../../../appliance/log.js';
import type { DeviceHealth, Timers } from '../../../appliance/devices/device.js';
import {
  EscPosPrinter,
  PRINTER_DEFAULTS,
  describePrinter,
  type EscPosPrinterOptions,
  type PrinterHealth,
  type PrinterObservation,
} from '../../../appliance/devices/printer/printer.js';
import type {
  PrinterTransport,
  PrinterTransportEvents,
} from '../../../appliance/devices/printer/transport.js';
import type { ReceiptDoc } from '../../../appliance/devices/printer/receipt-render.js';
import {
  PrinterSimulator,
  type SimConnection,
  type SimPrinterState,
} from '../../../scripts/sim/printer-sim.js';
import { FaultFs } from '../../support/fault-fs.js';
import { Rng } from '../../support/rng.js';
import { sale } from '../../support/receipt-fixtures.js';

/** Timers that fire only when the test says so. */
class ManualTimers implements Timers {
  private nextId = 1;
  private readonly pending = new Map<number, { fn: () => void; ms: number }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { fn, ms });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  /** The delays of the timers now pending. */
  delays(): number[] {
    return [...this.pending.values()].map((p) => p.ms).sort((a, b) => a - b);
  }

  /** Fire every pending timer of this delay; how many fired. */
  fire(ms: number): number {
    let n = 0;
    for (const [id, p] of [...this.pending]) {
      if (p.ms !== ms) continue;
      this.pending.delete(id);
      p.fn();
      n++;
    }
    return n;
  }
}

/** Let every promise continuation run (the simulator answers synchronously). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A cable to the simulator in memory: plug and unplug at will; every write recorded. */
class MemoryTransport extends EventEmitter<PrinterTransportEvents> implements PrinterTransport {
  readonly name = 'memory';
  isUp = false;
  readonly writes: number[][] = [];
  /** Rewrite what the printer sends back (inject noise, swallow a reply). */
  filter: ((bytes: Buffer) => Buffer) | null = null;
  /** Writes after this many never complete: a printer that stopped taking data. */
  hangAfter = Infinity;
  private conn: SimConnection | null = null;

  constructor(
    private readonly sim: PrinterSimulator,
    private readonly upAtStart = true,
  ) {
    super();
  }

  async start(): Promise<void> {
    if (this.upAtStart) this.plug();
  }

  async stop(): Promise<void> {
    this.conn?.close();
    this.conn = null;
    this.isUp = false;
  }

  health(): DeviceHealth {
    return this.isUp ? { state: 'ok' } : { state: 'down', detail: 'memory cable pulled' };
  }

  plug(): void {
    this.conn = this.sim.connect((bytes) => {
      const out = this.filter ? this.filter(bytes) : bytes;
      if (out.length) this.emit('data', out);
    });
    this.isUp = true;
    this.emit('up');
  }

  unplug(): void {
    this.conn?.close();
    this.conn = null;
    this.isUp = false;
    this.emit('down', 'cable pulled');
  }

  write(bytes: Uint8Array): Promise<void> {
    if (!this.isUp || !this.conn)
      return Promise.reject(
        new RegisterError('DEVICE_DOWN', 'memory cable pulled', { reason: 'cable pulled' }),
      );
    this.writes.push([...bytes]);
    if (this.writes.length > this.hangAfter) return new Promise(() => {});
    this.conn.write(bytes);
    return Promise.resolve();
  }
}

const QUEUE_FILE = '/state/printer/reprint-queue.json';
const DLE_EOT = (n: number): number[] => [0x10, 0x04, n];

function setup(
  o: {
    state?: SimPrinterState;
    up?: boolean;
    io?: FaultFs;
    log?: Logger;
    printer?: Partial<EscPosPrinterOptions>;
  } = {},
) {
  const sim = new PrinterSimulator({ state: o.state ?? 'ok' });
  const transport = new MemoryTransport(sim, o.up ?? true);
  const timers = new ManualTimers();
  const clock = manualClock();
  const io = o.io ?? new FaultFs(new Rng(1));
  const changes: PrinterHealth[] = [];
  const printer = new EscPosPrinter({
    transport,
    queueFile: QUEUE_FILE,
    queueFs: io,
    render: { columns: 42 },
    timers,
    nowMs: clock.nowMs,
    log: o.log,
    onChange: (h) => changes.push(h),
    ...o.printer,
  });
  const printedNos = (): number[] => sim.receipts.map((r) => Number(/No\. (\d+)/.exec(r.text)?.[1] ?? NaN));
  return { sim, transport, timers, clock, io, printer, changes, printedNos };
}

/** What the queue file holds now (as a fresh start would read it). */
function queuedOnDisk(io: FaultFs): number[] {
  if (io.size(QUEUE_FILE) < 0) return [];
  const doc = JSON.parse(io.readFile(QUEUE_FILE).toString('utf8')) as { receipts: { doc: ReceiptDoc }[] };
  return doc.receipts.map((r) => r.doc.receiptNo);
}

/** Logs kept for assertions. */
function memoryLog(): Logger & { lines: { level: string; msg: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    void lines.push({ level, msg, fields });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

t.test('prints a receipt: status first, then the job; queue empty after', async (t) => {
  const r = setup();
  const printed: unknown[] = [];
  r.printer.on('printed', (p) => printed.push(p));
  await r.printer.start();
  await settle();
  const pollsAtStart = r.transport.writes.length;
  t.same(r.transport.writes, [DLE_EOT(1), DLE_EOT(2), DLE_EOT(3), DLE_EOT(4)], 'a status poll on start');
  t.same(await r.printer.print(sale(1)), { printed: true, queued: 0 });
  const after = r.transport.writes.slice(pollsAtStart);
  t.same(after.slice(0, 4), [DLE_EOT(1), DLE_EOT(2), DLE_EOT(3), DLE_EOT(4)], 'polled before the job');
  t.same(after[4]!.slice(0, 2), [0x1b, 0x40], 'then the job, from ESC @');
  t.same(after[4]!.slice(-3), [0x1d, 0x72, 0x31], 'ending with GS r 1');
  t.equal(r.sim.receipts.length, 1);
  t.ok(r.sim.receipts[0]!.text.includes('No. 1'));
  t.ok(r.sim.receipts[0]!.text.includes('Espresso beans 250 g'));
  t.equal(r.sim.receipts[0]!.cut, 'partial', 'the cut is part of the job');
  t.same(r.sim.kicks, [], 'no drawer kick inside a receipt job');
  t.match(printed, [{ kind: 'sale', receiptNo: 1, waitedMs: 0 }]);
  t.same(queuedOnDisk(r.io), [], 'the queue file is empty again');
  t.match(r.printer.health(), { state: 'ok', printer: 'ok', queued: 0 });
  t.notOk('detail' in r.printer.health());
  await settle();
  t.same(r.timers.delays(), [PRINTER_DEFAULTS.idlePollIntervalMs], 'idle: a slow poll is due');
  await r.printer.stop();
});

t.test('the GS r 1 answer is read, even when it beats the write callback; nothing left over', async (t) => {
  const log = memoryLog();
  const r = setup({ log });
  await r.printer.start();
  for (let i = 1; i <= 3; i++) t.match(await r.printer.print(sale(i)), { printed: true });
  await settle();
  t.same(r.printedNos(), [1, 2, 3]);
  t.same(
    log.lines.filter((l) => l.level !== 'info'),
    [],
    'no stray bytes, no missing answer',
  );
  await r.printer.stop();
});

t.test('paper near end still prints and says so', async (t) => {
  const r = setup({ state: 'paper-near-end' });
  await r.printer.start();
  t.same(await r.printer.print(sale(1)), { printed: true, queued: 0 });
  t.match(r.printer.health(), { state: 'ok', printer: 'paper-near-end', detail: 'paper running low' });
  await r.printer.stop();
});

for (const [state, printer, detail] of [
  ['paper-out', 'paper-end', 'paper out'],
  ['cover-open', 'cover-open', 'printer cover open'],
] as const) {
  t.test(`${state}: the receipt waits, then prints by itself at the next poll`, async (t) => {
    const r = setup({ state });
    await r.printer.start();
    r.clock.advance(1000);
    t.same(await r.printer.print(sale(1)), { printed: false, queued: 1 });
    t.same(r.sim.receipts, [], 'nothing written to a printer that cannot print');
    t.ok(
      r.transport.writes.every((w) => w.length === 3),
      'only status requests were sent',
    );
    t.match(r.printer.health(), {
      state: 'fault',
      printer,
      detail: `${detail}; 1 receipt waiting`,
      queued: 1,
    });
    t.same(queuedOnDisk(r.io), [1], 'in the durable queue');
    await settle();
    t.same(r.timers.delays(), [PRINTER_DEFAULTS.pollIntervalMs], 'polling briskly while it waits');

    t.equal(r.timers.fire(PRINTER_DEFAULTS.pollIntervalMs), 1);
    await settle();
    t.same(r.sim.receipts, [], 'still not ready: still waiting');
    t.same(
      r.timers.delays(),
      [PRINTER_DEFAULTS.pollIntervalMs],
      'and polling on, at the same bounded interval',
    );

    r.sim.setState('ok');
    r.clock.advance(4000);
    const printed = new Promise((resolve) => r.printer.once('printed', resolve));
    r.timers.fire(PRINTER_DEFAULTS.pollIntervalMs);
    t.match(await printed, { receiptNo: 1, waitedMs: 4000 });
    t.same(r.printedNos(), [1]);
    t.match(r.printer.health(), { state: 'ok', printer: 'ok', queued: 0 });
    t.same(queuedOnDisk(r.io), []);
    await r.printer.stop();
  });
}

t.test('status timeout: one unanswered request, not printed, queued, health says so', async (t) => {
  const r = setup({ state: 'offline' });
  await r.printer.start();
  await settle();
  t.same(r.timers.delays(), [PRINTER_DEFAULTS.statusTimeoutMs], 'the start-up poll waits for an answer');
  r.timers.fire(PRINTER_DEFAULTS.statusTimeoutMs);
  await settle();
  const sent = r.transport.writes.length;
  let result: unknown = null;
  void r.printer.print(sale(1)).then((res) => (result = res));
  await settle();
  t.equal(result, null, 'waiting for the status answer');
  t.same(r.transport.writes.slice(sent), [DLE_EOT(1)], 'a poll stops at the first silence');
  r.timers.fire(PRINTER_DEFAULTS.statusTimeoutMs);
  await settle();
  t.same(result, { printed: false, queued: 1 });
  t.match(r.printer.health(), {
    state: 'down',
    printer: 'unknown',
    detail: 'receipt printer not answering (no reply); 1 receipt waiting',
  });
  await r.printer.stop();
});

t.test('unplugged: queued at once; back: prints by itself, oldest first', async (t) => {
  const r = setup({ up: false });
  await r.printer.start();
  t.match(r.printer.health(), {
    state: 'down',
    detail: 'receipt printer not connected (memory cable pulled)',
  });
  t.same(await r.printer.print(sale(1)), { printed: false, queued: 1 });
  t.same(await r.printer.print(sale(2)), { printed: false, queued: 2 });
  t.same(r.transport.writes, [], 'nothing sent down a pulled cable');
  t.same(r.timers.delays(), [], 'no polling while the cable is out: its return starts the next run');
  const both = new Promise<void>((resolve) => r.printer.on('printed', (p) => p.receiptNo === 2 && resolve()));
  r.transport.plug();
  await both;
  t.same(r.printedNos(), [1, 2]);
  t.match(r.printer.health(), { state: 'ok', queued: 0 });

  r.transport.unplug();
  t.match(r.printer.health(), { state: 'down', detail: 'receipt printer not connected (cable pulled)' });
  t.same(await r.printer.print(sale(3)), { printed: false, queued: 1 });
  await r.printer.stop();
});

t.test('a receipt queued while a poll is on the wire waits for a poll of its own', async (t) => {
  const r = setup();
  await r.printer.start();
  await settle();
  // The next (idle) poll gets three answers; the fourth is held until the paper has run out.
  let passed = 0;
  const held: Buffer[] = [];
  r.transport.filter = (bytes) => (passed++ < 3 ? bytes : (held.push(bytes), Buffer.alloc(0)));
  r.timers.fire(PRINTER_DEFAULTS.idlePollIntervalMs);
  await settle();
  t.equal(held.length, 1, 'the poll waits for its last answer');
  const result = r.printer.print(sale(1));
  r.sim.setState('paper-out');
  r.transport.filter = null;
  r.transport.emit('data', Buffer.concat(held)); // "ok", given before the receipt was queued
  t.same(await result, { printed: false, queued: 1 }, 'the older "ok" is not enough');
  t.same(r.sim.receipts, []);
  t.match(r.printer.health(), { printer: 'paper-end' });
  await r.printer.stop();
});

t.test('reprintQueued() tries now; the oldest prints first', async (t) => {
  const r = setup({ state: 'paper-out' });
  await r.printer.start();
  for (let i = 1; i <= 3; i++) await r.printer.print(sale(i));
  t.same(await r.printer.reprintQueued(), { printed: 0, queued: 3 });
  r.sim.setState('ok');
  t.same(await r.printer.reprintQueued(), { printed: 3, queued: 0 });
  t.same(r.printedNos(), [1, 2, 3]);
  await r.printer.stop();
});

t.test('a new receipt prints after the ones waiting before it', async (t) => {
  const r = setup({ state: 'paper-out' });
  await r.printer.start();
  await r.printer.print(sale(1));
  r.sim.setState('ok');
  t.same(await r.printer.print(sale(2)), { printed: true, queued: 0 });
  t.same(r.printedNos(), [1, 2]);
  await r.printer.stop();
});

t.test('the queue is bounded: the oldest is dropped and logged', async (t) => {
  const log = memoryLog();
  const r = setup({ state: 'paper-out', log, printer: { maxQueued: 3 } });
  const dropped: unknown[] = [];
  r.printer.on('dropped', (d) => dropped.push(d));
  await r.printer.start();
  for (let i = 1; i <= 5; i++) await r.printer.print(sale(i));
  t.equal(r.printer.health().queued, 3);
  t.same(queuedOnDisk(r.io), [3, 4, 5]);
  t.match(dropped, [
    { receiptNo: 1, reason: 'queue-full' },
    { receiptNo: 2, reason: 'queue-full' },
  ]);
  t.match(
    log.lines.filter((l) => l.level === 'warn').map((l) => l.fields),
    [{ receiptNo: 1, maxQueued: 3 }, { receiptNo: 2 }],
  );
  r.sim.setState('ok');
  await r.printer.reprintQueued();
  t.same(r.printedNos(), [3, 4, 5]);
  await r.printer.stop();
});

t.test('durable: after a power cut the waiting receipt is still there and prints', async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const io = new FaultFs(new Rng(seed));
    const before = setup({ state: 'paper-out', io });
    await before.printer.start();
    await before.printer.print(sale(1));
    await before.printer.print(sale(2));
    io.crash(); // no stop(): the power is gone
    const after = setup({ io });
    await after.printer.start();
    const two = after.sim.findReceipt('No. 2')
      ? Promise.resolve()
      : new Promise<void>((resolve) => after.printer.on('printed', (p) => p.receiptNo === 2 && resolve()));
    await two;
    if (after.printedNos().join() !== '1,2') t.fail(`seed ${seed}: printed ${after.printedNos().join()}`);
    await after.printer.stop();
  }
  t.pass('20 seeds: both receipts survived and printed in order');
});

t.test('durable: a cut while the job is being written prints it again; a printed one does not', async (t) => {
  const io = new FaultFs(new Rng(3));
  const before = setup({ io });
  await before.printer.start();
  await settle();
  t.match(await before.printer.print(sale(1)), { printed: true });
  before.transport.hangAfter = before.transport.writes.length + 4; // the poll goes out, the job never completes
  void before.printer.print(sale(2));
  await settle();
  t.same(queuedOnDisk(io), [2], 'queued before anything was sent');
  io.crash();
  const after = setup({ io });
  await after.printer.start();
  await after.printer.reprintQueued();
  t.same(after.printedNos(), [2], 'the interrupted one prints again; the printed one does not');
  await after.printer.stop();
});

t.test('a damaged queue file (both copies) starts empty and says so', async (t) => {
  const io = new FaultFs(new Rng(1));
  io.put(QUEUE_FILE, Buffer.from('{"v":1,"nextId":'));
  io.put(`${QUEUE_FILE}.prev`, Buffer.from('null'));
  const log = memoryLog();
  const r = setup({ io, log });
  await r.printer.start();
  t.equal(r.printer.health().queued, 0);
  t.match(log.lines, [{ level: 'error', msg: 'reprint queue unreadable; starting empty' }]);
  t.match(await r.printer.print(sale(1)), { printed: true });
  await r.printer.stop();
});

t.test('a receipt that cannot be rendered is dropped; the ones behind it print', async (t) => {
  const log = memoryLog();
  const r = setup({ state: 'paper-out', log });
  const dropped: unknown[] = [];
  r.printer.on('dropped', (d) => dropped.push(d));
  await r.printer.start();
  await r.printer.print({ kind: 'sale', receiptNo: 9 } as ReceiptDoc);
  await r.printer.print(sale(10));
  r.sim.setState('ok');
  t.same(await r.printer.reprintQueued(), { printed: 1, queued: 0 });
  t.same(r.printedNos(), [10]);
  t.match(dropped, [{ receiptNo: 9, reason: 'unprintable' }]);
  t.match(
    log.lines.filter((l) => l.level === 'error'),
    [{ fields: { receiptNo: 9 } }],
  );
  await r.printer.stop();
});

t.test('bytes that are not the awaited answer are dropped, never taken for it', async (t) => {
  const log = memoryLog();
  const r = setup({ log });
  let injected = false;
  r.transport.filter = (bytes) => {
    // A late GS r answer (0x00) and noise arrive just before the answer to a status request.
    if (!injected && bytes.length === 1 && bytes[0] === 0x12) {
      injected = true;
      return Buffer.from([0x00, 0x0f, 0xff, 0x12]);
    }
    return bytes;
  };
  await r.printer.start();
  t.same(await r.printer.print(sale(1)), { printed: true, queued: 0 });
  t.match(r.printer.health(), { printer: 'ok' }, 'not misread as paper end');
  t.match(
    log.lines.filter((l) => l.level === 'warn'),
    [
      {
        msg: 'unexpected bytes from the printer dropped',
        fields: { dir: 'in', bytes: '00 0f ff', count: 3 },
      },
    ],
  );
  await r.printer.stop();
});

t.test('a missing GS r answer is waited for (bounded), then the driver goes on', async (t) => {
  const log = memoryLog();
  const r = setup({ log });
  r.transport.filter = (bytes) => (bytes.length === 1 && bytes[0] === 0x00 ? Buffer.alloc(0) : bytes);
  await r.printer.start();
  t.same(await r.printer.print(sale(1)), { printed: true, queued: 0 }, 'printed once the job was written');
  await settle();
  t.ok(r.timers.delays().includes(PRINTER_DEFAULTS.jobReplyTimeoutMs), 'waiting for the end of the job');
  let second: unknown = null;
  void r.printer.print(sale(2)).then((res) => (second = res));
  await settle();
  t.equal(second, null, 'the next job waits its turn');
  r.timers.fire(PRINTER_DEFAULTS.jobReplyTimeoutMs);
  await settle();
  t.same(second, { printed: true, queued: 0 });
  t.match(
    log.lines.filter((l) => l.level === 'warn'),
    [{ msg: 'no answer to the end of the job yet' }],
  );
  await r.printer.stop();
});

t.test('drawer kick: ESC p after a status poll, refused plainly when it cannot be sent', async (t) => {
  const r = setup({ printer: { drawerKick: { pin: 5, onMs: 100, offMs: 400 } } });
  await r.printer.start();
  await r.printer.kickDrawer();
  t.match(r.sim.kicks, [{ pin: 5, onMs: 100, offMs: 400, realtime: false }]);
  t.same(r.transport.writes.at(-1), [0x1b, 0x70, 1, 50, 200]);

  r.sim.setState('paper-out');
  await t.rejects(r.printer.kickDrawer(), { code: 'PRINTER_NOT_READY', details: { printer: 'paper-end' } });
  r.sim.setState('offline');
  const kick = r.printer.kickDrawer();
  await settle();
  r.timers.fire(PRINTER_DEFAULTS.statusTimeoutMs);
  await t.rejects(kick, { code: 'DEVICE_TIMEOUT' });
  r.transport.unplug();
  await t.rejects(r.printer.kickDrawer(), { code: 'DEVICE_DOWN' });
  t.equal(r.sim.kicks.length, 1, 'only the first kick was sent');
  await r.printer.stop();
  await t.rejects(r.printer.kickDrawer(), { code: 'DEVICE_DOWN' }, 'stopped');
});

t.test('a printer that stops taking data: bounded, reported, nothing piles up', async (t) => {
  const r = setup();
  await r.printer.start();
  await settle();
  r.transport.hangAfter = r.transport.writes.length; // from now on no write completes
  let result: unknown = null;
  void r.printer.print(sale(1)).then((res) => (result = res));
  await settle();
  r.timers.fire(PRINTER_DEFAULTS.statusTimeoutMs);
  await settle();
  t.same(result, { printed: false, queued: 1 });
  t.match(r.printer.health(), { state: 'down', detail: /not answering/ });
  await r.printer.stop();
});

t.test('print before start waits in the queue; start prints it', async (t) => {
  const r = setup();
  t.same(await r.printer.print(sale(1)), { printed: false, queued: 1 });
  const printed = new Promise((resolve) => r.printer.once('printed', resolve));
  await r.printer.start();
  t.match(await printed, { receiptNo: 1 });
  await r.printer.stop();
});

t.test('health changes are told once each, with the time of the change', async (t) => {
  const r = setup();
  const events: PrinterHealth[] = [];
  r.printer.on('change', (h) => events.push(h));
  await r.printer.start();
  await settle();
  r.clock.advance(5000);
  r.sim.setState('cover-open');
  await r.printer.print(sale(1));
  t.same(events, r.changes, 'the event and the onChange option see the same');
  t.match(
    events.map((h) => [h.state, h.printer, h.queued]),
    [
      ['down', 'unknown', 0], // connecting
      ['ok', 'ok', 0],
      ['ok', 'ok', 1], // queued, before the poll
      ['fault', 'cover-open', 1],
    ],
  );
  const last = events.at(-1)!;
  t.equal(last.sinceMs, r.clock.nowMs());
  await r.printer.stop();
  t.match(r.printer.health(), { state: 'down', detail: /not started/ });
  t.equal(r.transport.listenerCount('data'), 0, 'stop() removes its own listeners');
});

t.test('options are checked at start', async (t) => {
  for (const bad of [
    { statusTimeoutMs: 0 },
    { maxQueued: 1.5 },
    { pollIntervalMs: -1 },
    { idlePollIntervalMs: -1 },
  ])
    await t.rejects(setup({ printer: bad }).printer.start(), RangeError, JSON.stringify(bad));
  const off = setup({ printer: { idlePollIntervalMs: 0 } });
  await off.printer.start();
  await settle();
  t.same(off.timers.delays(), [], 'idle polling off');
  await off.printer.stop();
});

t.test('the status line, as a table', async (t) => {
  const rows: [PrinterObservation, number, ReturnType<typeof describePrinter>][] = [
    [{ kind: 'stopped' }, 0, { state: 'down', detail: 'receipt printer not started', printer: 'unknown' }],
    [
      { kind: 'connecting' },
      0,
      { state: 'down', detail: 'checking the receipt printer', printer: 'unknown' },
    ],
    [
      { kind: 'down', reason: 'ENOENT' },
      2,
      {
        state: 'down',
        detail: 'receipt printer not connected (ENOENT); 2 receipts waiting',
        printer: 'unknown',
      },
    ],
    [
      { kind: 'silent', reason: 'no reply' },
      0,
      { state: 'down', detail: 'receipt printer not answering (no reply)', printer: 'unknown' },
    ],
    [{ kind: 'status', state: 'ok' }, 0, { state: 'ok', printer: 'ok' }],
    [{ kind: 'status', state: 'ok' }, 1, { state: 'ok', detail: '1 receipt waiting', printer: 'ok' }],
    [
      { kind: 'status', state: 'paper-near-end' },
      0,
      { state: 'ok', detail: 'paper running low', printer: 'paper-near-end' },
    ],
    [
      { kind: 'status', state: 'paper-end' },
      0,
      { state: 'fault', detail: 'paper out', printer: 'paper-end' },
    ],
    [
      { kind: 'status', state: 'cover-open' },
      0,
      { state: 'fault', detail: 'printer cover open', printer: 'cover-open' },
    ],
    [
      { kind: 'status', state: 'offline' },
      0,
      { state: 'fault', detail: 'printer offline', printer: 'offline' },
    ],
    [
      { kind: 'status', state: 'error' },
      0,
      { state: 'fault', detail: 'printer error: switch it off and on', printer: 'error' },
    ],
  ];
  for (const [o, queued, want] of rows)
    t.same(describePrinter(o, queued), want, `${JSON.stringify(o)} ${queued}`);
});
