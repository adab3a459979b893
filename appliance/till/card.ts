// What the till needs from a card terminal. The real serial driver (ECR protocol) and its simulator
// implement this; the in-process one below serves tests and the demo until they are wired in.

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
}

export interface CardRequest {
  /** Idempotency key: asking twice with one txn never charges twice. */
  txn: string;
  amountMinor: number;
  currency: string;
}

export type CardQuery =
  { state: 'unknown' } | { state: 'in_progress' } | { state: 'final'; result: CardOutcome };

export interface CardTerminal {
  pay(req: CardRequest): Promise<CardOutcome>;
  refund(req: CardRequest): Promise<CardOutcome>;
  /** What became of a txn: asked after a timeout or a restart, before anything is retried. */
  query(txn: string): Promise<CardQuery>;
}

/** An in-process terminal: approves up to a limit, remembers every txn, never charges one twice. */
export class SimulatedCardTerminal implements CardTerminal {
  readonly charges = new Map<string, CardOutcome & { amountMinor: number; kind: 'pay' | 'refund' }>();
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
    return known ? { state: 'final', result: known } : { state: 'unknown' };
  }

  private settle(req: CardRequest, kind: 'pay' | 'refund'): CardOutcome {
    const known = this.charges.get(req.txn);
    if (known) return known;
    const approved = req.amountMinor <= this.declineAboveMinor;
    const outcome: CardOutcome = approved
      ? {
          outcome: 'approved',
          mode: this.online ? 'online' : 'offline',
          authCode: String(100000 + this.charges.size),
          maskedPan: '************4242',
          brand: 'VISA',
        }
      : { outcome: 'declined', mode: this.online ? 'online' : 'offline', message: 'declined by issuer' };
    this.charges.set(req.txn, { ...outcome, amountMinor: req.amountMinor, kind });
    return outcome;
  }
}
