// What the till needs from a card terminal. The serial driver (ECR protocol, docs/protocols/ecr.md)
// implements it against a real terminal or its simulator; the in-process one below serves unit tests
// and the demo when no pseudo-terminal is at hand.
import type { DeviceHealth } from '../devices/device.js';

export type CardOutcomeKind = 'approved' | 'declined' | 'cancelled' | 'error';

export interface CardOutcome {
  outcome: CardOutcomeKind;
  mode: 'online' | 'offline';
  authCode?: string;
  /** Only ever the masked form, e.g. `************4242`: no PAN reaches the register. */
  maskedPan?: string;
  brand?: string;
  /** For the cashier: why it was declined or failed. */
  message?: string;
  /** An offline approval the terminal holds to forward later (store and forward); a saf.result follows. */
  saf?: boolean;
  /** Why it was declined, when the terminal says: `offline_not_allowed` is the POS's offline limits. */
  reason?: string;
}

export interface CardRequest {
  /** Idempotency key: asking twice with one txn never charges twice. */
  txn: string;
  amountMinor: number;
  currency: string;
  /**
   * Whether the terminal may approve this one offline: the POS enforces its offline limits (a ceiling
   * per transaction, a total outstanding, a maximum age) and says so with every request.
   */
  offlineAllowed: boolean;
}

/** What a terminal says between requests. */
export type TerminalEvent =
  /** For the cashier, while a payment runs ("insert card", "enter PIN"). */
  | { type: 'status'; txn: string; message: string }
  /** The later outcome of an offline approval, once the terminal has forwarded it. */
  | {
      type: 'saf.result';
      txn: string;
      outcome: 'approved' | 'declined';
      authCode?: string;
      message?: string;
    };

export type CardQuery =
  { state: 'unknown' } | { state: 'in_progress' } | { state: 'final'; result: CardOutcome };

export interface CardTerminal {
  pay(req: CardRequest): Promise<CardOutcome>;
  refund(req: CardRequest): Promise<CardOutcome>;
  /** What became of a txn: asked after a timeout or a restart, before anything is retried. */
  query(txn: string): Promise<CardQuery>;
  /**
   * Who hears the terminal's events. A saf.result is acknowledged to the terminal only after the
   * handler resolves (the register journals it first), so a crash in between means it is sent again.
   */
  setEventHandler?(handler: (e: TerminalEvent) => Promise<void>): void;
  health?(): DeviceHealth;
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

/** An in-process terminal: approves up to a limit, remembers every txn, never charges one twice. */
export class SimulatedCardTerminal implements CardTerminal {
  readonly charges = new Map<string, { outcome: CardOutcome; amountMinor: number; kind: 'pay' | 'refund' }>();
  /** Amounts above this are declined. */
  declineAboveMinor = Infinity;
  online = true;

  async pay(req: CardRequest): Promise<CardOutcome> {
    return this.settle(req, 'pay');
  }

  async refund(req: CardRequest): Promise<CardOutcome> {
    return this.settle(req, 'refund');
  }

  async query(txn: string): Promise<CardQuery> {
    const known = this.charges.get(txn);
    return known ? { state: 'final', result: known.outcome } : { state: 'unknown' };
  }

  private settle(req: CardRequest, kind: 'pay' | 'refund'): CardOutcome {
    const known = this.charges.get(req.txn);
    if (known) return known.outcome;
    const mode = this.online ? 'online' : 'offline';
    const outcome: CardOutcome =
      !this.online && !req.offlineAllowed
        ? { outcome: 'declined', mode, reason: 'offline_not_allowed', message: 'over the offline limits' }
        : req.amountMinor > this.declineAboveMinor
          ? { outcome: 'declined', mode, message: 'declined by issuer' }
          : {
              outcome: 'approved',
              mode,
              authCode: String(100000 + this.charges.size),
              maskedPan: '************4242',
              brand: 'VISA',
              ...(this.online ? {} : { saf: true }),
            };
    this.charges.set(req.txn, { outcome, amountMinor: req.amountMinor, kind });
    return outcome;
  }
}
