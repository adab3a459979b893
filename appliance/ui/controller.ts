// The till's screens as a state machine over keypad actions. It holds only what is being typed and
// which screen is up; everything the register knows (the sale, the shift, the devices, the link) comes
// from registerd's state pushes and is drawn from the last one. Every change goes through the control
// socket, and an answer or a refusal comes back as a message for the cashier.
//
// No blessed here: `view()` returns plain text the screen module draws, so the logic is tested directly
// and the tmux tests check that the drawing shows it.
import { currencyExponent, formatAmount } from '../till/money.js';
import type { SaleLine as TillSaleLine } from '../till/state.js';
import type { Action } from './keymap.js';
import type { Answer, ControlFailure } from './link.js';

// ---- what the register tells us (the parts of status and till.info the till draws) ----

/** A sale line as the sale view gives it (appliance/till/state.ts). */
export type SaleLine = Pick<TillSaleLine, 'lineId' | 'sku' | 'name' | 'qty' | 'unitMinor' | 'discount'>;

export interface SaleView {
  saleId: string;
  lines: SaleLine[];
  totals: {
    lines: { lineId: string; netOfDiscountMinor: number }[];
    subtotalMinor: number;
    discountMinor: number;
    taxMinor: number;
    totalMinor: number;
  };
  tenders: { kind: string; amountMinor: number }[];
  dueMinor: number;
}

export interface RegisterStatus {
  clockTrusted: boolean;
  session: { cashierId: string; name: string; role: 'cashier' | 'manager' } | null;
  shift: { shiftId: string; openedAt: number; expectedCashMinor: number } | null;
  sale: SaleView | null;
  pendingCard: { amountMinor: number } | null;
  sync: { state: string; pending: number; oldestPendingTs: number | null } | null;
  offlineCard?: { count: number; totalMinor: number };
  devices: Record<string, { state: string; detail?: string; printer?: string; queued?: number }>;
  terminalMessage: { message: string } | null;
  lastScan: {
    code: string;
    atMs: number;
    ok: boolean;
    name?: string;
    error?: { code: string; message: string };
  } | null;
}

export interface TillInfo {
  storeName: string | null;
  currency: string | null;
  cashiers: { cashierId: string; name: string; role: 'cashier' | 'manager' }[];
  limits: { maxDiscrepancyMinor: number };
}

export interface TillPorts {
  call(method: string, params?: unknown): Promise<Answer>;
  nowMs(): number;
}

// ---- what the screen draws ----

export interface View {
  /** Always visible: link, queue, devices, cashier, clock. */
  statusLine: string;
  title: string;
  body: string[];
  /** The big figure and what it is (TOTAL, DUE, CHANGE), or null. */
  big: { label: string; amount: string } | null;
  message: { text: string; level: 'info' | 'error' } | null;
  prompt: string;
  input: string;
  keys: string;
}

/** Cash denominations by currency, largest first, minor units: what a drawer count asks for. */
const DENOMINATIONS: Record<string, number[]> = {
  EUR: [50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1],
  USD: [10000, 5000, 2000, 1000, 500, 100, 25, 10, 5, 1],
  GBP: [5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1],
};
const FALLBACK_DENOMINATIONS = [10000, 5000, 2000, 1000, 500, 100, 50, 10, 1];
/** Quick cash amounts in major units (the quick1–4 keys). */
const QUICK_MAJOR = [5, 10, 20, 50];
/** Reasons offered for a payout and a paid-in: a keypad has no letters. */
export const PAYOUT_REASONS = ['Supplier delivery', 'Cleaning', 'Staff expenses', 'Other'];
export const PAID_IN_REASONS = ['Change from the safe', 'Float top-up', 'Other'];
const MAX_INPUT = 14;
const MAX_PIN = 8;
/** Keys waiting behind a request in flight, at most. */
const MAX_QUEUED_KEYS = 64;

/** A command waiting for a manager, and what to do once it went through. */
type Retry = {
  method: string;
  params: Record<string, unknown>;
  label: string;
  onDone: (result: unknown) => void;
};

type Mode =
  | { kind: 'login'; step: 'cashier' }
  | { kind: 'login'; step: 'pin'; cashierId: string; name: string }
  | { kind: 'sale' }
  | { kind: 'menu' }
  | { kind: 'count'; purpose: 'float' | 'close'; denoms: number[]; index: number; counts: number[] }
  | { kind: 'cashMove'; purpose: 'payout' | 'paidIn'; step: 'amount' }
  | { kind: 'cashMove'; purpose: 'payout' | 'paidIn'; step: 'reason'; amountMinor: number }
  | { kind: 'refund' }
  | { kind: 'discount' }
  /** An open-price item (PRICE_REQUIRED): its price on the keypad, then `sale.add` with it. */
  | { kind: 'price'; code: string; sku: string; why: string }
  | { kind: 'report'; title: string; lines: string[] }
  | { kind: 'approval'; step: 'manager'; retry: Retry; back: Mode }
  | { kind: 'approval'; step: 'pin'; managerId: string; name: string; retry: Retry; back: Mode };

export class TillController {
  private status: RegisterStatus | null = null;
  private info: TillInfo | null = null;
  private linkUp = false;
  private mode: Mode = { kind: 'login', step: 'cashier' };
  private input = '';
  private message: View['message'] = null;
  /** The last completed sale's change, shown large until the next sale starts. */
  private completed: { changeMinor: number; totalMinor: number; receiptNo: number } | null = null;
  private showHelp = false;
  /** When the last scan seen was read (-1: none yet; null: no status pushed yet). */
  private lastScanAt: number | null = null;

  constructor(
    private readonly ports: TillPorts,
    private readonly onChange: () => void = () => undefined,
    /** A line under the cashier list (the demo's PINs). */
    private readonly loginHint?: string,
  ) {}

  // ---- inputs ----

  setLink(up: boolean): void {
    this.linkUp = up;
    if (up) void this.loadInfo();
    else this.say('The register is not answering: reconnecting…', 'error');
    this.onChange();
  }

  setStatus(status: RegisterStatus): void {
    this.status = status;
    // Whoever is logged in decides the screen: a login or logout from elsewhere (or a restart) shows.
    if (!status.session && this.mode.kind !== 'login') this.toLogin();
    if (status.session && this.mode.kind === 'login') this.toSale();
    if (status.sale) this.completed = null;
    // The first push only sets the mark: a scan from before the till started is not news. Every
    // later change is, whatever is on screen (after a login "Welcome, …" always is).
    const scanAt = status.lastScan?.atMs ?? -1;
    if (this.lastScanAt !== null && scanAt !== this.lastScanAt && status.lastScan) {
      const scan = status.lastScan;
      if (scan.ok) this.say(`Scanned ${scan.code}: ${scan.name ?? ''}`.trim(), 'info');
      else if (scan.error?.code === 'PRICE_REQUIRED' && this.mode.kind === 'sale')
        this.askPrice(scan.code, scan.error);
      else this.say(`Scan ${scan.code}: ${scan.error?.message ?? 'refused'}`, 'error');
    }
    this.lastScanAt = scanAt;
    this.onChange();
  }

  /**
   * One keypad action. Keys are handled one after another, each after the request the one before it
   * started is answered: a cashier typing on while a scan is in flight loses nothing, and the next key
   * sees the screen that answer made. Resolves when this key is handled.
   */
  press(action: Action): Promise<void> {
    if (action === 'none' || action === 'quit') return Promise.resolve();
    // Bounded: a key held down against a register that does not answer is not a backlog to replay.
    if (this.queuedKeys >= MAX_QUEUED_KEYS) return Promise.resolve();
    this.queuedKeys++;
    const run = this.keys.then(() => this.handle(action)).finally(() => this.queuedKeys--);
    this.keys = run.catch(() => undefined);
    return run;
  }

  private keys: Promise<void> = Promise.resolve();
  private queuedKeys = 0;

  private async handle(action: Action): Promise<void> {
    if (action === 'help') {
      this.showHelp = !this.showHelp;
      this.onChange();
      return;
    }
    const digit = digitOf(action);
    if (digit !== null) return this.type(digit);
    if (action === 'backspace') {
      this.input = this.input.slice(0, -1);
      this.onChange();
      return;
    }
    switch (this.mode.kind) {
      case 'login':
        return this.loginKey(action);
      case 'sale':
        return this.saleKey(action);
      case 'menu':
        return this.menuKey(action);
      case 'count':
        return this.countKey(action);
      case 'cashMove':
        return this.cashMoveKey(action);
      case 'refund':
        return this.refundKey(action);
      case 'discount':
        return this.discountKey(action);
      case 'price':
        return this.priceKey(action);
      case 'report':
        if (action === 'enter' || action === 'clear') this.toSale();
        this.onChange();
        return;
      case 'approval':
        return this.approvalKey(action);
    }
  }

  private type(text: string): void | Promise<void> {
    const max = this.mode.kind === 'login' || this.mode.kind === 'approval' ? MAX_PIN : MAX_INPUT;
    if (text === '.' && (this.input.includes('.') || this.isPinEntry())) return;
    if (this.mode.kind === 'login' && this.mode.step === 'cashier') return this.pickCashier(text);
    if (this.mode.kind === 'approval' && this.mode.step === 'manager') return this.pickManager(text);
    if (this.mode.kind === 'menu') return this.menuPick(text);
    if (this.mode.kind === 'cashMove' && this.mode.step === 'reason') return this.pickReason(text);
    this.input = (this.input + text).slice(0, max);
    this.onChange();
  }

  private isPinEntry(): boolean {
    return (this.mode.kind === 'login' || this.mode.kind === 'approval') && this.mode.step === 'pin';
  }

  // ---- login ----

  private pickCashier(digit: string): void {
    const c = this.cashiers()[Number(digit) - 1];
    if (!c) {
      this.say(`No cashier ${digit}`, 'error');
      return this.onChange();
    }
    this.mode = { kind: 'login', step: 'pin', cashierId: c.cashierId, name: c.name };
    this.input = '';
    this.message = null;
    this.onChange();
  }

  private async loginKey(action: Action): Promise<void> {
    if (this.mode.kind !== 'login' || this.mode.step !== 'pin') return;
    if (action === 'clear') return this.toLogin();
    if (action !== 'enter' || !this.input) return;
    const pin = this.input;
    const { cashierId, name } = this.mode;
    this.input = '';
    const a = await this.run('cashier.login', { cashierId, pin });
    if (a.ok) {
      this.say(`Welcome, ${name}`, 'info');
      this.toSale();
    } else {
      this.fail(a);
      if (a.error.code === 'LOCKED_OUT') this.toLogin(false);
    }
    this.onChange();
  }

  // ---- the sale ----

  private async saleKey(action: Action): Promise<void> {
    const sale = this.status?.sale ?? null;
    switch (action) {
      case 'clear':
        this.input = '';
        this.message = null;
        return this.onChange();
      case 'enter': {
        if (!this.input) return;
        const code = this.input.replace('.', '');
        this.input = '';
        const a = await this.run('sale.scan', { code });
        if (a.ok) this.say(`${code}: ${lineName(a.result)}`, 'info');
        else if (a.error.code === 'PRICE_REQUIRED') this.askPrice(code, a.error);
        else this.fail(a);
        return this.onChange();
      }
      case 'qty': {
        const last = sale?.lines.at(-1);
        const qty = Number(this.input);
        if (!last) return this.sayNow('Qty: scan an item first', 'error');
        if (!Number.isInteger(qty) || qty < 1)
          return this.sayNow('Qty: type the quantity, then Qty', 'error');
        this.input = '';
        const a = await this.run('sale.setQty', { lineId: last.lineId, qty });
        if (!a.ok) this.fail(a);
        return this.onChange();
      }
      case 'void': {
        if (!sale || !sale.lines.length) return this.sayNow('Void: nothing to void', 'error');
        // A line number typed first voids that line; otherwise the last one.
        const n = this.input ? Number(this.input) : sale.lines.length;
        const line = sale.lines[n - 1];
        this.input = '';
        if (!line) return this.sayNow(`Void: no line ${n}`, 'error');
        return this.attempt('sale.voidLine', { lineId: line.lineId }, `Void ${line.name}`);
      }
      case 'subtotal':
        if (!sale) return this.sayNow('Subtotal: no sale open', 'error');
        return this.sayNow(`Due ${this.money(sale.dueMinor)}: Cash or Card`, 'info');
      case 'cash': {
        if (!sale) return this.sayNow('Cash: no sale open', 'error');
        const amount = this.input ? this.amountOf(this.input) : undefined;
        if (amount === null) return this.sayNow('Cash: not an amount', 'error');
        this.input = '';
        return this.tender({ kind: 'cash', ...(amount !== undefined ? { amountMinor: amount } : {}) });
      }
      case 'quick1':
      case 'quick2':
      case 'quick3':
      case 'quick4': {
        if (!sale) return this.sayNow('Quick cash: no sale open', 'error');
        const major = QUICK_MAJOR[Number(action.slice(-1)) - 1]!;
        this.input = '';
        return this.tender({ kind: 'cash', amountMinor: major * 10 ** this.exponent() });
      }
      case 'card': {
        if (!sale) return this.sayNow('Card: no sale open', 'error');
        const amount = this.input ? this.amountOf(this.input) : undefined;
        if (amount === null) return this.sayNow('Card: not an amount', 'error');
        this.input = '';
        this.say('Card: follow the terminal…', 'info');
        this.onChange();
        return this.tender({ kind: 'card', ...(amount !== undefined ? { amountMinor: amount } : {}) });
      }
      case 'shift':
        this.mode = { kind: 'menu' };
        this.input = '';
        this.message = null;
        return this.onChange();
      case 'refund':
        if (sale) return this.sayNow('Refund: finish or cancel the sale first', 'error');
        this.mode = { kind: 'refund' };
        this.input = '';
        return this.onChange();
      case 'discount':
        if (!sale) return this.sayNow('Discount: no sale open', 'error');
        this.mode = { kind: 'discount' };
        this.input = '';
        return this.onChange();
      case 'reprint': {
        const no = this.input ? Number(this.input) : undefined;
        this.input = '';
        const a = await this.run('receipt.reprint', no ? { receiptNo: no } : {});
        if (a.ok) this.say('Receipt reprinted', 'info');
        else this.fail(a);
        return this.onChange();
      }
      case 'cancelSale':
        if (!sale) return this.sayNow('Cancel: no sale open', 'error');
        return this.attempt('sale.cancel', {}, 'Cancel the sale');
      case 'noSale':
        return this.attempt('drawer.open', {}, 'No sale: open the drawer');
      case 'logout': {
        const a = await this.run('cashier.logout', {});
        if (!a.ok) this.fail(a);
        return this.onChange();
      }
    }
  }

  private async tender(params: { kind: 'cash' | 'card'; amountMinor?: number }): Promise<void> {
    const a = await this.run('sale.tender', params);
    if (a.ok) {
      const r = a.result as {
        completed: boolean;
        changeMinor?: number;
        totalMinor?: number;
        receiptNo?: number;
      };
      if (r.completed) {
        this.completed = {
          changeMinor: r.changeMinor ?? 0,
          totalMinor: r.totalMinor ?? 0,
          receiptNo: r.receiptNo ?? 0,
        };
        this.say(`Receipt ${r.receiptNo}: thank you`, 'info');
      } else this.say(`Paid part: ${this.money(this.status?.sale?.dueMinor ?? 0)} still due`, 'info');
    } else this.fail(a);
    this.onChange();
  }

  // ---- shift menu, counts, cash moves, reports ----

  private menuPick(digit: string): Promise<void> {
    return this.menuChoice(Number(digit));
  }

  private async menuChoice(n: number): Promise<void> {
    const denoms = DENOMINATIONS[this.info?.currency ?? ''] ?? FALLBACK_DENOMINATIONS;
    const count = (purpose: 'float' | 'close'): Mode => ({
      kind: 'count',
      purpose,
      denoms,
      index: 0,
      counts: denoms.map(() => 0),
    });
    this.input = '';
    switch (n) {
      case 1:
        if (this.status?.shift) return this.sayNow('A shift is open already', 'error');
        this.mode = count('float');
        break;
      case 2: {
        const a = await this.run('shift.report', {});
        if (a.ok) this.mode = { kind: 'report', title: 'X report', lines: this.reportLines(a.result) };
        else this.fail(a);
        break;
      }
      case 3:
        this.mode = { kind: 'cashMove', purpose: 'payout', step: 'amount' };
        break;
      case 4:
        this.mode = { kind: 'cashMove', purpose: 'paidIn', step: 'amount' };
        break;
      case 5:
        this.toSale();
        return this.attempt('drawer.open', {}, 'No sale: open the drawer');
      case 6:
        if (!this.status?.shift) return this.sayNow('No shift is open', 'error');
        this.mode = count('close');
        break;
      case 7: {
        const a = await this.run('cashier.logout', {});
        if (!a.ok) this.fail(a);
        break;
      }
      default:
        this.say(`No menu item ${n}`, 'error');
    }
    this.onChange();
  }

  private async menuKey(action: Action): Promise<void> {
    if (action === 'clear' || action === 'shift') this.toSale();
    this.onChange();
  }

  private async countKey(action: Action): Promise<void> {
    if (this.mode.kind !== 'count') return;
    const m = this.mode;
    if (action === 'clear') {
      if (this.input) this.input = '';
      else this.toSale();
      return this.onChange();
    }
    if (action === 'enter') {
      if (this.input) m.counts[m.index] = Math.min(100_000, Number(this.input) || 0);
      this.input = '';
      m.index = (m.index + 1) % m.denoms.length;
      return this.onChange();
    }
    if (action === 'subtotal') {
      if (this.input) m.counts[m.index] = Math.min(100_000, Number(this.input) || 0);
      this.input = '';
      const counts: Record<string, number> = {};
      m.denoms.forEach((d, i) => {
        if (m.counts[i]! > 0) counts[String(d)] = m.counts[i]!;
      });
      if (m.purpose === 'float') {
        const a = await this.run('shift.open', { floatCounts: counts });
        if (a.ok) {
          this.say(
            `Shift open, float ${this.money((a.result as { floatMinor: number }).floatMinor)}`,
            'info',
          );
          this.toSale();
        } else this.fail(a);
        return this.onChange();
      }
      return this.attempt('shift.close', { counts }, 'Close the shift', (result) => {
        this.mode = { kind: 'report', title: 'Z report', lines: this.reportLines(result) };
      });
    }
    this.onChange();
  }

  private async cashMoveKey(action: Action): Promise<void> {
    if (this.mode.kind !== 'cashMove') return;
    const m = this.mode;
    if (action === 'clear') {
      this.toSale();
      return this.onChange();
    }
    if (m.step === 'amount' && action === 'enter') {
      const amount = this.amountOf(this.input);
      if (!amount) return this.sayNow('Type the amount, then Enter', 'error');
      this.input = '';
      this.mode = { kind: 'cashMove', purpose: m.purpose, step: 'reason', amountMinor: amount };
      return this.onChange();
    }
  }

  private pickReason(digit: string): void | Promise<void> {
    if (this.mode.kind !== 'cashMove' || this.mode.step !== 'reason') return;
    const m = this.mode;
    const reasons = m.purpose === 'payout' ? PAYOUT_REASONS : PAID_IN_REASONS;
    const reason = reasons[Number(digit) - 1];
    if (!reason) return this.sayNow(`No reason ${digit}`, 'error');
    const method = m.purpose === 'payout' ? 'cash.payout' : 'cash.paidIn';
    const label = `${m.purpose === 'payout' ? 'Payout' : 'Paid in'} ${this.money(m.amountMinor)}`;
    return this.attempt(method, { amountMinor: m.amountMinor, reason }, label, () => {
      this.say(`${label}: ${reason}`, 'info');
      this.toSale();
    });
  }

  private async refundKey(action: Action): Promise<void> {
    if (action === 'clear') {
      this.toSale();
      return this.onChange();
    }
    if (action !== 'enter' && action !== 'cash' && action !== 'card') return;
    const receiptNo = Number(this.input);
    if (!Number.isInteger(receiptNo) || receiptNo < 1) return this.sayNow('Type the receipt number', 'error');
    this.input = '';
    const tender = action === 'card' ? 'card' : 'cash';
    return this.attempt('sale.refund', { receiptNo, tender }, `Refund receipt ${receiptNo}`, (result) => {
      const r = result as { amountMinor: number; receiptNo: number };
      this.say(`Refunded ${this.money(r.amountMinor)} (${tender}), receipt ${r.receiptNo}`, 'info');
      this.toSale();
    });
  }

  private async discountKey(action: Action): Promise<void> {
    if (action === 'clear') {
      this.toSale();
      return this.onChange();
    }
    if (action !== 'enter' && action !== 'qty') return;
    const pct = Number(this.input);
    if (!this.input || !Number.isFinite(pct) || pct < 0 || pct > 100)
      return this.sayNow('Type a percentage (0–100)', 'error');
    this.input = '';
    const last = this.status?.sale?.lines.at(-1);
    const params: Record<string, unknown> = { kind: 'percent', value: Math.round(pct * 100) };
    if (action === 'qty' && last) params.lineId = last.lineId;
    const label = `${pct}% off ${params.lineId ? last!.name : 'the sale'}`;
    return this.attempt('sale.discount', params, label, () => {
      this.say(label, 'info');
      this.toSale();
    });
  }

  // ---- an open-price item ----

  /**
   * A code the register will only ring up with a price keyed in. `sale.add` takes an SKU: the one the
   * refusal names (`details.sku`), else the code itself (an SKU typed in is also a code).
   */
  private askPrice(code: string, error: { message: string; details?: Record<string, unknown> }): void {
    const sku = typeof error.details?.sku === 'string' ? error.details.sku : code;
    this.mode = { kind: 'price', code, sku, why: error.message };
    this.input = '';
    this.say(`${error.message}: type the price, then Enter`, 'info');
  }

  private async priceKey(action: Action): Promise<void> {
    if (this.mode.kind !== 'price') return;
    const m = this.mode;
    if (action === 'clear') {
      this.toSale();
      return this.sayNow(`${m.code}: not added (no price)`, 'info');
    }
    if (action !== 'enter') return;
    const priceMinor = this.input ? this.amountOf(this.input) : null;
    if (priceMinor === null) return this.sayNow('Type the price, then Enter', 'error');
    this.input = '';
    const label = `${m.code} at ${this.money(priceMinor)}`;
    return this.attempt(
      'sale.add',
      { sku: m.sku, priceMinor },
      label,
      (result) => {
        this.say(`${m.code}: ${lineName(result)} at ${this.money(priceMinor)}`, 'info');
        this.toSale();
      },
      (error) => {
        // A barcode is no SKU, and this register's refusal did not name the item's SKU.
        if (error.code !== 'UNKNOWN_SKU' || m.sku !== m.code) return false;
        this.toSale();
        this.say(`${m.code}: this register cannot take a price for it (it names no SKU): not added`, 'error');
        return true;
      },
    );
  }

  // ---- manager approval ----

  /**
   * Run a command; when it needs a manager, ask for one (unless one is logged in already, which the
   * register accepts as approval) and run it again with the approval.
   */
  private async attempt(
    method: string,
    params: Record<string, unknown>,
    label: string,
    onDone: (result: unknown) => void = () => undefined,
    /** A refusal said in the screen's own words; false: the register's words. */
    explain: (error: ControlFailure) => boolean = () => false,
  ): Promise<void> {
    const a = await this.run(method, params);
    if (a.ok) {
      onDone(a.result);
      if (this.mode.kind === 'sale' && !this.message) this.say(`${label}: done`, 'info');
    } else if (a.error.code === 'MANAGER_REQUIRED') {
      this.mode = {
        kind: 'approval',
        step: 'manager',
        retry: { method, params, label, onDone },
        back: this.mode,
      };
      this.say(`${label}: needs a manager`, 'info');
    } else if (!explain(a.error)) this.fail(a);
    this.onChange();
  }

  private pickManager(digit: string): void {
    if (this.mode.kind !== 'approval') return;
    const m = this.managers()[Number(digit) - 1];
    if (!m) return this.sayNow(`No manager ${digit}`, 'error');
    this.mode = { ...this.mode, step: 'pin', managerId: m.cashierId, name: m.name };
    this.input = '';
    this.onChange();
  }

  private async approvalKey(action: Action): Promise<void> {
    if (this.mode.kind !== 'approval') return;
    const m = this.mode;
    if (action === 'clear') {
      this.input = '';
      this.mode = m.back.kind === 'approval' ? { kind: 'sale' } : m.back;
      this.say(`${m.retry.label}: not approved`, 'info');
      return this.onChange();
    }
    if (m.step !== 'pin' || action !== 'enter' || !this.input) return;
    const pin = this.input;
    this.input = '';
    const a = await this.run(m.retry.method, {
      ...m.retry.params,
      approval: { managerId: m.managerId, pin },
    });
    if (a.ok) {
      this.mode = m.back;
      this.say(`${m.retry.label}: approved by ${m.name}`, 'info');
      m.retry.onDone(a.result);
    } else {
      this.fail(a);
      if (a.error.code !== 'APPROVAL_REFUSED') this.mode = m.back;
    }
    this.onChange();
  }

  // ---- helpers ----

  private run(method: string, params: unknown): Promise<Answer> {
    return this.ports.call(method, params);
  }

  private async loadInfo(): Promise<void> {
    const a = await this.ports.call('till.info', {});
    if (a.ok) this.info = a.result as TillInfo;
    this.onChange();
  }

  private toLogin(clearMessage = true): void {
    this.mode = { kind: 'login', step: 'cashier' };
    this.input = '';
    if (clearMessage) this.message = null;
    this.onChange();
  }

  private toSale(): void {
    this.mode = { kind: 'sale' };
    this.input = '';
  }

  private say(text: string, level: 'info' | 'error'): void {
    this.message = { text, level };
  }

  private sayNow(text: string, level: 'info' | 'error'): void {
    this.say(text, level);
    this.onChange();
  }

  private fail(a: Answer): void {
    if (!a.ok) this.say(a.error.message || a.error.code, 'error');
  }

  private cashiers() {
    return this.info?.cashiers ?? [];
  }

  private managers() {
    return this.cashiers().filter((c) => c.role === 'manager');
  }

  private exponent(): number {
    return this.info?.currency ? currencyExponent(this.info.currency) : 2;
  }

  /** Typed digits as an amount: implied decimals ("1250" is 12.50), or major units with a point. */
  amountOf(text: string): number | null {
    if (!/^\d*\.?\d*$/.test(text) || !/\d/.test(text)) return null;
    const e = this.exponent();
    if (!text.includes('.')) return Number(text);
    const [major, fraction = ''] = text.split('.');
    if (fraction.length > e) return null;
    return Number(major || '0') * 10 ** e + Number(fraction.padEnd(e, '0') || '0');
  }

  money(minor: number): string {
    return formatAmount(minor, this.exponent());
  }

  private reportLines(result: unknown): string[] {
    const r = result as {
      zNo?: number;
      floatMinor: number;
      expectedCashMinor: number;
      countedCashMinor?: number;
      discrepancyMinor?: number;
      totals: {
        sales: number;
        totalMinor: number;
        taxMinor: number;
        byTender: { cash: number; card: number };
        changeMinor: number;
        refunds: { count: number; amountMinor: number };
        payouts: { count: number; amountMinor: number };
        paidIns: { count: number; amountMinor: number };
        noSales: number;
      };
    };
    const t = r.totals;
    const row = (label: string, value: string) => `${label.padEnd(28)}${value.padStart(14)}`;
    const lines = [
      ...(r.zNo !== undefined ? [row('Z number', String(r.zNo))] : []),
      row('Sales', String(t.sales)),
      row('Total', this.money(t.totalMinor)),
      row('  of which tax', this.money(t.taxMinor)),
      row('Cash tendered', this.money(t.byTender.cash)),
      row('Card', this.money(t.byTender.card)),
      row('Change given', this.money(t.changeMinor)),
      row(`Refunds (${t.refunds.count})`, this.money(t.refunds.amountMinor)),
      row(`Payouts (${t.payouts.count})`, this.money(t.payouts.amountMinor)),
      row(`Paid in (${t.paidIns.count})`, this.money(t.paidIns.amountMinor)),
      row('No-sales', String(t.noSales)),
      row('Float', this.money(r.floatMinor)),
      row('Expected cash', this.money(r.expectedCashMinor)),
    ];
    if (r.countedCashMinor !== undefined) {
      lines.push(row('Counted cash', this.money(r.countedCashMinor)));
      const d = r.discrepancyMinor ?? 0;
      lines.push(
        row(d === 0 ? 'Discrepancy' : d > 0 ? 'Discrepancy (over)' : 'Discrepancy (short)', this.money(d)),
      );
    }
    return lines;
  }

  // ---- the view ----

  /** The screen as text for a terminal `width` columns wide (80: the Linux console). */
  view(width = 80): View {
    const s = this.status;
    const v: View = {
      statusLine: this.statusLine(width),
      title: '',
      body: [],
      big: null,
      message: this.message,
      prompt: '',
      input: this.input,
      keys: '',
    };
    if (!this.linkUp) {
      v.title = 'Register not answering';
      v.body = ['', '  Waiting for the register (registerd) to come back…'];
      return v;
    }
    const m = this.mode;
    switch (m.kind) {
      case 'login':
        v.title = `${this.info?.storeName ?? 'Register'} — log in`;
        if (m.step === 'cashier') {
          v.body = ['', '  Who are you? Press your number:', ''];
          this.cashiers().forEach((c, i) => v.body.push(`   ${i + 1}  ${c.name}`));
          if (!this.cashiers().length)
            v.body.push('   (no cashier list yet: the register has not been synced)');
          if (this.loginHint) v.body.push('', `  ${this.loginHint}`);
          v.keys = 'number: choose';
        } else {
          v.body = ['', `  ${m.name}, type your PIN and press Enter.`];
          v.prompt = 'PIN';
          v.input = '*'.repeat(this.input.length);
          v.keys = 'Enter: log in   Esc: back';
        }
        break;
      case 'sale':
        this.saleView(v);
        break;
      case 'menu':
        v.title = 'Shift';
        v.body = [
          '',
          `  ${s?.shift ? 'Shift open' : 'No shift open'}`,
          '',
          '   1  Open shift (count the float)',
          '   2  X report',
          '   3  Payout',
          '   4  Paid in',
          '   5  No sale (open the drawer)',
          '   6  Close shift (count the drawer, Z report)',
          '   7  Log out',
        ];
        v.keys = 'number: choose   Esc: back';
        break;
      case 'count': {
        v.title = m.purpose === 'float' ? 'Open shift: count the float' : 'Close shift: count the drawer';
        let total = 0;
        m.denoms.forEach((d, i) => (total += d * m.counts[i]!));
        const rows = m.denoms.map((d, i) => {
          const mark = i === m.index ? '>' : ' ';
          const n = i === m.index && this.input ? this.input : String(m.counts[i]);
          return `${mark} ${this.money(d).padStart(8)} x ${n.padStart(4)} = ${this.money(d * (i === m.index && this.input ? Number(this.input) : m.counts[i]!)).padStart(9)}`;
        });
        const half = Math.ceil(rows.length / 2);
        v.body = [''];
        for (let i = 0; i < half; i++) v.body.push(`  ${rows[i]!.padEnd(36)}${rows[i + half] ?? ''}`);
        v.body.push('', `  Counted ${this.money(total)}`);
        if (m.purpose === 'close' && s?.shift) {
          const diff = total - s.shift.expectedCashMinor;
          v.body.push(
            `  Expected ${this.money(s.shift.expectedCashMinor)}   Discrepancy ${this.money(diff)}`,
          );
        }
        v.prompt = 'Count';
        v.keys = 'Enter: next   Subtotal: done   Esc: back';
        break;
      }
      case 'cashMove': {
        v.title =
          m.purpose === 'payout' ? 'Payout (cash out of the drawer)' : 'Paid in (cash into the drawer)';
        if (m.step === 'amount') {
          v.prompt = 'Amount';
          v.keys = 'Enter: next   Esc: back';
        } else {
          const reasons = m.purpose === 'payout' ? PAYOUT_REASONS : PAID_IN_REASONS;
          v.body = ['', `  ${this.money(m.amountMinor)} — why? Press a number:`, ''];
          reasons.forEach((r, i) => v.body.push(`   ${i + 1}  ${r}`));
          v.keys = 'number: choose   Esc: back';
        }
        break;
      }
      case 'refund':
        v.title = 'Refund';
        v.body = ['', '  Type the receipt number; Cash (or Enter) refunds in cash, Card to the card.'];
        v.prompt = 'Receipt';
        v.keys = 'Cash/Enter: cash   Card: card   Esc: back';
        break;
      case 'discount':
        v.title = 'Discount';
        v.body = ['', '  Type a percentage; Enter: the whole sale, Qty: the last line.'];
        v.prompt = 'Percent';
        v.keys = 'Enter: sale   Qty: last line   Esc: back';
        break;
      case 'price':
        v.title = `Price for ${m.code}`;
        v.body = ['', `  ${m.why}.`, '  Type the price (1250 is 12.50, or 12.5) and press Enter.'];
        v.prompt = 'Price';
        v.keys = 'Enter: add   Esc: cancel';
        break;
      case 'report':
        v.title = m.title;
        v.body = ['', ...m.lines.map((l) => `  ${l}`)];
        v.keys = 'Enter: back';
        break;
      case 'approval':
        v.title = `Manager approval: ${m.retry.label}`;
        if (m.step === 'manager') {
          v.body = ['', '  Manager, press your number:', ''];
          this.managers().forEach((c, i) => v.body.push(`   ${i + 1}  ${c.name}`));
          v.keys = 'number: choose   Esc: cancel';
        } else {
          v.body = ['', `  ${m.name}, type your PIN and press Enter.`];
          v.prompt = 'PIN';
          v.input = '*'.repeat(this.input.length);
          v.keys = 'Enter: approve   Esc: cancel';
        }
        break;
    }
    if (this.showHelp) {
      v.body = [
        '',
        '  digits . 00  type      Enter  scan/add code   Esc  clear     Bksp  delete digit',
        '  * / x  Qty             Del/v  Void line       +/s  Subtotal',
        '  -/c    Cash            / k    Card            F9–F12  cash 5/10/20/50',
        '  F2 Shift menu   F3 Refund   F4 Reprint   F5 Discount   F6 Cancel sale',
        '  F7 No sale      F8 Log out  F1 this help',
      ];
    }
    return v;
  }

  private saleView(v: View): void {
    const s = this.status;
    const sale = s?.sale;
    v.title = `${this.info?.storeName ?? 'Register'} — ${s?.session?.name ?? ''}${s?.shift ? '' : ' (no shift: F2, 1)'}`;
    v.prompt = 'Code/amount';
    v.keys = 'F1 help  Enter add  * Qty  Del Void  + Subtotal  - Cash  / Card  F2 Shift';
    if (!sale) {
      v.body = [
        '',
        this.completed ? `  Receipt ${this.completed.receiptNo} done.` : '  Ready: scan or type a code.',
      ];
      if (this.completed) {
        v.big = { label: 'CHANGE', amount: this.money(this.completed.changeMinor) };
        v.body.push(`  Total ${this.money(this.completed.totalMinor)}`);
      }
      return;
    }
    const net = new Map(sale.totals.lines.map((l) => [l.lineId, l.netOfDiscountMinor]));
    v.body = sale.lines.map((l, i) => {
      const qty = l.qty > 1 ? `${l.qty} x ${this.money(l.unitMinor)}` : '';
      const disc = l.discount ? ' -%' : '';
      return `${String(i + 1).padStart(2)} ${l.name.slice(0, 34).padEnd(34)} ${qty.padStart(16)}${disc.padEnd(3)} ${this.money(net.get(l.lineId) ?? l.qty * l.unitMinor).padStart(9)}`;
    });
    // Only the last lines fit: the newest scan must be on screen.
    const room = 12;
    if (v.body.length > room)
      v.body = [`   … ${v.body.length - room + 1} more lines above`, ...v.body.slice(-room + 1)];
    const paid = sale.tenders.reduce((sum, t) => sum + t.amountMinor, 0);
    const extra: string[] = [];
    if (sale.totals.discountMinor) extra.push(`Discount -${this.money(sale.totals.discountMinor)}`);
    extra.push(`Tax ${this.money(sale.totals.taxMinor)}`);
    if (paid) extra.push(`Paid ${this.money(paid)}`);
    v.body.push('', `   ${extra.join('   ')}`);
    v.big = paid
      ? { label: 'DUE', amount: this.money(sale.dueMinor) }
      : { label: 'TOTAL', amount: this.money(sale.totals.totalMinor) };
    if (s?.terminalMessage) this.message = { text: `Terminal: ${s.terminalMessage.message}`, level: 'info' };
  }

  /**
   * The status line in at most `width` columns. Every field is there when it fits; past the width the
   * least important go first (STATUS_STEPS): the time of day, then the devices and the offline card
   * count. The link with its queue, the cashier and the clock's trust always stay (a long name is
   * shortened, never dropped).
   */
  private statusLine(width: number): string {
    if (!this.linkUp) return ' REGISTER DOWN ';
    const s = this.status;
    if (!s) return ' connecting… ';
    const fields: StatusField[] = [];
    const sync = s.sync;
    if (sync) {
      const age =
        sync.oldestPendingTs !== null ? ` ${ageText(this.ports.nowMs() - sync.oldestPendingTs)}` : '';
      fields.push({
        kind: 'link',
        text: `${sync.state === 'connected' ? 'ONLINE' : 'OFFLINE'} q${sync.pending}${age}`,
      });
    } else fields.push({ kind: 'link', text: 'LOCAL' });
    for (const [name, label] of [
      ['printer', 'PRN'],
      ['terminal', 'TRM'],
      ['scanner', 'SCN'],
    ] as const) {
      const d = s.devices[name];
      if (!d || d.state === 'none') continue;
      const detail = name === 'printer' && d.printer && d.printer !== 'ok' ? d.printer : d.state;
      fields.push({ kind: name, text: `${label} ${detail}${d.queued ? ` (${d.queued})` : ''}` });
    }
    if (s.offlineCard?.count)
      fields.push({ kind: 'offlineCard', text: `card offline ${s.offlineCard.count}` });
    fields.push({ kind: 'cashier', text: s.session ? s.session.name : 'nobody' });
    fields.push({ kind: 'clock', text: s.clockTrusted ? 'clock ok' : 'clock ?' });
    fields.push({ kind: 'time', text: clockText(this.ports.nowMs()) });
    return fitStatusLine(fields, width);
  }
}

type StatusField = {
  kind: 'link' | 'printer' | 'terminal' | 'scanner' | 'offlineCard' | 'cashier' | 'clock' | 'time';
  text: string;
};

/**
 * How a status line past its width is shortened, step by step until it fits: the time of day goes
 * first, then the fields take their short forms, then the devices and the offline card count go. The
 * link, the cashier and the clock's trust never do.
 */
const STATUS_STEPS: ((fields: StatusField[]) => StatusField[])[] = [
  (fs) => fs.filter((f) => f.kind !== 'time'),
  (fs) =>
    fs.map((f) => {
      if (f.kind === 'offlineCard') return { ...f, text: f.text.replace('card offline', 'offl.card') };
      if (f.kind === 'printer')
        return { ...f, text: f.text.replace('paper-near-end', 'paper-low').replace(' (', '(') };
      return f;
    }),
  ...(['scanner', 'terminal', 'offlineCard', 'printer'] as const).map(
    (kind) => (fs: StatusField[]) => fs.filter((f) => f.kind !== kind),
  ),
];
/** A cashier's name is cut to this many characters at least before anything essential is. */
const MIN_NAME_CHARS = 6;

/** The fields joined in at most `width` columns (STATUS_STEPS), a long name shortened last. */
function fitStatusLine(fields: StatusField[], width: number): string {
  const join = (fs: StatusField[]) => ` ${fs.map((f) => f.text).join(' | ')} `;
  let kept = fields;
  for (const step of STATUS_STEPS) {
    if (join(kept).length <= width) return join(kept);
    kept = step(kept);
  }
  const over = join(kept).length - width;
  if (over > 0) {
    kept = kept.map((f) => {
      if (f.kind !== 'cashier' || f.text.length <= MIN_NAME_CHARS) return f;
      const chars = Math.max(MIN_NAME_CHARS, f.text.length - over - 1);
      return { ...f, text: `${f.text.slice(0, chars)}…` };
    });
  }
  // Only a terminal narrower than any till is cut off, and then from the right.
  return join(kept).slice(0, width);
}

function digitOf(action: Action): string | null {
  if (action.startsWith('digit')) return action.slice(5);
  if (action === 'double0') return '00';
  if (action === 'decimal') return '.';
  return null;
}

function lineName(result: unknown): string {
  return (result as { line?: { name?: string } })?.line?.name ?? 'added';
}

function ageText(ms: number): string {
  const m = Math.max(0, Math.floor(ms / 60_000));
  return m < 60 ? `${m}m` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}`;
}

function clockText(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}
