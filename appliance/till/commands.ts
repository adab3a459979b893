// Commands: what a cashier asks, checked against the register's state, turned into the events of one
// journal record. Pure: no I/O, no clock or randomness but what the context hands in, so every rule
// and every refusal is testable from a table. Card payments are the one command that talks to a
// device; register.ts runs those in steps around this module.
import { z } from 'zod';
import { RegisterError } from '../errors.js';
import type { JournalEvent } from '../../cloud-bridge/protocol/record.js';
import type { Catalog, Product } from './catalog.js';
import { DECOY_HASH, type Cashier, type CashierList } from './cashiers.js';
import { normalizeBarcode, barcodeKeys } from './barcode.js';
import { cashRound, formatMinor, roundDiv } from './money.js';
import {
  expectedCash,
  paidMinor,
  saleTotals,
  type CompletedSale,
  type RegisterState,
  type SaleInProgress,
  type Tender,
  type ZReport,
} from './state.js';

export interface TillLimits {
  /** Wrong PINs in a row before a cashier is locked out. */
  maxPinAttempts: number;
  /** How long a lockout lasts, ms. Five minutes: long enough to stop guessing, short enough for a shift. */
  lockoutMs: number;
  /** Largest discount a cashier may give without a manager, in basis points of what it applies to. */
  maxDiscountBp: number;
  /** Largest shift-close discrepancy (either way) that needs no manager, minor units. */
  maxDiscrepancyMinor: number;
  /** Lines in one sale: a bound on the record size and the screen. */
  maxLines: number;
  /** Units on one line. */
  maxQty: number;
  /** Largest single cash amount the till accepts, minor units (a typo guard). */
  maxCashMinor: number;
  /** When the card terminal may approve offline (the POS enforces these; docs/protocols/ecr.md). */
  cardOffline: OfflineCardLimits;
}

export interface OfflineCardLimits {
  /** Largest card payment approved offline, minor units. 250.00: the common terminal default. */
  maxTxnMinor: number;
  /** Largest total of offline approvals not yet forwarded, per register, minor units. */
  maxOutstandingMinor: number;
  /** Most offline approvals not yet forwarded (also bounds the state that tracks them). */
  maxOutstandingCount: number;
  /** Oldest an unforwarded approval may be before no more are taken, ms: 24 h, the strictest vendor window. */
  maxAgeMs: number;
}

export const DEFAULT_LIMITS: TillLimits = {
  maxPinAttempts: 5,
  lockoutMs: 5 * 60_000,
  maxDiscountBp: 1000,
  maxDiscrepancyMinor: 500,
  maxLines: 200,
  maxQty: 999,
  maxCashMinor: 1_000_000,
  cardOffline: {
    maxTxnMinor: 25_000,
    maxOutstandingMinor: 250_000,
    maxOutstandingCount: 500,
    maxAgeMs: 24 * 3_600_000,
  },
};

export interface CommandContext {
  nowMs: number;
  catalog: Catalog;
  cashiers: CashierList;
  limits: TillLimits;
  /** A new unique id (UUIDv7) for sales, shifts, refunds and card transactions. */
  newId: () => string;
  /** The ledger has acknowledged records up to this seq; later receipts print as offline. */
  syncedThroughSeq: number;
  /** Checks a PIN against a stored hash (the register checks them off the event loop beforehand). */
  verifyPin: (pin: string, pinHash: string) => boolean;
}

/** What a command decided: the events of its one record, and what to answer. */
export interface Decision {
  events: JournalEvent[];
  /** Computed from the state after the events are folded. */
  answer?: (state: RegisterState) => unknown;
  /** Device work to do once the record is durable. */
  effects?: Effect[];
  /** For refusals that are themselves journaled (a wrong PIN): the error to answer after writing. */
  refusal?: RegisterError;
}

export type Effect = { kind: 'print'; receiptNo: number } | { kind: 'drawer' };

// ---- parameters ----

const minor = z.number().int().min(0).max(100_000_000);
const Approval = z
  .object({ managerId: z.string().min(1).max(32), pin: z.string().min(1).max(16) })
  .optional();
const Counts = z.record(z.string().regex(/^\d{1,6}$/), z.number().int().min(0).max(100_000));

export const Params = {
  status: z.object({}).passthrough(),
  'cashier.login': z.object({ cashierId: z.string().min(1).max(32), pin: z.string().min(1).max(16) }),
  'cashier.logout': z.object({}),
  'shift.open': z.object({ floatCounts: Counts }),
  'shift.report': z.object({}),
  'till.info': z.object({}).passthrough(),
  'shift.close': z.object({ counts: Counts, approval: Approval }),
  'sale.scan': z.object({ code: z.string().min(1).max(64) }),
  'sale.add': z.object({
    sku: z.string().min(1).max(40),
    qty: z.number().int().min(1).optional(),
    priceMinor: minor.optional(),
    approval: Approval,
  }),
  'sale.setQty': z.object({ lineId: z.string().min(1).max(16), qty: z.number().int().min(1) }),
  'sale.voidLine': z.object({ lineId: z.string().min(1).max(16), approval: Approval }),
  'sale.discount': z.object({
    lineId: z.string().min(1).max(16).optional(),
    kind: z.enum(['percent', 'amount']),
    /** percent: basis points (1000 = 10 %); amount: minor units; 0 removes the discount. */
    value: z.number().int().min(0),
    approval: Approval,
  }),
  'sale.tender': z.object({ kind: z.enum(['cash', 'card']), amountMinor: minor.optional() }),
  'sale.cancel': z.object({ approval: Approval }),
  'sale.refund': z
    .object({
      receiptNo: z.number().int().min(1).optional(),
      saleId: z.string().min(1).max(64).optional(),
      lines: z
        .array(z.object({ lineId: z.string().min(1).max(16), qty: z.number().int().min(1) }))
        .max(200)
        .optional(),
      tender: z.enum(['cash', 'card']),
      approval: Approval,
    })
    .refine((p) => (p.receiptNo === undefined) !== (p.saleId === undefined), 'give a receiptNo or a saleId'),
  'cash.payout': z.object({
    amountMinor: minor.min(1),
    reason: z.string().min(1).max(80),
    approval: Approval,
  }),
  'cash.paidIn': z.object({ amountMinor: minor.min(1), reason: z.string().min(1).max(80) }),
  'drawer.open': z.object({ approval: Approval }),
  'receipt.reprint': z.object({ receiptNo: z.number().int().min(1).optional() }),
  'receipt.get': z
    .object({ receiptNo: z.number().int().min(1).optional(), saleId: z.string().min(1).max(64).optional() })
    .refine((p) => p.receiptNo !== undefined || p.saleId !== undefined, 'give a receiptNo or a saleId'),
} as const;

export type Method = keyof typeof Params;
export type ParamsOf<M extends Method> = z.infer<(typeof Params)[M]>;

export function parseParams<M extends Method>(method: M, params: unknown): ParamsOf<M> {
  const parsed = Params[method].safeParse(params ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : 'params';
    throw new RegisterError('BAD_PARAMS', `${method}: ${where}: ${issue.message}`, {
      method,
      path: issue.path,
    });
  }
  return parsed.data as ParamsOf<M>;
}

// ---- guards ----

function session(s: RegisterState) {
  if (!s.session) throw new RegisterError('NOT_LOGGED_IN');
  return s.session;
}

function openShift(s: RegisterState) {
  if (!s.shift) throw new RegisterError('NO_SHIFT');
  return s.shift;
}

function currentSale(s: RegisterState): SaleInProgress {
  if (!s.sale) throw new RegisterError('NO_SALE');
  return s.sale;
}

function noCardPending(s: RegisterState): void {
  if (s.pendingCard)
    throw new RegisterError('CARD_PENDING', `card transaction ${s.pendingCard.txn} is still open`);
}

function findCashier(ctx: CommandContext, id: string): Cashier | undefined {
  return ctx.cashiers.cashiers.find((c) => c.id === id);
}

/**
 * Who approves: the logged-in cashier when a manager, else the manager whose PIN is given.
 * Returns the approving manager's id.
 */
function approve(
  s: RegisterState,
  ctx: CommandContext,
  approval: { managerId: string; pin: string } | undefined,
  what: string,
): string {
  const me = session(s);
  if (me.role === 'manager') return me.cashierId;
  if (!approval) throw new RegisterError('MANAGER_REQUIRED', `${what} needs a manager's approval`);
  const manager = findCashier(ctx, approval.managerId);
  const failures = manager ? s.pinFailures[manager.id] : undefined;
  if (manager && (failures?.lockedUntilMs ?? 0) > ctx.nowMs) {
    throw new RegisterError('LOCKED_OUT', `${manager.name} is locked out after wrong PINs`);
  }
  const ok = ctx.verifyPin(approval.pin, manager?.pinHash ?? DECOY_HASH);
  if (!manager || !ok || manager.role !== 'manager') {
    // A wrong manager PIN counts towards that manager's lockout like a wrong login, and is journaled
    // (register.ts writes the event carried in `details.journal`): approvals are no side door for guessing.
    const details: Record<string, unknown> = {};
    if (manager && !ok) {
      const count = (failures?.lockedUntilMs ?? 0) > 0 ? 1 : (failures?.count ?? 0) + 1;
      const lockedUntilMs = count >= ctx.limits.maxPinAttempts ? ctx.nowMs + ctx.limits.lockoutMs : 0;
      details.journal = [
        {
          type: 'cashier.loginFailed',
          cashierId: manager.id,
          reason: 'wrong-approval-pin',
          // who asked for the approval: the cashier clocked in
          requestedBy: me.cashierId,
          failures: count,
          lockedUntilMs,
        },
      ];
    }
    throw new RegisterError('APPROVAL_REFUSED', `${what}: not approved (manager id or PIN wrong)`, details);
  }
  return manager.id;
}

// ---- commands ----

export function login(s: RegisterState, p: ParamsOf<'cashier.login'>, ctx: CommandContext): Decision {
  if (s.sale && s.session && s.sale.cashierId !== p.cashierId) {
    throw new RegisterError('SALE_IN_PROGRESS', 'finish or cancel the sale in progress first');
  }
  const cashier = findCashier(ctx, p.cashierId);
  const failures = s.pinFailures[p.cashierId];
  if (cashier && failures && failures.lockedUntilMs > ctx.nowMs) {
    const until = failures.lockedUntilMs;
    return {
      events: [
        {
          type: 'cashier.loginFailed',
          cashierId: p.cashierId,
          reason: 'locked',
          failures: failures.count,
          lockedUntilMs: until,
        },
      ],
      refusal: new RegisterError(
        'LOCKED_OUT',
        `locked out for ${Math.ceil((until - ctx.nowMs) / 1000)} s more`,
        { lockedUntilMs: until },
      ),
    };
  }
  const ok = ctx.verifyPin(p.pin, cashier?.pinHash ?? DECOY_HASH);
  if (!cashier || !ok) {
    if (!cashier) {
      // Not tracked (a bound: unknown ids cannot grow the state), but journaled like every attempt.
      return {
        events: [{ type: 'cashier.loginFailed', cashierId: p.cashierId, reason: 'unknown', failures: 0 }],
        refusal: new RegisterError('WRONG_PIN'),
      };
    }
    const count = (failures?.lockedUntilMs ?? 0) > 0 ? 1 : (failures?.count ?? 0) + 1;
    const locked = count >= ctx.limits.maxPinAttempts;
    const lockedUntilMs = locked ? ctx.nowMs + ctx.limits.lockoutMs : 0;
    return {
      events: [
        {
          type: 'cashier.loginFailed',
          cashierId: p.cashierId,
          reason: 'wrong-pin',
          failures: count,
          lockedUntilMs,
        },
      ],
      refusal: locked
        ? new RegisterError(
            'LOCKED_OUT',
            `${count} wrong PINs: locked out for ${ctx.limits.lockoutMs / 1000} s`,
            { lockedUntilMs },
          )
        : new RegisterError('WRONG_PIN', `wrong PIN (${ctx.limits.maxPinAttempts - count} tries left)`),
    };
  }
  const events: JournalEvent[] = [];
  if (s.session && s.session.cashierId !== cashier.id)
    events.push({ type: 'cashier.loggedOut', cashierId: s.session.cashierId });
  events.push({ type: 'cashier.loggedIn', cashierId: cashier.id, name: cashier.name, role: cashier.role });
  return { events, answer: (st) => ({ cashier: st.session }) };
}

export function logout(s: RegisterState): Decision {
  const me = session(s);
  if (s.sale) throw new RegisterError('SALE_IN_PROGRESS', 'finish or cancel the sale first');
  return {
    events: [{ type: 'cashier.loggedOut', cashierId: me.cashierId }],
    answer: () => ({ loggedOut: me.cashierId }),
  };
}

function countTotal(counts: Record<string, number>): number {
  return Object.entries(counts).reduce((sum, [denom, n]) => sum + Number(denom) * n, 0);
}

export function openShiftCmd(s: RegisterState, p: ParamsOf<'shift.open'>, ctx: CommandContext): Decision {
  const me = session(s);
  if (s.shift) throw new RegisterError('SHIFT_OPEN', 'a shift is already open');
  const floatMinor = countTotal(p.floatCounts);
  if (floatMinor > ctx.limits.maxCashMinor) throw new RegisterError('BAD_PARAMS', 'float too large');
  const shiftId = ctx.newId();
  return {
    events: [
      { type: 'shift.opened', shiftId, cashierId: me.cashierId, floatMinor, floatCounts: p.floatCounts },
    ],
    effects: [{ kind: 'drawer' }],
    answer: (st) => ({ shiftId, floatMinor, shift: st.shift }),
  };
}

export function xReport(s: RegisterState) {
  const shift = openShift(s);
  return {
    shiftId: shift.shiftId,
    openedAt: shift.openedAt,
    openedBy: shift.openedBy,
    floatMinor: shift.floatMinor,
    expectedCashMinor: expectedCash(shift),
    totals: shift.totals,
  };
}

export function closeShift(s: RegisterState, p: ParamsOf<'shift.close'>, ctx: CommandContext): Decision {
  const me = session(s);
  const shift = openShift(s);
  if (s.sale) throw new RegisterError('SALE_IN_PROGRESS', 'finish or cancel the sale first');
  noCardPending(s);
  const countedCashMinor = countTotal(p.counts);
  const expectedCashMinor = expectedCash(shift);
  const discrepancyMinor = countedCashMinor - expectedCashMinor;
  const approvedBy =
    Math.abs(discrepancyMinor) > ctx.limits.maxDiscrepancyMinor
      ? approve(s, ctx, p.approval, `a discrepancy of ${discrepancyMinor}`)
      : undefined;
  const report: ZReport = {
    zNo: s.zNo + 1,
    shiftId: shift.shiftId,
    openedAt: shift.openedAt,
    closedAt: ctx.nowMs,
    openedBy: shift.openedBy,
    closedBy: me.cashierId,
    floatMinor: shift.floatMinor,
    expectedCashMinor,
    countedCashMinor,
    discrepancyMinor,
    counts: p.counts,
    ...(approvedBy ? { approvedBy } : {}),
    totals: shift.totals,
  };
  return {
    events: [{ type: 'shift.closed', shiftId: shift.shiftId, cashierId: me.cashierId, report }],
    answer: () => report,
  };
}

function startIfNeeded(
  s: RegisterState,
  ctx: CommandContext,
  events: JournalEvent[],
): { saleId: string; lineCount: number } {
  if (s.sale) {
    if (s.sale.tenders.length)
      throw new RegisterError('SALE_TENDERED', 'payment has started: finish the sale');
    return { saleId: s.sale.saleId, lineCount: s.sale.lines.length + s.sale.voidedLines };
  }
  const me = session(s);
  const shift = openShift(s);
  const saleId = ctx.newId();
  events.push({
    type: 'sale.started',
    saleId,
    cashierId: me.cashierId,
    shiftId: shift.shiftId,
    currency: ctx.catalog.currency,
    tax: ctx.catalog.tax,
  });
  return { saleId, lineCount: 0 };
}

function addLine(
  s: RegisterState,
  ctx: CommandContext,
  product: Product,
  qty: number,
  priceMinor: number | undefined,
  approval: ParamsOf<'sale.add'>['approval'],
): Decision {
  session(s);
  noCardPending(s);
  openShift(s);
  if (qty > ctx.limits.maxQty)
    throw new RegisterError('BAD_PARAMS', `at most ${ctx.limits.maxQty} units on a line`);
  let unitMinor = product.priceMinor;
  let approvedBy: string | undefined;
  if (product.openPrice || priceMinor !== undefined) {
    if (priceMinor === undefined)
      throw new RegisterError('PRICE_REQUIRED', `${product.name} needs a price keyed in`, {
        sku: product.sku,
      });
    if (priceMinor !== product.priceMinor || product.openPrice)
      approvedBy = approve(s, ctx, approval, 'a keyed-in price');
    unitMinor = priceMinor;
  }
  if (s.sale && s.sale.lines.length >= ctx.limits.maxLines)
    throw new RegisterError('SALE_FULL', `at most ${ctx.limits.maxLines} lines`);
  const events: JournalEvent[] = [];
  const { saleId, lineCount } = startIfNeeded(s, ctx, events);
  const lineId = String(lineCount + 1);
  const line = {
    lineId,
    sku: product.sku,
    name: product.name,
    qty,
    unitMinor,
    taxClass: product.taxClass,
    ...(approvedBy ? { openPrice: true } : {}),
  };
  events.push({ type: 'sale.lineAdded', saleId, line, ...(approvedBy ? { approvedBy } : {}) });
  return { events, answer: (st) => ({ lineId, line, sale: saleView(st) }) };
}

/** Look a scanned or keyed code up in the catalog. */
export function findByCode(catalog: Catalog, code: string): Product {
  const n = normalizeBarcode(code);
  if (!n.ok) throw new RegisterError('BAD_BARCODE', n.message, { code, reason: n.reason });
  const index = codeIndex(catalog);
  for (const key of barcodeKeys(n.code)) {
    const product = index.get(key);
    if (product) return product;
  }
  throw new RegisterError('UNKNOWN_BARCODE', `no product for ${n.code}`, { code: n.code });
}

/** Barcodes (and SKUs, for keyed entry) to products, built once per catalog version held in memory. */
const codeIndexes = new WeakMap<Catalog, Map<string, Product>>();
function codeIndex(catalog: Catalog): Map<string, Product> {
  let index = codeIndexes.get(catalog);
  if (!index) {
    index = new Map();
    for (const p of catalog.products) if (!index.has(p.sku)) index.set(p.sku, p);
    // Barcodes win over SKUs: a scanned code is what the shelf says.
    for (const p of catalog.products) for (const b of p.barcodes) index.set(b, p);
    codeIndexes.set(catalog, index);
  }
  return index;
}

export function scan(s: RegisterState, p: ParamsOf<'sale.scan'>, ctx: CommandContext): Decision {
  session(s);
  return addLine(s, ctx, findByCode(ctx.catalog, p.code), 1, undefined, undefined);
}

export function add(s: RegisterState, p: ParamsOf<'sale.add'>, ctx: CommandContext): Decision {
  session(s);
  const product = ctx.catalog.products.find((x) => x.sku === p.sku);
  if (!product) throw new RegisterError('UNKNOWN_SKU', `no product ${p.sku}`, { sku: p.sku });
  return addLine(s, ctx, product, p.qty ?? 1, p.priceMinor, p.approval);
}

function lineOf(sale: SaleInProgress, lineId: string) {
  const line = sale.lines.find((l) => l.lineId === lineId);
  if (!line) throw new RegisterError('LINE_NOT_FOUND', `no line ${lineId}`);
  return line;
}

export function setQty(s: RegisterState, p: ParamsOf<'sale.setQty'>, ctx: CommandContext): Decision {
  session(s);
  noCardPending(s);
  const sale = currentSale(s);
  if (sale.tenders.length) throw new RegisterError('SALE_TENDERED', 'payment has started');
  lineOf(sale, p.lineId);
  if (p.qty > ctx.limits.maxQty)
    throw new RegisterError('BAD_PARAMS', `at most ${ctx.limits.maxQty} units on a line`);
  return {
    events: [{ type: 'sale.qtySet', saleId: sale.saleId, lineId: p.lineId, qty: p.qty }],
    answer: (st) => ({ sale: saleView(st) }),
  };
}

export function voidLine(s: RegisterState, p: ParamsOf<'sale.voidLine'>, ctx: CommandContext): Decision {
  session(s);
  noCardPending(s);
  const sale = currentSale(s);
  lineOf(sale, p.lineId);
  const approvedBy = sale.tenders.length
    ? approve(s, ctx, p.approval, 'a void after payment started')
    : undefined;
  if (sale.tenders.length) {
    const after = saleTotals({ ...sale, lines: sale.lines.filter((l) => l.lineId !== p.lineId) });
    if (after.totalMinor < paidMinor(sale.tenders))
      throw new RegisterError('SALE_TENDERED', 'more is paid than would be owed: cancel and refund instead');
  }
  return {
    events: [
      {
        type: 'sale.lineVoided',
        saleId: sale.saleId,
        lineId: p.lineId,
        ...(approvedBy ? { approvedBy } : {}),
      },
    ],
    answer: (st) => ({ sale: saleView(st) }),
  };
}

export function discount(s: RegisterState, p: ParamsOf<'sale.discount'>, ctx: CommandContext): Decision {
  session(s);
  noCardPending(s);
  const sale = currentSale(s);
  if (sale.tenders.length) throw new RegisterError('SALE_TENDERED', 'payment has started');
  const base = p.lineId
    ? (() => {
        const l = lineOf(sale, p.lineId!);
        return l.qty * l.unitMinor;
      })()
    : saleTotals({ ...sale, basketDiscount: undefined }).lines.reduce((a, l) => a + l.netOfDiscountMinor, 0);
  if (p.kind === 'percent' && p.value > 10_000)
    throw new RegisterError('BAD_PARAMS', 'a percentage is at most 10000 basis points');
  if (p.kind === 'amount' && p.value > base)
    throw new RegisterError('DISCOUNT_TOO_HIGH', 'the discount is more than the amount');
  const bp = p.kind === 'percent' ? p.value : base === 0 ? 0 : roundDiv(p.value * 10_000, base, 'half-up');
  const approvedBy =
    bp > ctx.limits.maxDiscountBp
      ? approve(s, ctx, p.approval, `a discount over ${ctx.limits.maxDiscountBp / 100} %`)
      : undefined;
  const value =
    p.value === 0
      ? null
      : p.kind === 'percent'
        ? { kind: 'percent', bp: p.value }
        : { kind: 'amount', minor: p.value };
  return {
    events: [
      {
        type: 'sale.discountSet',
        saleId: sale.saleId,
        ...(p.lineId ? { lineId: p.lineId } : {}),
        discount: value,
        ...(approvedBy ? { approvedBy } : {}),
      },
    ],
    answer: (st) => ({ sale: saleView(st) }),
  };
}

/** What is still owed on the sale, before any cash rounding. */
export function dueMinor(sale: SaleInProgress): number {
  return saleTotals(sale).totalMinor - paidMinor(sale.tenders);
}

/**
 * A cash tender. Paying the rest in cash rounds what is owed to the cash increment; less than that
 * is a partial payment. Completes the sale when nothing is left.
 */
export function tenderCash(s: RegisterState, amountMinor: number | undefined, ctx: CommandContext): Decision {
  const me = session(s);
  const sale = currentSale(s);
  noCardPending(s);
  if (sale.lines.length === 0) throw new RegisterError('EMPTY_SALE');
  const due = dueMinor(sale);
  const rounded = cashRound(due, ctx.catalog.tax.cashIncrementMinor);
  const tendered = amountMinor ?? rounded.roundedMinor;
  if (tendered <= 0) throw new RegisterError('BAD_PARAMS', 'a cash tender needs an amount');
  if (tendered > ctx.limits.maxCashMinor)
    throw new RegisterError('BAD_PARAMS', 'that is more cash than the till takes at once');
  const tender: Tender = { kind: 'cash', amountMinor: tendered };
  const events: JournalEvent[] = [{ type: 'sale.tendered', saleId: sale.saleId, tender }];
  if (tendered < rounded.roundedMinor)
    return {
      events,
      effects: [{ kind: 'drawer' }],
      answer: (st) => ({ completed: false, sale: saleView(st) }),
    };
  const changeMinor = tendered - rounded.roundedMinor;
  const completion = complete(
    s,
    ctx,
    me.name,
    [...sale.tenders, tender],
    changeMinor,
    rounded.adjustmentMinor,
  );
  return {
    events: [...events, completion.event],
    effects: [{ kind: 'drawer' }, { kind: 'print', receiptNo: completion.receiptNo }],
    answer: completion.answer,
  };
}

function complete(
  s: RegisterState,
  ctx: CommandContext,
  cashierName: string,
  tenders: Tender[],
  changeMinor: number,
  roundingMinor: number,
) {
  const sale = s.sale!;
  const totals = saleTotals(sale);
  const receiptNo = s.receiptNo + 1;
  if (paidMinor(tenders) - changeMinor !== totals.totalMinor + roundingMinor) {
    throw new RegisterError('INTERNAL', 'tenders do not add up'); // cannot happen: a guard on both sides of the write
  }
  return {
    receiptNo,
    event: {
      type: 'sale.completed',
      saleId: sale.saleId,
      receiptNo,
      cashierId: sale.cashierId,
      cashierName,
      totals,
      changeMinor,
      roundingMinor,
      // The whole sale, so the ledger books it from this one event (wire protocol ◆), whatever it
      // saw of the lines being rung up.
      shiftId: sale.shiftId,
      startedAt: sale.startedAt,
      currency: sale.currency,
      taxMode: sale.tax.mode,
      lines: sale.lines,
      tenders,
      ...(sale.basketDiscount ? { basketDiscount: sale.basketDiscount } : {}),
      voidedLines: sale.voidedLines,
      voidedMinor: sale.voidedMinor,
    } as JournalEvent,
    answer: (st: RegisterState) => ({
      completed: true,
      receiptNo,
      changeMinor,
      roundingMinor,
      totalMinor: totals.totalMinor,
      receipt: receiptDoc(st, receiptNo, ctx),
    }),
  };
}

/**
 * May the terminal approve this amount offline? The POS's limits, checked with every request: what a
 * terminal approves offline is the store's risk until it is forwarded, and an issuer may still decline.
 * When not, says why in words for the cashier.
 */
export function offlinePermission(
  s: RegisterState,
  amountMinor: number,
  currency: string,
  ctx: Pick<CommandContext, 'limits' | 'nowMs'>,
): { allowed: true } | { allowed: false; why: string } {
  const limits = ctx.limits.cardOffline;
  const held = Object.values(s.offlineCard);
  const heldMinor = held.reduce((sum, a) => sum + a.amountMinor, 0);
  const oldest = held.reduce((min, a) => Math.min(min, a.approvedAt), Infinity);
  const money = (m: number) => formatMinor(m, currency);
  if (amountMinor > limits.maxTxnMinor)
    return {
      allowed: false,
      why: `${money(amountMinor)} is over the offline limit of ${money(limits.maxTxnMinor)}`,
    };
  if (heldMinor + amountMinor > limits.maxOutstandingMinor)
    return {
      allowed: false,
      why: `offline card payments waiting to be sent (${money(heldMinor)}) would go over ${money(limits.maxOutstandingMinor)}`,
    };
  if (held.length + 1 > limits.maxOutstandingCount)
    return { allowed: false, why: `${held.length} offline card payments are already waiting to be sent` };
  if (ctx.nowMs - oldest > limits.maxAgeMs)
    return {
      allowed: false,
      why: `an offline card payment has waited more than ${Math.round(limits.maxAgeMs / 3_600_000)} h to be sent`,
    };
  return { allowed: true };
}

/** The record written before a card request goes to the terminal (no double charge). */
export function cardRequest(
  s: RegisterState,
  amountMinor: number | undefined,
  ctx: CommandContext,
): Decision & { txn: string; amountMinor: number; offlineAllowed: boolean } {
  session(s);
  const sale = currentSale(s);
  noCardPending(s);
  if (sale.lines.length === 0) throw new RegisterError('EMPTY_SALE');
  const due = dueMinor(sale);
  const amount = amountMinor ?? due;
  if (amount <= 0 || amount > due)
    throw new RegisterError('BAD_PARAMS', `a card tender is 1 to ${due} (no cash back)`);
  const txn = ctx.newId();
  const offlineAllowed = offlinePermission(s, amount, sale.currency, ctx).allowed;
  return {
    txn,
    amountMinor: amount,
    offlineAllowed,
    events: [
      {
        type: 'card.requested',
        txn,
        saleId: sale.saleId,
        amountMinor: amount,
        currency: sale.currency,
        offlineAllowed,
      },
    ],
  };
}

/** The refusal for a card the terminal would not take offline because of the POS's limits. */
export function offlineLimitRefusal(
  s: RegisterState,
  amountMinor: number,
  currency: string,
  ctx: Pick<CommandContext, 'limits' | 'nowMs'>,
): RegisterError {
  const permission = offlinePermission(s, amountMinor, currency, ctx);
  const why = permission.allowed ? 'it is over the offline limits' : permission.why;
  return new RegisterError(
    'CARD_OFFLINE_LIMIT',
    `Card payments are offline and ${why}: take cash or another tender.`,
    { amountMinor },
  );
}

/**
 * The record for a store-and-forward outcome: the terminal forwarded an offline approval and the issuer
 * answered. A decline is money the store will not get for goods already gone: it travels to the ledger
 * as an exception. A repeat of an outcome already recorded writes nothing.
 */
export function safResult(
  s: RegisterState,
  e: { txn: string; outcome: 'approved' | 'declined'; authCode?: string; message?: string },
): Decision {
  const held = s.offlineCard[e.txn];
  // A decline for a txn we no longer hold is still recorded (the ledger keeps one per txn); an approval
  // for one is a resend.
  if (!held && e.outcome === 'approved') return { events: [] };
  const receiptNo = held ? s.saleReceipt[held.saleId] : undefined;
  return {
    events: [
      {
        type: 'card.saf',
        txn: e.txn,
        outcome: e.outcome,
        ...(held ? { saleId: held.saleId, amountMinor: held.amountMinor, currency: held.currency } : {}),
        ...(receiptNo !== undefined ? { receiptNo } : {}),
        ...(e.authCode ? { authCode: e.authCode } : {}),
        ...(e.message ? { message: e.message } : {}),
      },
    ],
  };
}

/** The record written with the terminal's answer: the result, and on approval the tender (and completion). */
export function cardResult(
  s: RegisterState,
  txn: string,
  result: import('./card.js').CardOutcome,
  ctx: CommandContext,
): Decision {
  const pending = s.pendingCard;
  if (!pending || pending.txn !== txn) throw new RegisterError('INTERNAL', `no card request ${txn} is open`);
  const resultEvent: JournalEvent = { type: 'card.result', txn, ...result };
  const sale = s.sale;
  if (result.outcome !== 'approved' || !sale || sale.saleId !== pending.saleId) {
    return {
      events: [resultEvent],
      refusal:
        result.outcome === 'approved'
          ? undefined
          : result.reason === 'offline_not_allowed'
            ? offlineLimitRefusal(s, pending.amountMinor, pending.currency, ctx)
            : new RegisterError('CARD_DECLINED', result.message ?? `card ${result.outcome}`, {
                outcome: result.outcome,
              }),
      answer: (st) => ({ completed: false, sale: saleView(st) }),
    };
  }
  const tender: Tender = {
    kind: 'card',
    amountMinor: pending.amountMinor,
    txn,
    mode: result.mode,
    authCode: result.authCode,
    maskedPan: result.maskedPan,
    brand: result.brand,
  };
  const events: JournalEvent[] = [resultEvent, { type: 'sale.tendered', saleId: sale.saleId, tender }];
  const due = dueMinor(sale) - tender.amountMinor;
  if (due > 0) return { events, answer: (st) => ({ completed: false, sale: saleView(st) }) };
  const completion = complete(s, ctx, s.session?.name ?? sale.cashierId, [...sale.tenders, tender], 0, 0);
  return {
    events: [...events, completion.event],
    effects: [{ kind: 'print', receiptNo: completion.receiptNo }],
    answer: completion.answer,
  };
}

export function cancel(s: RegisterState, p: ParamsOf<'sale.cancel'>, ctx: CommandContext): Decision {
  const me = session(s);
  const sale = currentSale(s);
  noCardPending(s);
  if (sale.tenders.some((t) => t.kind === 'card'))
    throw new RegisterError('SALE_TENDERED', 'a card was charged: complete the sale, then refund it');
  const approvedBy = sale.tenders.length
    ? approve(s, ctx, p.approval, 'cancelling after payment started')
    : undefined;
  const cashBack = paidMinor(sale.tenders);
  return {
    events: [
      {
        type: 'sale.cancelled',
        saleId: sale.saleId,
        cashierId: me.cashierId,
        cashReturnedMinor: cashBack,
        ...(approvedBy ? { approvedBy } : {}),
      },
    ],
    effects: cashBack ? [{ kind: 'drawer' }] : [],
    answer: () => ({ cancelled: sale.saleId, cashReturnedMinor: cashBack }),
  };
}

export function findSale(
  s: RegisterState,
  receiptNo: number | undefined,
  saleId: string | undefined,
): CompletedSale {
  const no = receiptNo ?? (saleId !== undefined ? s.saleReceipt[saleId] : undefined);
  const doc = no !== undefined ? s.receipts[no] : undefined;
  if (!doc || !('saleId' in doc))
    throw new RegisterError('RECEIPT_NOT_FOUND', `no sale ${receiptNo ?? saleId} on this register`);
  return doc;
}

/** What the customer paid for a line, tax included: the base of every refund of it. */
function linePaid(sale: CompletedSale, lineId: string): { paid: number; tax: number } {
  const t = sale.totals.lines.find((l) => l.lineId === lineId)!;
  return { paid: t.netOfDiscountMinor + (sale.taxMode === 'exclusive' ? t.taxMinor : 0), tax: t.taxMinor };
}

/** Refund lines of a completed sale: never more units than were sold and not yet refunded. */
export function refundPlan(s: RegisterState, p: ParamsOf<'sale.refund'>) {
  const sale = findSale(s, p.receiptNo, p.saleId);
  const wanted =
    p.lines ??
    sale.lines
      .map((l) => ({ lineId: l.lineId, qty: l.qty - (sale.refunded[l.lineId] ?? 0) }))
      .filter((l) => l.qty > 0);
  if (wanted.length === 0)
    throw new RegisterError('NOTHING_TO_REFUND', `receipt ${sale.receiptNo} is fully refunded`);
  const seen = new Set<string>();
  const lines = wanted.map(({ lineId, qty }) => {
    const line = sale.lines.find((l) => l.lineId === lineId);
    if (!line) throw new RegisterError('LINE_NOT_FOUND', `receipt ${sale.receiptNo} has no line ${lineId}`);
    if (seen.has(lineId)) throw new RegisterError('BAD_PARAMS', `line ${lineId} twice`);
    seen.add(lineId);
    const done = sale.refunded[lineId] ?? 0;
    if (done + qty > line.qty)
      throw new RegisterError(
        'REFUND_EXCEEDS_SALE',
        `line ${lineId}: ${line.qty - done} of ${line.qty} left to refund`,
      );
    // Cumulative shares, so several partial refunds add up to exactly what was paid.
    const { paid, tax } = linePaid(sale, lineId);
    const share = (units: number, of: number) => roundDiv(of * units, line.qty, 'half-up');
    return {
      lineId,
      sku: line.sku,
      name: line.name,
      qty,
      amountMinor: share(done + qty, paid) - share(done, paid),
      taxMinor: share(done + qty, tax) - share(done, tax),
      taxClass: line.taxClass,
    };
  });
  return { sale, lines, amountMinor: lines.reduce((a, l) => a + l.amountMinor, 0) };
}

export function refundEvent(
  s: RegisterState,
  p: ParamsOf<'sale.refund'>,
  ctx: CommandContext,
  approvedBy: string,
  refundId: string,
  tender: Tender,
): Decision {
  const me = session(s);
  const plan = refundPlan(s, p);
  const receiptNo = s.receiptNo + 1;
  return {
    events: [
      {
        type: 'refund.completed',
        refundId,
        receiptNo,
        originalSaleId: plan.sale.saleId,
        originalReceiptNo: plan.sale.receiptNo,
        cashierId: me.cashierId,
        currency: plan.sale.currency,
        lines: plan.lines,
        amountMinor: plan.amountMinor,
        tender,
        approvedBy,
      },
    ],
    effects: [
      ...(tender.kind === 'cash' ? [{ kind: 'drawer' } as Effect] : []),
      { kind: 'print', receiptNo },
    ],
    answer: (st) => ({
      refundId,
      receiptNo,
      amountMinor: plan.amountMinor,
      receipt: receiptDoc(st, receiptNo, ctx),
    }),
  };
}

export function payout(s: RegisterState, p: ParamsOf<'cash.payout'>, ctx: CommandContext): Decision {
  const me = session(s);
  const shift = openShift(s);
  if (s.sale) throw new RegisterError('SALE_IN_PROGRESS');
  const approvedBy = approve(s, ctx, p.approval, 'a payout');
  if (p.amountMinor > expectedCash(shift))
    throw new RegisterError('NOT_ENOUGH_CASH', 'the drawer does not hold that much');
  return {
    events: [
      {
        type: 'cash.payout',
        shiftId: shift.shiftId,
        cashierId: me.cashierId,
        amountMinor: p.amountMinor,
        reason: p.reason,
        approvedBy,
      },
    ],
    effects: [{ kind: 'drawer' }],
    answer: (st) => ({ expectedCashMinor: expectedCash(st.shift!) }),
  };
}

export function paidIn(s: RegisterState, p: ParamsOf<'cash.paidIn'>, ctx: CommandContext): Decision {
  const me = session(s);
  const shift = openShift(s);
  if (s.sale) throw new RegisterError('SALE_IN_PROGRESS');
  if (p.amountMinor > ctx.limits.maxCashMinor) throw new RegisterError('BAD_PARAMS', 'too much cash at once');
  return {
    events: [
      {
        type: 'cash.paidIn',
        shiftId: shift.shiftId,
        cashierId: me.cashierId,
        amountMinor: p.amountMinor,
        reason: p.reason,
      },
    ],
    effects: [{ kind: 'drawer' }],
    answer: (st) => ({ expectedCashMinor: expectedCash(st.shift!) }),
  };
}

export function noSale(s: RegisterState, p: ParamsOf<'drawer.open'>, ctx: CommandContext): Decision {
  const me = session(s);
  const shift = openShift(s);
  if (s.sale) throw new RegisterError('SALE_IN_PROGRESS');
  const approvedBy = approve(s, ctx, p.approval, 'opening the drawer without a sale');
  return {
    events: [
      {
        type: 'drawer.opened',
        reason: 'no-sale',
        shiftId: shift.shiftId,
        cashierId: me.cashierId,
        approvedBy,
      },
    ],
    effects: [{ kind: 'drawer' }],
    answer: () => ({ opened: true }),
  };
}

export function reprint(s: RegisterState, p: ParamsOf<'receipt.reprint'>, ctx: CommandContext): Decision {
  const me = session(s);
  const receiptNo = p.receiptNo ?? s.receiptNo;
  if (!s.receipts[receiptNo])
    throw new RegisterError('RECEIPT_NOT_FOUND', `no receipt ${receiptNo} on this register`);
  return {
    events: [{ type: 'receipt.reprinted', receiptNo, cashierId: me.cashierId }],
    effects: [{ kind: 'print', receiptNo }],
    answer: (st) => ({ receipt: receiptDoc(st, receiptNo, ctx) }),
  };
}

// ---- views ----

export function saleView(s: RegisterState) {
  const sale = s.sale;
  if (!sale) return null;
  const totals = saleTotals(sale);
  return {
    saleId: sale.saleId,
    cashierId: sale.cashierId,
    lines: sale.lines,
    basketDiscount: sale.basketDiscount ?? null,
    totals,
    tenders: sale.tenders,
    dueMinor: totals.totalMinor - paidMinor(sale.tenders),
  };
}

export interface ReceiptLine {
  name: string;
  sku: string;
  qty: number;
  unitMinor: number;
  amountMinor: number;
  taxClass: string;
}

/** The structured receipt: what the printer prints and the fleet page shows. */
export function receiptDoc(
  s: RegisterState,
  receiptNo: number,
  ctx: Pick<CommandContext, 'catalog' | 'syncedThroughSeq'>,
) {
  const doc = s.receipts[receiptNo];
  if (!doc) throw new RegisterError('RECEIPT_NOT_FOUND', `no receipt ${receiptNo} on this register`);
  const common = {
    /** Not yet in the ledger's books: the receipt says so. */
    offline: doc.seq > ctx.syncedThroughSeq,
    storeId: ctx.catalog.storeId,
    storeName: ctx.catalog.storeName ?? ctx.catalog.storeId,
    receiptNo,
    time: doc.ts,
    clock: doc.clock,
    currency: doc.currency,
    chain: doc.hash.slice(0, 12),
    seq: doc.seq,
  };
  if ('saleId' in doc) {
    return {
      kind: 'sale' as const,
      ...common,
      saleId: doc.saleId,
      cashier: doc.cashierName,
      lines: doc.lines.map((l, i) => ({
        name: l.name,
        sku: l.sku,
        qty: l.qty,
        unitMinor: l.unitMinor,
        amountMinor: doc.totals.lines[i]!.netOfDiscountMinor,
        discountMinor: doc.totals.lines[i]!.discountMinor,
        taxClass: l.taxClass,
      })),
      subtotalMinor: doc.totals.subtotalMinor,
      discountMinor: doc.totals.discountMinor,
      taxes: doc.totals.taxes,
      taxMinor: doc.totals.taxMinor,
      totalMinor: doc.totals.totalMinor,
      roundingMinor: doc.roundingMinor,
      tenders: doc.tenders.map((t) => ({
        kind: t.kind,
        amountMinor: t.amountMinor,
        ...(t.kind === 'card'
          ? { brand: t.brand, maskedPan: t.maskedPan, authCode: t.authCode, mode: t.mode }
          : {}),
      })),
      changeMinor: doc.changeMinor,
      refunded: doc.refunded,
    };
  }
  return {
    kind: 'refund' as const,
    ...common,
    refundId: doc.refundId,
    originalReceiptNo: doc.originalReceiptNo,
    originalSaleId: doc.originalSaleId,
    cashier: doc.cashierId,
    lines: doc.lines,
    amountMinor: doc.amountMinor,
    tender: doc.tender,
  };
}

/** Refunds need an open shift, no sale in progress, no open card request, and a manager. */
export function approveRefund(
  s: RegisterState,
  ctx: CommandContext,
  approval: ParamsOf<'sale.refund'>['approval'],
): string {
  session(s);
  openShift(s);
  if (s.sale) throw new RegisterError('SALE_IN_PROGRESS', 'finish or cancel the sale first');
  noCardPending(s);
  return approve(s, ctx, approval, 'a refund');
}
