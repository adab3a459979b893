// The receipt printer, and the cash drawer wired to its kick port, over any PrinterTransport. A receipt
// goes into a durable reprint queue before anything is sent and leaves it only once its job was
// written, so neither a power cut nor a printer fault loses one (a cut mid-job may print it twice: a
// duplicate beats a lost receipt). A job is sent only when the printer's real-time status (DLE EOT 1..4)
// says it can print; queued receipts print by themselves, oldest first, once it can again. print()
// never rejects for a printer fault: the cashier sees health(), and the receipt waits.
import { EventEmitter } from 'node:events';
import { LowSync } from 'lowdb';
import { z } from 'zod';
import { RegisterError, isRegisterError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { JournalFs } from '../../journal/fs.js';
import { DurableJsonAdapter } from '../../store/durable-json.js';
import { realTimers, type DeviceHealth, type Timers } from '../device.js';
import {
  DEFAULT_DRAWER_KICK,
  STATUS_POLL,
  decodeStatus,
  drawerKickBytes,
  isStatusByte,
  printerState,
  withReply,
  type DrawerKick,
  type PrinterState,
  type StatusSnapshot,
} from './escpos-status.js';
import { renderReceiptEscPos, type ReceiptDoc, type ReceiptRenderOptions } from './receipt-render.js';
import type { PrinterTransport } from './transport.js';

export const PRINTER_DEFAULTS = {
  /**
   * 500 ms per DLE EOT request. A printer answers real-time requests within a few ms, even offline or
   * with its cover open (4 bytes at 9600 baud take 4 ms), so silence this long means it is off or not
   * listening. A poll stops at the first silence, so a sale with a dead printer waits at most this long.
   */
  statusTimeoutMs: 500,
  /**
   * 5000 ms for the one-byte answer to the GS r 1 that ends every job: the printer answers after
   * printing what came before, and a long receipt prints in 1-2 s at 150 mm/s. A later answer is told
   * apart from a status reply by its bits and dropped.
   */
  jobReplyTimeoutMs: 5000,
  /**
   * 2000 ms between polls while receipts wait or the printer is unwell: a new roll or a closed cover
   * shows within ~2 s; a poll is 12 bytes out and 4 back. Fixed, not backed off: the cashier is waiting.
   */
  pollIntervalMs: 2000,
  /** 30 000 ms between polls when all is well: paper running low shows before the next sale. 0: off. */
  idlePollIntervalMs: 30_000,
  /**
   * 200 receipts: far more than a shift prints with the paper out. Past it the oldest is dropped and
   * logged; it can still be reprinted from the journal by its number.
   */
  maxQueued: 200,
  /** 8 operations waiting for the printer (the queue's next step, drawer kicks): more means it is stuck. */
  maxWaitingOps: 8,
} as const;

/** What the cashier's status line shows, with the printer's own state and the receipts waiting. */
export type PrinterHealth = DeviceHealth & { printer: PrinterState | 'unknown'; queued: number };

export interface PrintResult {
  /** The job was written to the printer; false: it waits in the reprint queue. */
  printed: boolean;
  /** Receipts waiting to print, this one included if it waits. */
  queued: number;
}

export interface QueuedReceipt {
  /** Assigned by the queue, increasing; a reprinted receipt is queued again under a new id. */
  id: number;
  addedMs: number;
  doc: ReceiptDoc;
}

export interface EscPosPrinterOptions {
  /** Started and stopped with the printer. */
  transport: PrinterTransport;
  /** The durable reprint queue (a small JSON file on the data partition, with a `.prev` copy). */
  queueFile: string;
  /** Layout; a drawer kick is never part of a receipt job (a queued receipt printed later must not open the drawer). */
  render: Omit<ReceiptRenderOptions, 'drawerKick'>;
  /** The drawer's pulse; Epson's 50 ms on / 500 ms off by default. */
  drawerKick?: DrawerKick;
  timers?: Timers;
  nowMs?: () => number;
  log?: Logger;
  statusTimeoutMs?: number;
  jobReplyTimeoutMs?: number;
  pollIntervalMs?: number;
  idlePollIntervalMs?: number;
  maxQueued?: number;
  /** The queue file's file system; a fault-injecting one in crash tests. */
  queueFs?: JournalFs;
  /** Called on every change of health(), as the `change` event is. */
  onChange?: (health: PrinterHealth) => void;
}

export interface ReceiptRef {
  id: number;
  kind: ReceiptDoc['kind'];
  receiptNo: number;
}

export interface EscPosPrinterEvents {
  change: [health: PrinterHealth];
  /** A job was written; `waitedMs` is how long the receipt was queued. */
  printed: [receipt: ReceiptRef & { waitedMs: number }];
  /** A receipt left the queue unprinted: pushed out by a full queue, or it cannot be rendered. */
  dropped: [receipt: ReceiptRef & { reason: 'queue-full' | 'unprintable' }];
}

// ---------------------------------------------------------------------------------------------------
// What the driver last learned, and what the cashier is told about it (a table, so it is tested whole).

type Observation =
  | { kind: 'stopped' }
  | { kind: 'connecting' }
  | { kind: 'down'; reason: string }
  | { kind: 'silent'; reason: string }
  | { kind: 'status'; state: PrinterState };

/** Whether a job is sent in each state: a near-end roll still holds a few receipts. */
const PRINTS: Record<PrinterState, boolean> = {
  ok: true,
  'paper-near-end': true,
  'paper-end': false,
  'cover-open': false,
  offline: false,
  error: false,
};

const STATUS_HEALTH: Record<PrinterState, { state: DeviceHealth['state']; detail?: string }> = {
  ok: { state: 'ok' },
  'paper-near-end': { state: 'ok', detail: 'paper running low' },
  'paper-end': { state: 'fault', detail: 'paper out' },
  'cover-open': { state: 'fault', detail: 'printer cover open' },
  offline: { state: 'fault', detail: 'printer offline' },
  error: { state: 'fault', detail: 'printer error: switch it off and on' },
};

/** The status line for an observation and a queue length (pure). */
export function describePrinter(
  o: Observation,
  queued: number,
): Pick<PrinterHealth, 'state' | 'detail' | 'printer'> {
  const base: Pick<PrinterHealth, 'state' | 'detail' | 'printer'> =
    o.kind === 'status'
      ? { ...STATUS_HEALTH[o.state], printer: o.state }
      : o.kind === 'stopped'
        ? { state: 'down', detail: 'receipt printer not started', printer: 'unknown' }
        : o.kind === 'connecting'
          ? { state: 'down', detail: 'checking the receipt printer', printer: 'unknown' }
          : o.kind === 'down'
            ? { state: 'down', detail: `receipt printer not connected (${o.reason})`, printer: 'unknown' }
            : { state: 'down', detail: `receipt printer not answering (${o.reason})`, printer: 'unknown' };
  if (queued === 0) return base;
  const waiting = `${queued} receipt${queued === 1 ? '' : 's'} waiting`;
  return { ...base, detail: base.detail ? `${base.detail}; ${waiting}` : waiting };
}

export type { Observation as PrinterObservation };

/** How a failed wire operation reads to the cashier. */
function observationOf(err: unknown): Observation {
  if (isRegisterError(err, 'DEVICE_DOWN'))
    return { kind: 'down', reason: String(err.details.reason ?? 'down') };
  if (isRegisterError(err, 'DEVICE_TIMEOUT')) return { kind: 'silent', reason: 'no reply' };
  if (isRegisterError(err, 'DEVICE_BUSY')) return { kind: 'silent', reason: 'not taking data' };
  return { kind: 'down', reason: String((err as Error)?.message ?? err) };
}

const hex = (bytes: Iterable<number>, max = 16): string =>
  [...bytes]
    .slice(0, max)
    .map((b) => b.toString(16).padStart(2, '0'))
    .join(' ');

// ---------------------------------------------------------------------------------------------------
// Bytes back from the printer: one expected reply at a time (the wire lock sees to that).

/** GS r 1's answer: bits 4 and 7 always clear, where every DLE EOT answer has bit 4 set. */
const isPaperSensorByte = (b: number): boolean => (b & 0x90) === 0;

interface ReplyWait {
  reply: Promise<number>;
  fail: (err: unknown) => void;
  arm: (timeoutMs: number) => void;
}

interface Waiter {
  accept: (byte: number) => boolean;
  resolve: (byte: number) => void;
  reject: (err: unknown) => void;
  timer: unknown;
}

class ReplyReader {
  private waiter: Waiter | null = null;

  constructor(
    private readonly timers: Timers,
    private readonly log: Logger,
    private readonly device: () => string,
  ) {}

  /**
   * Wait for the next byte `accept` takes; bytes it refuses are dropped and logged. The wait is
   * registered at once (a reply may beat the write's own callback) and times out `arm(ms)` after being
   * armed. `fail` ends this wait only: a late failure of its request must not end a newer one.
   */
  expect(accept: (byte: number) => boolean, what: string): ReplyWait {
    this.cancel(new RegisterError('DEVICE_BUSY', 'a newer request replaced this one'));
    let waiter!: Waiter;
    const reply = new Promise<number>((resolve, reject) => {
      waiter = { accept, resolve, reject, timer: null };
    });
    this.waiter = waiter;
    return {
      reply,
      fail: (err) => {
        if (this.waiter === waiter) this.cancel(err);
      },
      arm: (timeoutMs) => {
        if (this.waiter !== waiter) return;
        waiter.timer = this.timers.setTimeout(() => {
          if (this.waiter !== waiter) return;
          this.waiter = null;
          waiter.reject(new RegisterError('DEVICE_TIMEOUT', `no reply to ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
      },
    };
  }

  /** Fail the reply being waited for (the link went down, its request could not be written). */
  cancel(err: unknown): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = null;
    if (w.timer !== null) this.timers.clearTimeout(w.timer);
    w.reject(err);
  }

  push(chunk: Buffer): void {
    const stray: number[] = [];
    for (const byte of chunk) {
      const w = this.waiter;
      if (w && w.accept(byte)) {
        this.waiter = null;
        if (w.timer !== null) this.timers.clearTimeout(w.timer);
        w.resolve(byte);
      } else stray.push(byte);
    }
    // A late reply after a timeout, or noise: never taken for the answer to a later request.
    if (stray.length)
      this.log.warn(
        { device: this.device(), dir: 'in', count: stray.length, bytes: hex(stray) },
        'unexpected bytes from the printer dropped',
      );
  }
}

/** One operation on the wire at a time, so each reply belongs to the request just sent; bounded. */
class WireLock {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(private readonly max: number) {}

  run<T>(op: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.max)
      return Promise.reject(
        new RegisterError('DEVICE_BUSY', `${this.waiting} printer operations are waiting`),
      );
    this.waiting++;
    const result = this.tail.then(op).finally(() => this.waiting--);
    this.tail = result.catch(() => {});
    return result;
  }
}

// ---------------------------------------------------------------------------------------------------
// The durable reprint queue.

const QueueFileSchema = z.object({
  v: z.literal(1),
  nextId: z.number().int().min(1),
  receipts: z.array(
    z.object({
      id: z.number().int().min(1),
      addedMs: z.number(),
      // Checked as far as the queue needs; a receipt that will not render is dropped when printed.
      doc: z.looseObject({ kind: z.enum(['sale', 'refund']), receiptNo: z.number().int() }),
    }),
  ),
});
type QueueFile = { v: 1; nextId: number; receipts: QueuedReceipt[] };

const refOf = (e: QueuedReceipt): ReceiptRef => ({ id: e.id, kind: e.doc.kind, receiptNo: e.doc.receiptNo });

/**
 * Receipts waiting to print, oldest first, kept with the power-safe lowdb adapter. A write that fails
 * leaves the queue working in memory (logged): printing must go on even when the flash does not.
 */
class ReprintQueue {
  private db: LowSync<QueueFile> | null = null;

  constructor(
    private readonly file: string,
    private readonly opts: {
      fs?: JournalFs;
      maxQueued: number;
      log: Logger;
      onDrop: (e: QueuedReceipt, reason: 'queue-full' | 'unprintable') => void;
    },
  ) {}

  private get data(): QueueFile {
    if (!this.db) {
      const adapter = new DurableJsonAdapter<QueueFile>(this.file, {
        fs: this.opts.fs,
        validate: (d) => QueueFileSchema.parse(d) as QueueFile,
        onFallback: (reason) =>
          this.opts.log.warn({ file: this.file, reason }, 'reprint queue read from its copy'),
      });
      this.db = new LowSync<QueueFile>(adapter, { v: 1, nextId: 1, receipts: [] });
      try {
        this.db.read();
      } catch (err) {
        // Both copies are damaged: start empty. The receipts are in the journal and can be reprinted.
        this.opts.log.error(
          { file: this.file, err: String((err as Error)?.message ?? err) },
          'reprint queue unreadable; starting empty',
        );
      }
      this.db.data.receipts.sort((a, b) => a.id - b.id);
    }
    return this.db.data;
  }

  get size(): number {
    return this.data.receipts.length;
  }

  /** The id the next receipt will get. */
  get nextId(): number {
    return this.data.nextId;
  }

  head(): QueuedReceipt | undefined {
    return this.data.receipts[0];
  }

  has(id: number): boolean {
    return this.data.receipts.some((e) => e.id === id);
  }

  add(doc: ReceiptDoc, addedMs: number): QueuedReceipt {
    const d = this.data;
    const entry: QueuedReceipt = { id: d.nextId++, addedMs, doc };
    d.receipts.push(entry);
    while (d.receipts.length > this.opts.maxQueued) this.drop(d.receipts[0]!, 'queue-full');
    this.persist();
    return entry;
  }

  remove(id: number): void {
    const d = this.data;
    const at = d.receipts.findIndex((e) => e.id === id);
    if (at < 0) return;
    d.receipts.splice(at, 1);
    this.persist();
  }

  /** Take an entry out for good, telling why. */
  drop(entry: QueuedReceipt, reason: 'queue-full' | 'unprintable'): void {
    const d = this.data;
    const at = d.receipts.indexOf(entry);
    if (at >= 0) d.receipts.splice(at, 1);
    this.opts.onDrop(entry, reason);
  }

  private persist(): void {
    const db = this.db!;
    // Bounded: each round drops one receipt, and one receipt alone always fits the store's 8 MiB.
    for (;;) {
      try {
        db.write();
        return;
      } catch (err) {
        if (isRegisterError(err, 'STORE_TOO_LARGE') && db.data.receipts.length > 1) {
          this.drop(db.data.receipts[0]!, 'queue-full');
          continue;
        }
        this.opts.log.error(
          { file: this.file, err: String((err as Error)?.message ?? err) },
          'reprint queue not saved; receipts kept in memory only',
        );
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------

export class EscPosPrinter extends EventEmitter<EscPosPrinterEvents> {
  private running = false;
  private observed: Observation = { kind: 'stopped' };
  private healthNow: PrinterHealth | null = null;
  private service: Promise<void> | null = null;
  private pollTimer: unknown = null;
  private printedTotal = 0;
  private readonly waiters = new Map<number, (printed: boolean) => void>();
  private readonly queue: ReprintQueue;
  private readonly replies: ReplyReader;
  private readonly wire: WireLock;
  private readonly timers: Timers;
  private readonly nowMs: () => number;
  private readonly log: Logger;
  private readonly onData = (chunk: Buffer): void => this.replies.push(chunk);
  private readonly onUp = (): void => {
    this.observe({ kind: 'connecting' });
    void this.runService();
  };
  private readonly onDown = (reason: string): void => {
    this.replies.cancel(new RegisterError('DEVICE_DOWN', `receipt printer lost: ${reason}`, { reason }));
    this.cancelPoll();
    this.observe({ kind: 'down', reason });
  };

  constructor(private readonly opts: EscPosPrinterOptions) {
    super();
    this.timers = opts.timers ?? realTimers;
    this.nowMs = opts.nowMs ?? Date.now;
    this.log = opts.log ?? silentLogger;
    this.replies = new ReplyReader(this.timers, this.log, () => opts.transport.name);
    this.wire = new WireLock(PRINTER_DEFAULTS.maxWaitingOps);
    this.queue = new ReprintQueue(opts.queueFile, {
      fs: opts.queueFs,
      maxQueued: opts.maxQueued ?? PRINTER_DEFAULTS.maxQueued,
      log: this.log,
      onDrop: (e, reason) => this.dropped(e, reason),
    });
  }

  /** Reads the reprint queue, starts the transport and prints what waits once the printer is ready. */
  async start(): Promise<void> {
    if (this.running) return;
    checkOptions(this.opts);
    this.running = true;
    const t = this.opts.transport;
    t.on('data', this.onData).on('up', this.onUp).on('down', this.onDown);
    if (this.queue.size)
      this.log.info(
        { device: t.name, queued: this.queue.size },
        'receipts waiting from before; printing when ready',
      );
    this.observe({ kind: 'connecting' });
    await t.start();
    if (!t.isUp) this.observe({ kind: 'down', reason: t.health().detail ?? 'not connected' });
    else void this.runService();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.cancelPoll();
    this.replies.cancel(
      new RegisterError('DEVICE_DOWN', 'the printer driver is stopping', { reason: 'stopping' }),
    );
    // The transport first: a job being written then fails at once instead of running to its deadline.
    const t = this.opts.transport;
    t.off('data', this.onData).off('up', this.onUp).off('down', this.onDown);
    await t.stop();
    await this.service;
    this.observe({ kind: 'stopped' });
  }

  health(): PrinterHealth {
    return this.healthNow ?? { ...describePrinter(this.observed, 0), queued: 0 };
  }

  /**
   * Queue the receipt durably, then print what waits, oldest first, if the printer can. Resolves once
   * this receipt's job was written or it is known to wait; never rejects for a printer fault.
   */
  async print(doc: ReceiptDoc): Promise<PrintResult> {
    const entry = this.queue.add(doc, this.nowMs());
    this.log.info(
      { device: this.opts.transport.name, receiptNo: doc.receiptNo, kind: doc.kind, queued: this.queue.size },
      'receipt queued for printing',
    );
    this.refresh();
    if (!this.queue.has(entry.id)) return { printed: false, queued: this.queue.size };
    const printed = new Promise<boolean>((resolve) => this.waiters.set(entry.id, resolve));
    if (this.running) void this.runService();
    else this.settle(entry.id, false);
    return { printed: await printed, queued: this.queue.size };
  }

  /** Try the queue now (the cashier pressed "reprint"); how many printed during this call, how many wait. */
  async reprintQueued(): Promise<{ printed: number; queued: number }> {
    const before = this.printedTotal;
    await this.runService();
    return { printed: this.printedTotal - before, queued: this.queue.size };
  }

  /**
   * Pulse the drawer (ESC p), after a status poll: a printer that is offline would hold the command and
   * pop the drawer open whenever it came back. Rejects with DEVICE_DOWN, DEVICE_TIMEOUT,
   * PRINTER_NOT_READY or DEVICE_BUSY when the pulse was not sent; the cashier then uses the key.
   */
  async kickDrawer(): Promise<void> {
    if (!this.running) throw new RegisterError('DEVICE_DOWN', 'the receipt printer is not started');
    await this.wire.run(async () => {
      if (!(await this.poll())) throw this.notReady();
      const bytes = drawerKickBytes(this.opts.drawerKick ?? DEFAULT_DRAWER_KICK);
      try {
        await this.opts.transport.write(bytes);
      } catch (err) {
        this.observe(observationOf(err));
        throw err;
      }
      this.log.info({ device: this.opts.transport.name, dir: 'out', bytes: hex(bytes) }, 'drawer kick sent');
    });
  }

  // --- the service loop: poll, print the oldest, repeat while the printer can --------------------

  private runService(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.service ??= this.serviceLoop();
    return this.service;
  }

  private async serviceLoop(): Promise<void> {
    // Let runService() record this run before any exit path below clears it.
    await Promise.resolve();
    this.cancelPoll();
    try {
      while (this.running) {
        const horizon = this.queue.nextId; // receipts below it were queued before this poll began
        if (!(await this.wire.run(() => this.poll()))) return;
        const next = this.queue.head();
        if (!next) return;
        // Queued while the poll was on the wire: its job must follow a poll of its own.
        if (next.id >= horizon) continue;
        if (!(await this.wire.run(() => this.printJob(next)))) return;
      }
    } catch (err) {
      // Only the wire lock's own bound gets here; the next poll tries again.
      this.log.warn(
        { device: this.opts.transport.name, err: String((err as Error)?.message ?? err) },
        'printer busy',
      );
    } finally {
      // Synchronously with the decision to stop, so a receipt queued from now on starts a new run.
      this.service = null;
      for (const id of [...this.waiters.keys()]) this.settle(id, false);
      this.schedulePoll();
    }
  }

  /** DLE EOT 1..4, each within the status timeout; whether a job may be sent. */
  private async poll(): Promise<boolean> {
    const t = this.opts.transport;
    if (!t.isUp) {
      // Keep the reason the loss was reported with; the transport's detail says the same at more length.
      if (this.observed.kind !== 'down')
        this.observe({ kind: 'down', reason: t.health().detail ?? 'not connected' });
      return false;
    }
    let snapshot: StatusSnapshot = {};
    const replies: string[] = [];
    try {
      for (const request of STATUS_POLL) {
        const n = request.bytes[2]!;
        const wait = this.replies.expect(isStatusByte, `DLE EOT ${n}`);
        wait.arm(this.statusTimeoutMs);
        const written = t.write(request.bytes);
        written.catch(wait.fail);
        const byte = await wait.reply;
        // The reply can beat the write's own callback (a serial write ends with a drain), and the
        // transport takes one write at a time: the next request, or the job, must wait for it.
        await written;
        const decoded = decodeStatus(n, byte);
        if (decoded.ok) snapshot = withReply(snapshot, decoded.reply);
        replies.push(hex([byte]));
      }
    } catch (err) {
      this.observe(observationOf(err));
      return false;
    }
    const state = printerState(snapshot);
    if (this.observed.kind !== 'status' || this.observed.state !== state)
      this.log.info({ device: t.name, dir: 'in', printer: state, replies }, 'printer status');
    this.observe({ kind: 'status', state });
    return PRINTS[state];
  }

  /** Write one queued receipt; whether the loop may go on. */
  private async printJob(entry: QueuedReceipt): Promise<boolean> {
    const t = this.opts.transport;
    let bytes: Uint8Array;
    try {
      bytes = renderReceiptEscPos(entry.doc, this.opts.render);
    } catch (err) {
      this.log.error(
        { device: t.name, receiptNo: entry.doc.receiptNo, err: String((err as Error)?.message ?? err) },
        'receipt cannot be rendered; dropped from the queue (reprint it from the journal)',
      );
      this.queue.drop(entry, 'unprintable');
      this.refresh();
      return true;
    }
    // The job ends with GS r 1, answered once the printer got that far: wait for it before the next
    // poll so it is not left on the line. Its bits only repeat what the next poll asks anyway.
    const done = this.replies.expect(isPaperSensorByte, 'GS r 1');
    done.reply.catch(() => {}); // settled below, or failed with the write
    try {
      await t.write(bytes);
    } catch (err) {
      done.fail(err);
      this.observe(observationOf(err));
      return false;
    }
    this.queue.remove(entry.id);
    this.printedTotal++;
    const ref = { ...refOf(entry), waitedMs: this.nowMs() - entry.addedMs };
    this.log.info({ device: t.name, dir: 'out', bytes: bytes.length, ...ref }, 'receipt printed');
    this.refresh();
    this.settle(entry.id, true);
    this.emit('printed', ref);
    done.arm(this.opts.jobReplyTimeoutMs ?? PRINTER_DEFAULTS.jobReplyTimeoutMs);
    try {
      await done.reply;
    } catch (err) {
      if (isRegisterError(err, 'DEVICE_TIMEOUT'))
        this.log.warn(
          { device: t.name, receiptNo: entry.doc.receiptNo },
          'no answer to the end of the job yet',
        );
    }
    return true;
  }

  // --- health, waiters, polling ----------------------------------------------------------------------

  private get statusTimeoutMs(): number {
    return this.opts.statusTimeoutMs ?? PRINTER_DEFAULTS.statusTimeoutMs;
  }

  private notReady(): RegisterError {
    const o = this.observed;
    if (o.kind === 'status')
      return new RegisterError('PRINTER_NOT_READY', `the receipt printer is not ready: ${o.state}`, {
        printer: o.state,
      });
    if (o.kind === 'silent')
      return new RegisterError('DEVICE_TIMEOUT', `the receipt printer is not answering (${o.reason})`);
    return new RegisterError('DEVICE_DOWN', this.health().detail ?? 'the receipt printer is not connected');
  }

  private observe(o: Observation): void {
    this.observed = o;
    this.refresh();
  }

  /** Recompute health; tell listeners when it changed. */
  private refresh(): void {
    const queued = this.queue.size;
    const d = describePrinter(this.observed, queued);
    const prev = this.healthNow;
    if (
      prev &&
      prev.state === d.state &&
      prev.printer === d.printer &&
      prev.detail === d.detail &&
      prev.queued === queued
    )
      return;
    const moved = !prev || prev.state !== d.state || prev.printer !== d.printer;
    const sinceMs = moved ? this.nowMs() : (prev.sinceMs ?? this.nowMs());
    const next: PrinterHealth = { ...d, sinceMs, queued };
    if (next.detail === undefined) delete next.detail;
    this.healthNow = next;
    this.opts.onChange?.(next);
    this.emit('change', next);
  }

  private settle(id: number, printed: boolean): void {
    const resolve = this.waiters.get(id);
    this.waiters.delete(id);
    resolve?.(printed);
  }

  private dropped(entry: QueuedReceipt, reason: 'queue-full' | 'unprintable'): void {
    const ref = refOf(entry);
    if (reason === 'queue-full')
      this.log.warn(
        {
          device: this.opts.transport.name,
          ...ref,
          maxQueued: this.opts.maxQueued ?? PRINTER_DEFAULTS.maxQueued,
        },
        'reprint queue full: oldest receipt dropped (reprint it from the journal by number)',
      );
    this.settle(entry.id, false);
    this.emit('dropped', { ...ref, reason });
  }

  /** Poll again later: briskly while receipts wait or the printer is unwell, slowly otherwise. */
  private schedulePoll(): void {
    this.cancelPoll();
    if (!this.running || !this.opts.transport.isUp) return; // the transport's `up` starts the next run
    const h = this.health();
    const busy = h.queued > 0 || h.state !== 'ok';
    const delayMs = busy
      ? (this.opts.pollIntervalMs ?? PRINTER_DEFAULTS.pollIntervalMs)
      : (this.opts.idlePollIntervalMs ?? PRINTER_DEFAULTS.idlePollIntervalMs);
    if (delayMs <= 0) return;
    this.pollTimer = this.timers.setTimeout(() => {
      this.pollTimer = null;
      void this.runService();
    }, delayMs);
  }

  private cancelPoll(): void {
    if (this.pollTimer !== null) this.timers.clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }
}

function checkOptions(o: EscPosPrinterOptions): void {
  const positive: (keyof EscPosPrinterOptions)[] = [
    'statusTimeoutMs',
    'jobReplyTimeoutMs',
    'pollIntervalMs',
    'maxQueued',
  ];
  for (const key of positive) {
    const v = o[key];
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1))
      throw new RangeError(`printer option ${key} must be a positive integer, not ${String(v)}`);
  }
  const idle = o.idlePollIntervalMs;
  if (idle !== undefined && (!Number.isInteger(idle) || idle < 0))
    throw new RangeError(
      `printer option idlePollIntervalMs must be 0 or a positive integer, not ${String(idle)}`,
    );
}
