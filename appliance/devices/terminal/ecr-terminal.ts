// The card terminal over serial, speaking the ECR protocol ◆ (docs/protocols/ecr.md). It keeps the
// register's side of "no double charge" (Invariant 3): one request at a time, a payment.request is
// sent once and never again on the driver's own initiative, and when the answer does not come (a
// timeout, a pulled cable) the payment rejects so the register asks the terminal with status.query
// before anything else. Results are acknowledged so the terminal stops resending them; a saf.result
// only after the register has journaled it.
import { EventEmitter } from 'node:events';
import type { CardOutcome, CardQuery, CardRequest, CardTerminal, TerminalEvent } from '../../till/card.js';
import { isRegisterError, RegisterError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { realTimers, type BackoffOptions, type DeviceHealth, type Timers } from '../device.js';
import { SerialLink, type OpenPort } from '../serial-link.js';
import {
  ECR_VERSION,
  EcrFramer,
  encodePosMessage,
  isWireTxn,
  type PosMessage,
  type ProtocolError,
  type TerminalMessage,
} from './ecr-protocol.js';

export const ECR_TERMINAL_DEFAULTS = {
  /**
   * ms from sending a request to the terminal's ack. A terminal acks on receipt, before any card or
   * host is involved: well under 1 s even at 9600 baud. 2 s covers a terminal whose UI thread is busy,
   * and is short enough that a pulled or wrong cable is reported while the cashier is still looking.
   */
  ackTimeoutMs: 2000,
  /**
   * ms from sending a payment.request to its result. A customer finds a card, maybe types a PIN
   * (terminals give PIN entry 30–60 s) and the host authorises (up to ~30 s on a slow line); 120 s
   * covers all of it. Shorter risks giving up on a payment that then goes through (the register
   * would find it with status.query, but the cashier would have been told "pending" for nothing).
   */
  resultTimeoutMs: 120_000,
  /**
   * ms for a status.reply. The terminal answers from its own memory, no host round trip; 5 s leaves
   * room for a terminal busy with a customer. The register asks again on its next command.
   */
  queryTimeoutMs: 5000,
  /**
   * ms between empty lines sent on an idle line (0: none). The protocol ignores empty lines; they are
   * here because a line that went away often shows only on a write: serialport keeps reading a hung-up
   * pseudo-terminal as an endless end-of-file, and a USB adapter may be gone silently until written to.
   * 1 s finds a pulled cable before a cashier notices, for one byte a second (0.01 % of 9600 baud).
   * (An RS-232 cable pulled out shows on no write at all: there, the ack timeout and status.query tell.)
   */
  keepAliveMs: 1000,
  /** Requests awaiting an answer at once: a payment holds two (ack, result), a query one. */
  maxWaiters: 8,
  /** saf.results being journaled at once; more are left unacknowledged for the terminal to resend. */
  maxSafInFlight: 16,
  /**
   * saf.result txns remembered as journaled, so a resend is acked without reaching the register twice.
   * The terminal resends for ~30 s; 1,024 covers far more than one burst of forwarded approvals. A
   * resend older than that reaches the register again, which records an approval only once.
   */
  rememberSafTxns: 1024,
} as const;

export interface EcrTerminalOptions {
  /** The serial link to use. One handed in belongs to the caller: stop() leaves it running. */
  link?: SerialLink;
  /** Otherwise the port to open, e.g. `/dev/pos/terminal`. */
  path?: string;
  /** 9600 is what most ECR terminals ship set to. */
  baudRate?: number;
  open?: OpenPort;
  backoff?: BackoffOptions;
  timers?: Timers;
  nowMs?: () => number;
  log?: Logger;
  ackTimeoutMs?: number;
  resultTimeoutMs?: number;
  queryTimeoutMs?: number;
  maxLineBytes?: number;
  maxWaiters?: number;
  keepAliveMs?: number;
}

export interface EcrTerminalEvents {
  up: [];
  down: [reason: string];
  /** A line from the terminal that broke the protocol; it was dropped and nothing else changed. */
  protocolError: [error: ProtocolError];
}

const DEVICE = 'card terminal';
const KEEP_ALIVE = Buffer.from('\n'); // an empty line: ignored by the protocol, noticed by the OS

// --- waitress -------------------------------------------------------------------------------------

interface Waiter<M> {
  match: (m: M) => boolean;
  resolve: (m: M) => void;
  reject: (err: Error) => void;
  timer: unknown;
}

export interface Waiting<T> {
  promise: Promise<T>;
  /** Stops waiting without settling the promise (its answer came another way, or no longer matters). */
  cancel(): void;
}

/**
 * Matches answers to the requests waiting for them, each with its own timeout (zigbee-herdsman's
 * waitress idea). An answer goes to the first waiter it matches; one that matches none is the
 * caller's to handle. The number of waiters is bounded.
 */
export class Waitress<M> {
  readonly #waiters = new Set<Waiter<M>>();

  constructor(
    private readonly timers: Timers,
    private readonly maxWaiters: number,
  ) {}

  get size(): number {
    return this.#waiters.size;
  }

  waitFor<T extends M>(match: (m: M) => m is T, timeoutMs: number, onTimeout: () => Error): Waiting<T> {
    if (this.#waiters.size >= this.maxWaiters) {
      throw new RegisterError('DEVICE_BUSY', `${DEVICE}: too many requests waiting for an answer`);
    }
    let waiter!: Waiter<M>;
    const promise = new Promise<T>((resolve, reject) => {
      waiter = { match, resolve: resolve as (m: M) => void, reject, timer: null };
    });
    // The caller awaits it; this only keeps a rejection nobody awaits any more from crashing the daemon.
    promise.catch(() => {});
    waiter.timer = this.timers.setTimeout(() => {
      this.#waiters.delete(waiter);
      waiter.reject(onTimeout());
    }, timeoutMs);
    this.#waiters.add(waiter);
    return { promise, cancel: () => this.#remove(waiter) };
  }

  /** Hands an answer to the first waiter it matches; false when nobody was waiting for it. */
  resolve(m: M): boolean {
    for (const w of this.#waiters) {
      if (!w.match(m)) continue;
      this.#remove(w);
      w.resolve(m);
      return true;
    }
    return false;
  }

  rejectAll(err: Error): void {
    for (const w of [...this.#waiters]) {
      this.#remove(w);
      w.reject(err);
    }
  }

  #remove(w: Waiter<M>): void {
    if (!this.#waiters.delete(w)) return;
    this.timers.clearTimeout(w.timer);
  }
}

// --- the driver -----------------------------------------------------------------------------------

type Of<T extends TerminalMessage['type']> = Extract<TerminalMessage, { type: T }>;

const answerTo =
  <T extends TerminalMessage['type']>(type: T, txn: string) =>
  (m: TerminalMessage): m is Of<T> =>
    m.type === type && m.txn === txn;

function outcomeOf(m: Of<'payment.result'>): CardOutcome {
  const { v: _v, type: _type, txn: _txn, ...outcome } = m;
  return outcome;
}

export class EcrTerminal extends EventEmitter<EcrTerminalEvents> implements CardTerminal {
  readonly #opts: EcrTerminalOptions;
  readonly #link: SerialLink;
  readonly #ownsLink: boolean;
  readonly #timers: Timers;
  readonly #nowMs: () => number;
  readonly #log: Logger;
  readonly #framer: EcrFramer<'terminal'>;
  readonly #waitress: Waitress<TerminalMessage>;
  #handler: ((e: TerminalEvent) => Promise<void>) | null = null;
  #started = false;
  /** The txn of the payment or refund awaiting its result: one at a time. */
  #open: string | null = null;
  /** What the terminal last showed of itself: offline (approving offline) or not answering. */
  #offline = false;
  #unanswered = false;
  #sinceMs: number;
  readonly #safInFlight = new Set<string>();
  readonly #safDone = new Set<string>();
  #protocolErrors = 0;
  #keepAlive: unknown = null;

  constructor(opts: EcrTerminalOptions) {
    super();
    if (!opts.link && !opts.path) throw new RegisterError('CONFIG_INVALID', 'the card terminal needs a path');
    this.#opts = opts;
    this.#timers = opts.timers ?? realTimers;
    this.#nowMs = opts.nowMs ?? Date.now;
    this.#log = opts.log ?? silentLogger;
    this.#ownsLink = !opts.link;
    this.#link =
      opts.link ??
      new SerialLink({
        path: opts.path!,
        baudRate: opts.baudRate ?? 9600,
        name: DEVICE,
        open: opts.open,
        timers: this.#timers,
        backoff: opts.backoff,
        nowMs: this.#nowMs,
        log: this.#log,
      });
    this.#framer = new EcrFramer('terminal', opts.maxLineBytes);
    this.#waitress = new Waitress(this.#timers, opts.maxWaiters ?? ECR_TERMINAL_DEFAULTS.maxWaiters);
    this.#sinceMs = this.#nowMs();
  }

  /** Lines from the terminal that broke the protocol, over this driver's life. */
  get protocolErrors(): number {
    return this.#protocolErrors;
  }

  setEventHandler(handler: (e: TerminalEvent) => Promise<void>): void {
    this.#handler = handler;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#link.on('data', this.#onData);
    this.#link.on('up', this.#onUp);
    this.#link.on('down', this.#onDown);
    if (this.#link.isUp) this.#scheduleKeepAlive();
    if (this.#ownsLink) await this.#link.start();
  }

  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    this.#link.off('data', this.#onData);
    this.#link.off('up', this.#onUp);
    this.#link.off('down', this.#onDown);
    this.#stopKeepAlive();
    this.#waitress.rejectAll(new RegisterError('DEVICE_DOWN', `${DEVICE} driver stopped`));
    this.#framer.reset();
    if (this.#ownsLink) await this.#link.stop();
  }

  health(): DeviceHealth {
    const link = this.#link.health();
    if (link.state !== 'ok') return link;
    if (this.#unanswered)
      return { state: 'fault', detail: `${DEVICE} is not answering`, sinceMs: this.#sinceMs };
    if (this.#offline) {
      return {
        state: 'ok',
        detail: 'terminal offline: approving offline within limits',
        sinceMs: this.#sinceMs,
      };
    }
    return { state: 'ok', sinceMs: Math.max(link.sinceMs ?? 0, this.#sinceMs) };
  }

  pay(req: CardRequest): Promise<CardOutcome> {
    return this.#transact(req, 'sale');
  }

  refund(req: CardRequest): Promise<CardOutcome> {
    return this.#transact(req, 'refund');
  }

  async query(txn: string): Promise<CardQuery> {
    // No request with such a txn can have gone out (the encoder refuses it), so nothing was charged.
    if (!isWireTxn(txn)) return { state: 'unknown' };
    const timeoutMs = this.#opts.queryTimeoutMs ?? ECR_TERMINAL_DEFAULTS.queryTimeoutMs;
    const reply = this.#waitress.waitFor(answerTo('status.reply', txn), timeoutMs, () =>
      this.#timeout(`did not answer status.query for ${txn} within ${timeoutMs} ms`, txn),
    );
    try {
      await this.#send({ v: ECR_VERSION, type: 'status.query', txn });
      const r = await reply.promise;
      return r.state === 'final' ? { state: 'final', result: r.result! } : { state: r.state };
    } finally {
      reply.cancel();
    }
  }

  /**
   * Asks the terminal to give up on a payment still waiting for the customer. Its outcome is the
   * payment.result (`cancelled` if it was in time; otherwise whatever had been decided), which
   * status.query also tells. Best effort: a lost abort changes nothing.
   */
  async abort(txn: string): Promise<void> {
    if (!isWireTxn(txn)) return;
    try {
      await this.#send({ v: ECR_VERSION, type: 'abort', txn });
    } catch (err) {
      this.#log.warn({ device: DEVICE, txn, err: String(err) }, 'abort not sent');
    }
  }

  async #transact(req: CardRequest, kind: 'sale' | 'refund'): Promise<CardOutcome> {
    if (this.#open !== null) {
      throw new RegisterError('DEVICE_BUSY', `${DEVICE} is busy with txn ${this.#open}`, { txn: this.#open });
    }
    const { txn } = req;
    const request: PosMessage = {
      v: ECR_VERSION,
      type: 'payment.request',
      txn,
      amount: req.amountMinor,
      currency: req.currency,
      offlineAllowed: req.offlineAllowed,
      kind,
    };
    const frame = encodePosMessage(request); // a bad request throws here, before anything is sent
    const ackTimeoutMs = this.#opts.ackTimeoutMs ?? ECR_TERMINAL_DEFAULTS.ackTimeoutMs;
    const resultTimeoutMs = this.#opts.resultTimeoutMs ?? ECR_TERMINAL_DEFAULTS.resultTimeoutMs;
    this.#open = txn;
    const waits: Waiting<TerminalMessage>[] = [];
    try {
      const ack = this.#waitress.waitFor(answerTo('ack', txn), ackTimeoutMs, () =>
        this.#timeout(`did not acknowledge txn ${txn} within ${ackTimeoutMs} ms`, txn),
      );
      waits.push(ack);
      const result = this.#waitress.waitFor(answerTo('payment.result', txn), resultTimeoutMs, () =>
        this.#timeout(`gave no result for txn ${txn} within ${resultTimeoutMs} ms`, txn, false),
      );
      waits.push(result);
      await this.#send(request, frame);
      // Whichever comes first: a result proves receipt, so a garbled ack must not fail the payment.
      await Promise.race([ack.promise, result.promise]);
      return outcomeOf(await result.promise);
    } catch (err) {
      // The terminal may still be waiting for a card: ask it to stop, so that status.query soon gives
      // a final answer (cancelled, or what it had decided) and a new txn can be used safely.
      if (isRegisterError(err, 'DEVICE_TIMEOUT')) void this.abort(txn);
      throw err;
    } finally {
      for (const w of waits) w.cancel();
      this.#open = null;
    }
  }

  async #send(m: PosMessage, frame: Buffer = encodePosMessage(m)): Promise<void> {
    try {
      await this.#link.write(frame);
    } catch (err) {
      if (isRegisterError(err)) throw err;
      throw new RegisterError('DEVICE_DOWN', `${DEVICE}: write failed: ${(err as Error).message}`, {}, err);
    }
    this.#log.info({ device: DEVICE, dir: 'pos→terminal', type: m.type, txn: m.txn }, 'ecr sent');
  }

  /** `silent`: the terminal said nothing at all (no ack, no reply), as opposed to a customer taking long. */
  #timeout(what: string, txn: string, silent = true): RegisterError {
    if (silent) this.#setUnanswered(true);
    this.#log.warn({ device: DEVICE, txn }, `${DEVICE} ${what}`);
    return new RegisterError('DEVICE_TIMEOUT', `${DEVICE} ${what}`, { txn });
  }

  readonly #onData = (chunk: Buffer): void => {
    for (const e of this.#framer.push(chunk)) {
      if (e.kind === 'message') this.#receive(e.message);
      else this.#protocolError(e.error);
    }
  };

  readonly #onUp = (): void => {
    this.#framer.reset();
    this.#scheduleKeepAlive();
    this.emit('up');
  };

  readonly #onDown = (reason: string): void => {
    this.#stopKeepAlive();
    this.#framer.reset(); // a line cut by the cable never ends
    this.#waitress.rejectAll(new RegisterError('DEVICE_DOWN', `${DEVICE} connection lost: ${reason}`));
    this.emit('down', reason);
  };

  #protocolError(error: ProtocolError): void {
    this.#protocolErrors++;
    // The error never holds the line itself, so this log line cannot hold a PAN.
    this.#log.warn({ device: DEVICE, dir: 'terminal→pos', ...error }, 'ecr line broke the protocol; dropped');
    this.emit('protocolError', error);
  }

  #receive(m: TerminalMessage): void {
    this.#setUnanswered(false);
    const fields: Record<string, unknown> = { device: DEVICE, dir: 'terminal→pos', type: m.type, txn: m.txn };
    switch (m.type) {
      case 'ack':
      case 'status.reply':
        if (!this.#waitress.resolve(m)) this.#log.info(fields, 'ecr answer nobody waits for; ignored');
        return;
      case 'status':
        this.#deliver({ type: 'status', txn: m.txn, message: m.message });
        return;
      case 'payment.result': {
        this.#setOffline(m.mode === 'offline');
        this.#log.info({ ...fields, outcome: m.outcome, mode: m.mode }, 'ecr result');
        void this.#ackResult(m.txn, 'payment.result');
        // No waiter: late (after a timeout or a restart; status.query tells the register) or a resend.
        if (!this.#waitress.resolve(m))
          this.#log.info(fields, 'result for no open request: acked, not delivered');
        return;
      }
      case 'saf.result':
        this.#setOffline(false); // it could forward, so it is online
        void this.#onSafResult(m);
        return;
    }
  }

  /** A saf.result is acknowledged only once the register's handler has it journaled. */
  async #onSafResult(m: Of<'saf.result'>): Promise<void> {
    const { txn } = m;
    const fields = { device: DEVICE, dir: 'terminal→pos', type: m.type, txn, outcome: m.outcome };
    if (this.#safDone.has(txn)) {
      this.#log.info(fields, 'saf.result resent; acked again, not delivered twice');
      return this.#ackResult(txn, 'saf.result');
    }
    if (this.#safInFlight.has(txn)) return; // being journaled now; its ack follows
    const handler = this.#handler;
    if (!handler || this.#safInFlight.size >= ECR_TERMINAL_DEFAULTS.maxSafInFlight) {
      this.#log.warn(
        fields,
        'saf.result cannot be taken now; left unacknowledged for the terminal to resend',
      );
      return;
    }
    this.#log.info(fields, 'ecr saf.result');
    this.#safInFlight.add(txn);
    try {
      await handler({
        type: 'saf.result',
        txn,
        outcome: m.outcome,
        ...(m.authCode !== undefined ? { authCode: m.authCode } : {}),
        ...(m.message !== undefined ? { message: m.message } : {}),
      });
    } catch (err) {
      this.#log.warn(
        { ...fields, err: String(err) },
        'saf.result not recorded; left for the terminal to resend',
      );
      return;
    } finally {
      this.#safInFlight.delete(txn);
    }
    this.#safDone.add(txn);
    if (this.#safDone.size > ECR_TERMINAL_DEFAULTS.rememberSafTxns) {
      this.#safDone.delete(this.#safDone.values().next().value!);
    }
    await this.#ackResult(txn, 'saf.result');
  }

  #deliver(e: TerminalEvent): void {
    const handler = this.#handler;
    if (!handler) return;
    handler(e).catch((err: unknown) =>
      this.#log.warn({ device: DEVICE, txn: e.txn, err: String(err) }, 'terminal event handler failed'),
    );
  }

  /** Never throws: a lost ack only means the terminal resends, and the resend is acked then. */
  async #ackResult(txn: string, of: 'payment.result' | 'saf.result'): Promise<void> {
    try {
      await this.#send({ v: ECR_VERSION, type: 'ack', txn, of });
    } catch (err) {
      this.#log.warn({ device: DEVICE, txn, of, err: String(err) }, 'ack not sent; the terminal will resend');
    }
  }

  #scheduleKeepAlive(): void {
    this.#stopKeepAlive();
    const everyMs = this.#opts.keepAliveMs ?? ECR_TERMINAL_DEFAULTS.keepAliveMs;
    if (everyMs <= 0) return;
    this.#keepAlive = this.#timers.setTimeout(() => {
      this.#keepAlive = null;
      // A failed write is the point: the link sees the line gone, reports down, and reconnects.
      this.#link.write(KEEP_ALIVE).catch(() => {});
      if (this.#link.isUp) this.#scheduleKeepAlive();
    }, everyMs);
  }

  #stopKeepAlive(): void {
    if (this.#keepAlive !== null) this.#timers.clearTimeout(this.#keepAlive);
    this.#keepAlive = null;
  }

  #setOffline(offline: boolean): void {
    if (this.#offline === offline) return;
    this.#offline = offline;
    this.#sinceMs = this.#nowMs();
  }

  #setUnanswered(unanswered: boolean): void {
    if (this.#unanswered === unanswered) return;
    this.#unanswered = unanswered;
    this.#sinceMs = this.#nowMs();
  }
}
