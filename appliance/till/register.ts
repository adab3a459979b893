// The register: commands in, one durable journal record each, answers out. It owns the journal (the
// single writer), runs card payments as request-record → terminal → result-record so a crash can
// never charge twice, and does device work (printing, the drawer) only after a record is durable.
import { v7 as uuidv7 } from 'uuid';
import { RegisterError, isRegisterError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Clock } from '../clock.js';
import type { Journal } from '../journal/journal.js';
import type { Catalog } from './catalog.js';
import { DECOY_HASH, verifyPin, verifyPinAsync, type CashierList } from './cashiers.js';
import type { CardOutcome, CardQuery, CardTerminal, TerminalEvent } from './card.js';
import type { DeviceHealth } from '../devices/device.js';
import type { JournalEvent } from '../../cloud-bridge/protocol/record.js';
import * as cmd from './commands.js';
import { expectedCash, type RegisterState } from './state.js';

export interface Devices {
  terminal: CardTerminal;
  /**
   * Print a receipt document. The printer driver queues it durably and never fails for a printer fault;
   * should it throw anyway, the sale stands and the error shows in the status.
   */
  print?: (receipt: ReturnType<typeof cmd.receiptDoc>) => Promise<unknown>;
  kickDrawer?: () => Promise<void>;
  /** Each device's health for the cashier's status line. */
  health?: () => Record<string, DeviceHealth>;
}

/** What became of the last code the scanner read, for the till's feedback line. */
export interface ScanFeedback {
  code: string;
  atMs: number;
  ok: boolean;
  /** The line it added, or why it was refused. */
  name?: string;
  error?: { code: string; message: string };
}

export interface RegisterOptions {
  journal: Journal<RegisterState>;
  /** The cached catalog and cashier list; functions, because the cloud may replace them at any time. */
  catalog: () => Catalog | undefined;
  cashiers: () => CashierList | undefined;
  devices: Devices;
  clock: Clock;
  limits?: Partial<cmd.TillLimits>;
  /** Randomness for ids (tests pass a seeded one). */
  random?: () => Uint8Array;
  log?: Logger;
  /** Called after every change of state (the control socket pushes it to subscribers). */
  onChange?: () => void;
  /** The highest seq the ledger has acknowledged (the cloud bridge knows); 0 without a bridge. */
  syncedThroughSeq?: () => number;
  /** The cloud link's state and queue depth for the status line; null without a bridge. */
  syncStatus?: () => unknown;
  /**
   * The journal hit an fsync error (JOURNAL_FATAL): the process must exit and the appliance reboot.
   * Called whatever asked for the write — a control call, a scan, a terminal's late answer.
   */
  onFatal?: (err: RegisterError) => void;
}

/** The methods of the control socket ◆ (docs/control-protocol.md). */
export const METHODS = Object.keys(cmd.Params) as cmd.Method[];

export class Register {
  private readonly limits: cmd.TillLimits;
  private readonly log: Logger;
  private lastPrintError: string | null = null;
  private lastScan: ScanFeedback | null = null;
  private terminalMessage: { txn: string; message: string } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** Device work (drawer, printing), in order, behind the commands rather than in their way. */
  private deviceWork: Promise<void> = Promise.resolve();

  constructor(private readonly opts: RegisterOptions) {
    this.limits = { ...cmd.DEFAULT_LIMITS, ...opts.limits };
    this.log = opts.log ?? silentLogger;
  }

  get state(): RegisterState {
    return this.opts.journal.state;
  }

  /**
   * Run one control-socket method. Commands run one at a time, in arrival order, across all clients:
   * the journal has a single writer and a card payment spans two records.
   */
  execute(method: string, params: unknown): Promise<unknown> {
    return this.enqueue(() => this.dispatch(method, params));
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Resolves once every command accepted so far has finished, device work included (a clean stop). */
  async drain(): Promise<void> {
    await this.queue;
    await this.deviceWork;
  }

  /** After a restart: settle a card request the crash left open, by asking the terminal (Invariant 3). */
  async recover(): Promise<void> {
    await this.enqueue(() => this.settlePendingCard(false));
  }

  /**
   * A code from the scanner: rung up like `sale.scan`, in turn with every other command. The answer goes
   * to the status (the till shows it); a scan never throws at the scanner.
   */
  scanned(code: string): Promise<ScanFeedback> {
    return this.enqueue(async () => {
      const atMs = this.opts.clock.nowMs();
      let feedback: ScanFeedback;
      try {
        const answer = (await this.dispatchOne('sale.scan', { code })) as { line?: { name?: string } };
        feedback = { code, atMs, ok: true, ...(answer?.line?.name ? { name: answer.line.name } : {}) };
      } catch (err) {
        const e = isRegisterError(err) ? err : new RegisterError('INTERNAL', String(err));
        feedback = { code, atMs, ok: false, error: { code: e.code, message: e.message } };
      }
      this.lastScan = feedback;
      this.opts.onChange?.();
      return feedback;
    });
  }

  /** What the terminal says between answers: messages for the cashier, later SAF outcomes. */
  onTerminalEvent(e: TerminalEvent): Promise<void> {
    if (e.type === 'status') {
      this.terminalMessage = { txn: e.txn, message: e.message };
      this.opts.onChange?.();
      return Promise.resolve();
    }
    // Journaled before the driver acknowledges it to the terminal: a crash in between means a resend.
    return this.enqueue(async () => {
      const decision = cmd.safResult(this.state, e);
      if (!decision.events.length) return;
      this.append(decision.events);
      if (e.outcome === 'declined')
        this.log.warn({ txn: e.txn, alarm: 'saf-declined' }, 'an offline card approval was declined later');
      this.opts.onChange?.();
    });
  }

  status() {
    const s = this.state;
    const j = this.opts.journal;
    const held = Object.values(s.offlineCard);
    return {
      deviceId: j.deviceId,
      epoch: j.epoch,
      lastSeq: j.lastSeq,
      clockTrusted: this.opts.clock.trusted(),
      catalogVersion: this.opts.catalog()?.version ?? null,
      cashiersVersion: this.opts.cashiers()?.version ?? null,
      session: s.session,
      shift: s.shift
        ? {
            shiftId: s.shift.shiftId,
            openedAt: s.shift.openedAt,
            openedBy: s.shift.openedBy,
            expectedCashMinor: expectedCash(s.shift),
          }
        : null,
      sale: cmd.saleView(s),
      pendingCard: s.pendingCard,
      receiptNo: s.receiptNo,
      zNo: s.zNo,
      offlineCard: {
        count: held.length,
        totalMinor: held.reduce((sum, a) => sum + a.amountMinor, 0),
        oldestAt: held.length ? Math.min(...held.map((a) => a.approvedAt)) : null,
      },
      devices: this.opts.devices.health?.() ?? {},
      sync: this.opts.syncStatus?.() ?? null,
      printError: this.lastPrintError,
      terminalMessage: s.pendingCard ? this.terminalMessage : null,
      lastScan: this.lastScan,
    };
  }

  /**
   * What a till screen needs to draw itself and that status does not carry: the store, its currency,
   * who may log in (names and roles, never a PIN hash) and the limits a cashier meets. Works before
   * the first catalog or cashier list (nulls and an empty list), as status does.
   */
  private info() {
    const catalog = this.opts.catalog();
    const cashiers = this.opts.cashiers()?.cashiers ?? [];
    return {
      storeId: catalog?.storeId ?? null,
      storeName: catalog?.storeName ?? null,
      currency: catalog?.currency ?? null,
      cashIncrementMinor: catalog?.tax.cashIncrementMinor ?? null,
      cashiers: cashiers.map((c) => ({ cashierId: c.id, name: c.name, role: c.role })),
      limits: {
        maxDiscountBp: this.limits.maxDiscountBp,
        maxDiscrepancyMinor: this.limits.maxDiscrepancyMinor,
        maxQty: this.limits.maxQty,
      },
    };
  }

  /**
   * Check the PINs a request carries (a login's, an approval's) on the thread pool before the command
   * runs, so the synchronous command finds the answers ready and the event loop never waits on scrypt.
   */
  private async checkPins(raw: unknown): Promise<Map<string, boolean>> {
    const checked = new Map<string, boolean>();
    const req = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const list = this.opts.cashiers()?.cashiers ?? [];
    const pairs: [unknown, unknown][] = [[req.pin, req.cashierId]];
    const approval = req.approval as Record<string, unknown> | undefined;
    if (approval && typeof approval === 'object') pairs.push([approval.pin, approval.managerId]);
    for (const [pin, id] of pairs) {
      if (typeof pin !== 'string' || typeof id !== 'string') continue;
      const hash = list.find((c) => c.id === id)?.pinHash ?? DECOY_HASH;
      checked.set(`${hash}\n${pin}`, await verifyPinAsync(pin, hash));
    }
    return checked;
  }

  private context(pins: Map<string, boolean> = new Map()): cmd.CommandContext {
    const catalog = this.opts.catalog();
    const cashiers = this.opts.cashiers();
    if (!catalog) throw new RegisterError('NO_CATALOG', 'no catalog yet: the register has never been synced');
    if (!cashiers)
      throw new RegisterError('NO_CASHIERS', 'no cashier list yet: the register has never been synced');
    const nowMs = this.opts.clock.nowMs();
    const random = this.opts.random;
    return {
      nowMs,
      catalog,
      cashiers,
      limits: this.limits,
      newId: () => uuidv7({ msecs: nowMs, ...(random ? { rng: random } : {}) }),
      syncedThroughSeq: this.opts.syncedThroughSeq?.() ?? 0,
      verifyPin: (pin, hash) => pins.get(`${hash}\n${pin}`) ?? verifyPin(pin, hash),
    };
  }

  private async dispatch(method: string, raw: unknown): Promise<unknown> {
    try {
      return await this.dispatchOne(method, raw);
    } catch (err) {
      // A refused manager PIN is evidence: journal it (it counts towards that manager's lockout).
      if (isRegisterError(err, 'APPROVAL_REFUSED') && Array.isArray(err.details.journal)) {
        this.append(err.details.journal as JournalEvent[]);
        delete err.details.journal;
        this.opts.onChange?.();
      }
      throw err;
    }
  }

  private async dispatchOne(method: string, raw: unknown): Promise<unknown> {
    // A card request left open (the terminal did not answer) is asked about again before anything
    // else touches the sale; until it is settled the commands that need it refuse with CARD_PENDING.
    if (this.state.pendingCard && !READ_ONLY.has(method)) await this.settlePendingCard(false);
    const s = this.state;
    switch (method) {
      case 'status':
        cmd.parseParams('status', raw);
        return this.status();
      case 'shift.report':
        cmd.parseParams('shift.report', raw);
        return cmd.xReport(s);
      case 'till.info':
        cmd.parseParams('till.info', raw);
        return this.info();
      case 'receipt.get': {
        const p = cmd.parseParams('receipt.get', raw);
        const no = p.receiptNo ?? s.saleReceipt[p.saleId!];
        if (no === undefined)
          throw new RegisterError('RECEIPT_NOT_FOUND', `no sale ${p.saleId} on this register`);
        return { receipt: cmd.receiptDoc(s, no, this.context()) };
      }
      case 'sale.tender': {
        const p = cmd.parseParams('sale.tender', raw);
        const ctx = this.context();
        if (p.kind === 'cash') return this.commit(cmd.tenderCash(s, p.amountMinor, ctx));
        return this.cardTender(p.amountMinor, ctx);
      }
      case 'sale.refund':
        return this.refund(cmd.parseParams('sale.refund', raw));
    }
    // Own keys only: `constructor` or `toString` must be an unknown method, not Object.prototype's.
    const decide = Object.hasOwn(DECIDERS, method) ? DECIDERS[method as keyof typeof DECIDERS] : undefined;
    if (!decide) throw new RegisterError('UNKNOWN_METHOD', `no method ${method}`, { method });
    const params = cmd.parseParams(method as cmd.Method, raw);
    const pins = await this.checkPins(params);
    return this.commit(decide(this.state, params as never, this.context(pins)));
  }

  /**
   * Write one record. Every event names the cashier it was done by (Invariant 6): the one clocked in,
   * unless the event names one itself (a login attempt names who tried).
   */
  private append(events: JournalEvent[]): void {
    const cashierId = this.state.session?.cashierId;
    try {
      this.opts.journal.append(
        cashierId ? events.map((e) => ('cashierId' in e ? e : { ...e, cashierId })) : events,
      );
    } catch (err) {
      if (isRegisterError(err, 'JOURNAL_FATAL')) this.opts.onFatal?.(err);
      throw err;
    }
  }

  /** Write a decision's record, then answer and do its device work. */
  private async commit(decision: cmd.Decision): Promise<unknown> {
    if (decision.events.length) this.append(decision.events);
    this.opts.onChange?.();
    if (decision.refusal) throw decision.refusal;
    this.effects(decision.effects ?? []);
    return decision.answer?.(this.state) ?? { ok: true };
  }

  /**
   * Start a decision's device work. The record is durable, so the answer does not wait: a printer
   * polling its status or out of paper never holds up the next scan. The receipt document is taken
   * now, as of this record; the work runs in order behind earlier work.
   */
  private effects(effects: cmd.Effect[]): void {
    if (!effects.length) return;
    const jobs = effects.map((effect) => {
      if (effect.kind === 'drawer') return { kind: effect.kind, run: () => this.opts.devices.kickDrawer?.() };
      const doc = cmd.receiptDoc(this.state, effect.receiptNo, this.context());
      return { kind: effect.kind, run: () => this.opts.devices.print?.(doc) };
    });
    this.deviceWork = this.deviceWork.then(() => this.runDeviceWork(jobs));
  }

  private async runDeviceWork(
    jobs: { kind: string; run: () => Promise<unknown> | undefined }[],
  ): Promise<void> {
    for (const job of jobs) {
      try {
        await job.run();
        if (job.kind === 'print') this.lastPrintError = null;
      } catch (err) {
        // The sale is durable; the receipt waits for a reprint and the cashier sees the printer state.
        this.lastPrintError = String((err as Error)?.message ?? err);
        this.log.warn({ effect: job.kind, err: this.lastPrintError }, 'device effect failed');
        this.opts.onChange?.();
      }
    }
  }

  private async cardTender(amountMinor: number | undefined, ctx: cmd.CommandContext): Promise<unknown> {
    const request = cmd.cardRequest(this.state, amountMinor, ctx);
    this.append(request.events); // journaled before the terminal hears of it
    this.terminalMessage = null;
    this.opts.onChange?.();
    const sale = this.state.sale!;
    let result: CardOutcome;
    try {
      result = await this.opts.devices.terminal.pay({
        txn: request.txn,
        amountMinor: request.amountMinor,
        currency: sale.currency,
        offlineAllowed: request.offlineAllowed,
      });
    } catch (err) {
      // Outcome unknown (timeout, link lost): ask before anything else, and leave it open if we cannot.
      this.log.warn({ txn: request.txn, err: String(err) }, 'card request failed; asking the terminal');
      return this.settlePendingCard(true);
    }
    return this.commit(cmd.cardResult(this.state, request.txn, result, this.context()));
  }

  /**
   * Ask the terminal what became of the open card request and journal the answer (Invariant 3): an
   * approved sale tender completes or reduces the sale, an approved refund is booked, anything else
   * is recorded as not charged. Still unknown: the request stays open and CARD_PENDING is answered.
   */
  private async settlePendingCard(forCaller: boolean): Promise<unknown> {
    const pending = this.state.pendingCard;
    if (!pending) return null;
    let query: CardQuery;
    try {
      query = await this.opts.devices.terminal.query(pending.txn);
    } catch (err) {
      this.log.warn({ txn: pending.txn, err: String(err) }, 'terminal unreachable: card request stays open');
      query = { state: 'in_progress' };
    }
    if (query.state === 'in_progress') {
      if (forCaller)
        throw new RegisterError('CARD_PENDING', 'the terminal did not answer; the payment is being checked');
      return null;
    }
    const result: CardOutcome =
      query.state === 'final'
        ? query.result
        : { outcome: 'cancelled', mode: 'online', message: 'the terminal never received the request' };
    this.log.info({ txn: pending.txn, outcome: result.outcome }, 'card request settled');
    const decision = pending.refund
      ? this.refundResult(pending.refund as PendingRefund, pending.txn, result)
      : cmd.cardResult(this.state, pending.txn, result, this.context());
    if (!forCaller && decision.refusal) {
      // Nobody is waiting for this answer: journal it and move on.
      return this.commit({ ...decision, refusal: undefined });
    }
    return this.commit(decision);
  }

  private async refund(p: cmd.ParamsOf<'sale.refund'>): Promise<unknown> {
    const pins = await this.checkPins(p);
    const s = this.state;
    const ctx = this.context(pins);
    const plan = cmd.refundPlan(s, p); // refuse early, before asking a manager or a terminal
    const approvedBy = cmd.approveRefund(s, ctx, p.approval);
    const refundId = ctx.newId();
    if (p.tender === 'cash') {
      return this.commit(
        cmd.refundEvent(s, p, ctx, approvedBy, refundId, { kind: 'cash', amountMinor: plan.amountMinor }),
      );
    }
    const txn = ctx.newId();
    // The approval has done its work: its PIN must never reach the journal (nor the wire).
    const { approval: _approval, ...params } = p;
    const refund = { params, approvedBy, refundId };
    this.append([
      {
        type: 'card.requested',
        txn,
        refundId,
        refund,
        amountMinor: plan.amountMinor,
        currency: plan.sale.currency,
      },
    ]);
    this.opts.onChange?.();
    let result: CardOutcome;
    try {
      result = await this.opts.devices.terminal.refund({
        txn,
        amountMinor: plan.amountMinor,
        currency: plan.sale.currency,
        // A refund takes no risk offline (money goes back to the card): terminals take them without limits.
        offlineAllowed: true,
      });
    } catch (err) {
      this.log.warn({ txn, err: String(err) }, 'card refund failed; asking the terminal');
      return this.settlePendingCard(true);
    }
    return this.commit(this.refundResult(refund, txn, result));
  }

  /** The record for a card refund's answer: the result, and when approved the refund itself. */
  private refundResult(refund: PendingRefund, txn: string, result: CardOutcome): cmd.Decision {
    const resultEvent: JournalEvent = { type: 'card.result', txn, ...result };
    if (result.outcome !== 'approved') {
      return {
        events: [resultEvent],
        refusal: new RegisterError('CARD_DECLINED', result.message ?? `card refund ${result.outcome}`, {
          outcome: result.outcome,
        }),
      };
    }
    const plan = cmd.refundPlan(this.state, refund.params);
    const tender = {
      kind: 'card' as const,
      amountMinor: plan.amountMinor,
      txn,
      mode: result.mode,
      authCode: result.authCode,
      maskedPan: result.maskedPan,
      brand: result.brand,
    };
    const ctx = this.context();
    const decision = cmd.refundEvent(
      this.state,
      refund.params,
      ctx,
      refund.approvedBy,
      refund.refundId,
      tender,
    );
    return { ...decision, events: [resultEvent, ...decision.events] };
  }
}

/** What a pending card refund needs to be booked whenever its answer comes. */
interface PendingRefund {
  params: cmd.ParamsOf<'sale.refund'>;
  approvedBy: string;
  refundId: string;
}

/** Methods that only read: they answer even while a card request is open. */
const READ_ONLY = new Set(['status', 'shift.report', 'receipt.get', 'till.info']);

/** The commands that are one decision and one record. */
const DECIDERS = {
  'cashier.login': cmd.login,
  'cashier.logout': cmd.logout,
  'shift.open': cmd.openShiftCmd,
  'shift.close': cmd.closeShift,
  'sale.scan': cmd.scan,
  'sale.add': cmd.add,
  'sale.setQty': cmd.setQty,
  'sale.voidLine': cmd.voidLine,
  'sale.discount': cmd.discount,
  'sale.cancel': cmd.cancel,
  'cash.payout': cmd.payout,
  'cash.paidIn': cmd.paidIn,
  'drawer.open': cmd.noSale,
  'receipt.reprint': cmd.reprint,
} satisfies Partial<
  Record<cmd.Method, (s: RegisterState, p: never, ctx: cmd.CommandContext) => cmd.Decision>
>;
