// The register's state is the fold of its journal: every event below is written by a command (see
// commands.ts) after it was checked, so folding never refuses anything. The fold mutates in place
// (a register folds hundreds of thousands of records; copying would dominate) and stays JSON-plain,
// because checkpoints store it as JSON.
import type { JournalRecord } from '../../cloud-bridge/protocol/record.js';
import type { TaxRules } from './catalog.js';
import type { Role } from './cashiers.js';
import { computeTotals, type BasketTotals, type Discount } from './tax.js';

export type TenderKind = 'cash' | 'card';

export interface SaleLine {
  lineId: string;
  sku: string;
  name: string;
  qty: number;
  unitMinor: number;
  taxClass: string;
  discount?: Discount;
  openPrice?: boolean;
}

export interface Tender {
  kind: TenderKind;
  amountMinor: number;
  /** Card only: the terminal transaction and what it said. */
  txn?: string;
  mode?: 'online' | 'offline';
  authCode?: string;
  maskedPan?: string;
  brand?: string;
}

export interface SaleInProgress {
  saleId: string;
  cashierId: string;
  shiftId: string;
  startedAt: number;
  currency: string;
  /** Tax rules as they were when the sale started: a catalog update mid-sale changes nothing. */
  tax: TaxRules;
  lines: SaleLine[];
  voidedLines: number;
  voidedMinor: number;
  basketDiscount?: Discount;
  tenders: Tender[];
}

/** A completed sale as kept for reprints and refunds. */
export interface CompletedSale {
  saleId: string;
  receiptNo: number;
  seq: number;
  hash: string;
  ts: number;
  clock: 'trusted' | 'untrusted';
  cashierId: string;
  cashierName: string;
  shiftId: string;
  currency: string;
  /** Whether line amounts include tax (inclusive) or tax was added (exclusive). */
  taxMode: 'inclusive' | 'exclusive';
  lines: SaleLine[];
  totals: BasketTotals;
  tenders: Tender[];
  changeMinor: number;
  roundingMinor: number;
  /** Quantity refunded so far, by lineId. */
  refunded: Record<string, number>;
}

export interface CompletedRefund {
  refundId: string;
  receiptNo: number;
  seq: number;
  hash: string;
  ts: number;
  clock: 'trusted' | 'untrusted';
  originalSaleId: string;
  originalReceiptNo: number;
  cashierId: string;
  currency: string;
  lines: {
    lineId: string;
    sku: string;
    name: string;
    qty: number;
    amountMinor: number;
    taxMinor: number;
    taxClass: string;
  }[];
  amountMinor: number;
  tender: Tender;
}

export interface ShiftTotals {
  sales: number;
  grossMinor: number;
  discountMinor: number;
  taxMinor: number;
  totalMinor: number;
  byTender: Record<TenderKind, number>;
  changeMinor: number;
  roundingMinor: number;
  taxes: Record<string, { name: string; rateBp: number; baseMinor: number; taxMinor: number }>;
  byCashier: Record<string, { sales: number; totalMinor: number }>;
  voids: { lines: number; amountMinor: number; sales: number };
  refunds: { count: number; amountMinor: number; byTender: Record<TenderKind, number> };
  discounts: number;
  noSales: number;
  payouts: { count: number; amountMinor: number };
  paidIns: { count: number; amountMinor: number };
}

export interface Shift {
  shiftId: string;
  openedBy: string;
  openedAt: number;
  floatMinor: number;
  floatCounts: Record<string, number>;
  totals: ShiftTotals;
}

export interface PendingCard {
  txn: string;
  amountMinor: number;
  currency: string;
  /** What the charge is for: a sale's tender or a refund. */
  saleId?: string;
  refundId?: string;
  /**
   * For a refund: what to book when the terminal approves (the request's params, already checked when
   * journaled, and the approving manager). Typed in register.ts, which owns the refund flow.
   */
  refund?: { params: unknown; approvedBy: string; refundId: string };
  requestedAt: number;
}

/** A card payment the terminal approved offline and still holds to forward (store and forward). */
export interface OfflineApproval {
  amountMinor: number;
  currency: string;
  saleId: string;
  approvedAt: number;
}

export interface RegisterState {
  /** Last receipt number issued (sales and refunds share one gapless series). */
  receiptNo: number;
  /** Last Z report number. */
  zNo: number;
  session: { cashierId: string; name: string; role: Role; since: number } | null;
  pinFailures: Record<string, { count: number; lockedUntilMs: number }>;
  shift: Shift | null;
  sale: SaleInProgress | null;
  pendingCard: PendingCard | null;
  /**
   * Offline card approvals not yet forwarded, by txn: what the POS's offline limits count. Bounded by
   * those limits (a count and a total), cleared by each `card.saf`.
   */
  offlineCard: Record<string, OfflineApproval>;
  /** Recent receipts by number, oldest evicted past RECENT_RECEIPTS. */
  receipts: Record<string, CompletedSale | CompletedRefund>;
  receiptOrder: number[];
  saleReceipt: Record<string, number>;
  lastZ: ZReport | null;
}

export interface ZReport {
  zNo: number;
  shiftId: string;
  openedAt: number;
  closedAt: number;
  openedBy: string;
  closedBy: string;
  floatMinor: number;
  expectedCashMinor: number;
  countedCashMinor: number;
  discrepancyMinor: number;
  counts: Record<string, number>;
  approvedBy?: string;
  totals: ShiftTotals;
}

/**
 * How many receipts the register keeps for reprints and refunds: about a week of a busy till. Older
 * sales are refunded from the ledger's books, not the device's memory.
 */
export const RECENT_RECEIPTS = 5000;

export function initialState(): RegisterState {
  return {
    receiptNo: 0,
    zNo: 0,
    session: null,
    pinFailures: {},
    shift: null,
    sale: null,
    pendingCard: null,
    offlineCard: {},
    receipts: {},
    receiptOrder: [],
    saleReceipt: {},
    lastZ: null,
  };
}

export function emptyTotals(): ShiftTotals {
  return {
    sales: 0,
    grossMinor: 0,
    discountMinor: 0,
    taxMinor: 0,
    totalMinor: 0,
    byTender: { cash: 0, card: 0 },
    changeMinor: 0,
    roundingMinor: 0,
    taxes: {},
    byCashier: {},
    voids: { lines: 0, amountMinor: 0, sales: 0 },
    refunds: { count: 0, amountMinor: 0, byTender: { cash: 0, card: 0 } },
    discounts: 0,
    noSales: 0,
    payouts: { count: 0, amountMinor: 0 },
    paidIns: { count: 0, amountMinor: 0 },
  };
}

/** Totals of the sale in progress, from the tax rules it started with. */
export function saleTotals(sale: SaleInProgress): BasketTotals {
  return computeTotals(sale.lines, sale.basketDiscount, sale.tax);
}

export function paidMinor(tenders: Tender[]): number {
  return tenders.reduce((sum, t) => sum + t.amountMinor, 0);
}

/** Cash in the drawer now: float + cash taken − change − cash refunds − payouts + paid-ins. */
export function expectedCash(shift: Shift): number {
  const t = shift.totals;
  return (
    shift.floatMinor +
    t.byTender.cash -
    t.changeMinor -
    t.refunds.byTender.cash -
    t.payouts.amountMinor +
    t.paidIns.amountMinor
  );
}

function remember(state: RegisterState, doc: CompletedSale | CompletedRefund): void {
  state.receipts[doc.receiptNo] = doc;
  state.receiptOrder.push(doc.receiptNo);
  if ('saleId' in doc) state.saleReceipt[doc.saleId] = doc.receiptNo;
  while (state.receiptOrder.length > RECENT_RECEIPTS) {
    const old = state.receipts[state.receiptOrder.shift()!];
    if (old && 'saleId' in old) delete state.saleReceipt[old.saleId];
    if (old) delete state.receipts[old.receiptNo];
  }
}

type E = Record<string, unknown> & { type: string };

export function applyRecord(state: RegisterState, record: JournalRecord): RegisterState {
  for (const event of record.events) applyEvent(state, event as E, record);
  return state;
}

export const registerReducer = { initial: initialState, apply: applyRecord };

/* eslint-disable @typescript-eslint/no-explicit-any -- events are checked when written, not re-checked here */
function applyEvent(s: RegisterState, e: E, r: JournalRecord): void {
  const ev = e as any;
  switch (e.type) {
    case 'cashier.loggedIn':
      s.session = { cashierId: ev.cashierId, name: ev.name, role: ev.role, since: r.ts };
      delete s.pinFailures[ev.cashierId];
      return;
    case 'cashier.loginFailed':
      s.pinFailures[ev.cashierId] = { count: ev.failures, lockedUntilMs: ev.lockedUntilMs ?? 0 };
      return;
    case 'cashier.loggedOut':
      s.session = null;
      return;
    case 'shift.opened':
      s.shift = {
        shiftId: ev.shiftId,
        openedBy: ev.cashierId,
        openedAt: r.ts,
        floatMinor: ev.floatMinor,
        floatCounts: ev.floatCounts,
        totals: emptyTotals(),
      };
      return;
    case 'shift.closed':
      s.zNo = ev.report.zNo;
      s.lastZ = ev.report;
      s.shift = null;
      return;
    case 'sale.started':
      s.sale = {
        saleId: ev.saleId,
        cashierId: ev.cashierId,
        shiftId: ev.shiftId,
        startedAt: r.ts,
        currency: ev.currency,
        tax: ev.tax,
        lines: [],
        voidedLines: 0,
        voidedMinor: 0,
        tenders: [],
      };
      return;
    case 'sale.lineAdded':
      s.sale!.lines.push(ev.line);
      return;
    case 'sale.qtySet': {
      const line = s.sale!.lines.find((l) => l.lineId === ev.lineId)!;
      line.qty = ev.qty;
      return;
    }
    case 'sale.lineVoided': {
      const sale = s.sale!;
      const i = sale.lines.findIndex((l) => l.lineId === ev.lineId);
      const [line] = sale.lines.splice(i, 1);
      sale.voidedLines++;
      sale.voidedMinor += line!.qty * line!.unitMinor;
      return;
    }
    case 'sale.discountSet':
      if (ev.lineId) {
        const line = s.sale!.lines.find((l) => l.lineId === ev.lineId)!;
        if (ev.discount) line.discount = ev.discount;
        else delete line.discount;
      } else if (ev.discount) s.sale!.basketDiscount = ev.discount;
      else delete s.sale!.basketDiscount;
      return;
    case 'card.requested':
      s.pendingCard = {
        txn: ev.txn,
        amountMinor: ev.amountMinor,
        currency: ev.currency,
        saleId: ev.saleId,
        refundId: ev.refundId,
        refund: ev.refund,
        requestedAt: r.ts,
      };
      return;
    case 'card.result': {
      const pending = s.pendingCard;
      if (!pending || pending.txn !== ev.txn) return;
      s.pendingCard = null;
      if (ev.outcome === 'approved' && ev.mode === 'offline' && pending.saleId) {
        s.offlineCard[ev.txn] = {
          amountMinor: pending.amountMinor,
          currency: pending.currency,
          saleId: pending.saleId,
          approvedAt: r.ts,
        };
      }
      return;
    }
    case 'card.saf':
      delete s.offlineCard[ev.txn];
      return;
    case 'sale.tendered':
      s.sale!.tenders.push(ev.tender);
      return;
    case 'sale.completed': {
      const sale = s.sale!;
      const totals: BasketTotals = ev.totals;
      s.receiptNo = ev.receiptNo;
      remember(s, {
        saleId: sale.saleId,
        receiptNo: ev.receiptNo,
        seq: r.seq,
        hash: r.hash,
        ts: r.ts,
        clock: r.clock,
        cashierId: sale.cashierId,
        cashierName: ev.cashierName,
        shiftId: sale.shiftId,
        currency: sale.currency,
        taxMode: sale.tax.mode,
        lines: sale.lines,
        totals,
        tenders: sale.tenders,
        changeMinor: ev.changeMinor,
        roundingMinor: ev.roundingMinor,
        refunded: {},
      });
      if (s.shift) addSale(s.shift.totals, sale, totals, ev.changeMinor, ev.roundingMinor);
      s.sale = null;
      return;
    }
    case 'sale.cancelled':
      if (s.shift) {
        s.shift.totals.voids.sales++;
        s.shift.totals.voids.amountMinor += s.sale!.lines.reduce((a, l) => a + l.qty * l.unitMinor, 0);
      }
      s.sale = null;
      return;
    case 'refund.completed': {
      s.receiptNo = ev.receiptNo;
      const original = s.receipts[ev.originalReceiptNo] as CompletedSale | undefined;
      if (original)
        for (const l of ev.lines) original.refunded[l.lineId] = (original.refunded[l.lineId] ?? 0) + l.qty;
      remember(s, {
        refundId: ev.refundId,
        receiptNo: ev.receiptNo,
        seq: r.seq,
        hash: r.hash,
        ts: r.ts,
        clock: r.clock,
        originalSaleId: ev.originalSaleId,
        originalReceiptNo: ev.originalReceiptNo,
        cashierId: ev.cashierId,
        currency: ev.currency,
        lines: ev.lines,
        amountMinor: ev.amountMinor,
        tender: ev.tender,
      });
      if (s.shift) {
        const t = s.shift.totals.refunds;
        t.count++;
        t.amountMinor += ev.amountMinor;
        t.byTender[ev.tender.kind as TenderKind] += ev.amountMinor;
      }
      return;
    }
    case 'cash.payout':
      s.shift!.totals.payouts.count++;
      s.shift!.totals.payouts.amountMinor += ev.amountMinor;
      return;
    case 'cash.paidIn':
      s.shift!.totals.paidIns.count++;
      s.shift!.totals.paidIns.amountMinor += ev.amountMinor;
      return;
    case 'drawer.opened':
      if (s.shift) s.shift.totals.noSales++;
      return;
    default:
      // Events this version does not fold (e.g. receipt.reprinted) are kept in the journal and books.
      return;
  }
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function addSale(
  t: ShiftTotals,
  sale: SaleInProgress,
  totals: BasketTotals,
  changeMinor: number,
  roundingMinor: number,
): void {
  t.sales++;
  t.grossMinor += totals.subtotalMinor;
  t.discountMinor += totals.discountMinor;
  t.taxMinor += totals.taxMinor;
  t.totalMinor += totals.totalMinor + roundingMinor;
  for (const tender of sale.tenders) t.byTender[tender.kind] += tender.amountMinor;
  t.changeMinor += changeMinor;
  t.roundingMinor += roundingMinor;
  for (const tax of totals.taxes) {
    const row = (t.taxes[tax.taxClass] ??= { name: tax.name, rateBp: tax.rateBp, baseMinor: 0, taxMinor: 0 });
    row.baseMinor += tax.baseMinor;
    row.taxMinor += tax.taxMinor;
  }
  const c = (t.byCashier[sale.cashierId] ??= { sales: 0, totalMinor: 0 });
  c.sales++;
  c.totalMinor += totals.totalMinor + roundingMinor;
  t.voids.lines += sale.voidedLines;
  t.voids.amountMinor += sale.voidedMinor;
  if (sale.basketDiscount || sale.lines.some((l) => l.discount)) t.discounts++;
}
