// The card terminal's side of the ECR protocol ◆ (docs/protocols/ecr.md), for tests and the demo store.
// It opens the peer end of a PTY pair (scripts/sim/pty.ts) and answers the register's driver as a
// terminal would, with faults to order: offline mode and store-and-forward, declines by amount, delays,
// results dropped, garbled or cut short, a terminal that dies mid-transaction, SAF declines later.
// It keeps the terminal's half of "no double charge": one charge per txn, whatever is asked twice.
//
// Importable (`TerminalSimulator`) and standalone:
//   tsx scripts/sim/terminal-sim.ts --port PATH [--follow FILE] [--rules JSON] [--baud N]
import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { realTimers, type BackoffOptions, type Timers } from '../../appliance/devices/device.js';
import { SerialLink, type OpenPort } from '../../appliance/devices/serial-link.js';
import {
  ECR_VERSION,
  EcrFramer,
  encodeTerminalMessage,
  type EcrResult,
  type PosMessage,
  type ProtocolError,
  type TerminalMessage,
} from '../../appliance/devices/terminal/ecr-protocol.js';
import { jsonLogger, silentLogger, type Logger } from '../../appliance/log.js';

export interface SimRules {
  /** Amounts above this (minor units) are declined, online or offline. */
  declineAboveMinor?: number;
  /** Exact amounts (minor units) that are declined: the "13.13 is a stolen card" of a test script. */
  declineAmounts?: readonly number[];
  /** Offline approvals of these amounts (minor units) are declined by the issuer once forwarded. */
  safDeclineAmounts?: readonly number[];
}

export interface SimDelays {
  /** ms from a request to its ack. */
  ackMs: number;
  /** ms before each status message ("Present card", …). */
  statusMs: number;
  /** ms from the last status message to the result. */
  resultMs: number;
  /** ms from going back online to forwarding the held offline approvals. */
  safMs: number;
}

export const SIM_DEFAULTS = {
  /** ms between resends of an unacknowledged result: well above a round trip at 9600 baud (~50 ms). */
  resendEveryMs: 1000,
  /** Resends after the first send: ~30 s of trying, then the result waits for status.query. */
  maxResends: 30,
  /** Txns remembered for status.query and repeats (oldest forgotten first): days of a busy till. */
  maxTxns: 10_000,
  /** What the customer is told while a payment runs, one status message each. */
  statusMessages: ['Present card', 'Enter PIN', 'Processing'] as readonly string[],
  delays: { ackMs: 0, statusMs: 0, resultMs: 0, safMs: 0 } as SimDelays,
} as const;

export interface TerminalSimulatorOptions {
  /** The peer end of the PTY pair. */
  path: string;
  baudRate?: number;
  /** How to open it (tests pass an in-memory port). */
  open?: OpenPort;
  backoff?: BackoffOptions;
  timers?: Timers;
  log?: Logger;
  /** Whether the terminal reaches its host at start. */
  online?: boolean;
  rules?: SimRules;
  delays?: Partial<SimDelays>;
  resendEveryMs?: number;
  maxResends?: number;
  maxTxns?: number;
  statusMessages?: readonly string[];
}

/** One approval: what the card was charged. */
export interface SimCharge {
  txn: string;
  kind: 'sale' | 'refund';
  amountMinor: number;
  currency: string;
  mode: 'online' | 'offline';
  authCode: string;
}

export type GarbleHow =
  /** Bytes in the middle replaced by 0xFF (not UTF-8); the LF stays, so only this line is lost. */
  | 'garble'
  /** The first half of the line, then the LF. */
  | 'truncate'
  /** The first half without the LF: it runs into the next line, and both are lost. */
  | 'cut';

export interface TerminalSimulatorEvents {
  up: [];
  down: [reason: string];
  /** Every message that arrived from the POS, even while dead (a wire tap for tests). */
  received: [message: PosMessage];
  /** Every message sent (as meant; before any garbling). */
  sent: [message: TerminalMessage];
  protocolError: [error: ProtocolError];
  /** The POS acknowledged a result: resending it stops. */
  acked: [txn: string, of: 'payment.result' | 'saf.result'];
}

interface SimTxn {
  txn: string;
  kind: 'sale' | 'refund';
  amountMinor: number;
  currency: string;
  offlineAllowed: boolean;
  state: 'in_progress' | 'final';
  result?: EcrResult;
  /** Waiting for release() (hold mode). */
  held: boolean;
  /** payment.requests received for it: a driver that resends on its own shows here. */
  requests: number;
}

interface Resend {
  message: TerminalMessage;
  sent: number;
  timer: unknown;
}

const MASKED_PAN = '************4242';
const BRAND = 'VISA';
const MAX_ACKS_KEPT = 1000; // the record of acks is for tests; a long-running demo keeps the last ones

export class TerminalSimulator extends EventEmitter<TerminalSimulatorEvents> {
  readonly charges: SimCharge[] = [];
  /** The POS's acks, oldest first (the last 1,000). */
  readonly acks: { txn: string; of: 'payment.result' | 'saf.result' }[] = [];
  rules: SimRules;

  readonly #opts: TerminalSimulatorOptions;
  readonly #timers: Timers;
  readonly #log: Logger;
  readonly #link: SerialLink;
  readonly #framer = new EcrFramer('pos');
  readonly #delays: SimDelays;
  readonly #txns = new Map<string, SimTxn>();
  readonly #resends = new Map<string, Resend>();
  /** Offline approvals waiting to be forwarded to the host, in the order they were made. */
  readonly #safHeld = new Map<string, SimTxn>();
  readonly #sleeps = new Set<unknown>();
  #current: string | null = null;
  #started = false;
  #online: boolean;
  #dead = false;
  /** Bumped on die(): a payment running when the terminal died never continues. */
  #epoch = 0;
  #holding = false;
  #dropNext = false;
  #dieNext = false;
  #duplicateNext = false;
  #safDeclineNext = false;
  #garble: { how: GarbleHow; type?: TerminalMessage['type'] } | null = null;
  #authSeq = 0;

  constructor(opts: TerminalSimulatorOptions) {
    super();
    this.#opts = opts;
    this.#timers = opts.timers ?? realTimers;
    this.#log = opts.log ?? silentLogger;
    this.#online = opts.online ?? true;
    this.rules = opts.rules ?? {};
    this.#delays = { ...SIM_DEFAULTS.delays, ...opts.delays };
    this.#link = new SerialLink({
      path: opts.path,
      baudRate: opts.baudRate ?? 9600,
      name: 'terminal simulator',
      open: opts.open,
      timers: this.#timers,
      backoff: opts.backoff,
      log: this.#log,
    });
  }

  get online(): boolean {
    return this.#online;
  }

  get dead(): boolean {
    return this.#dead;
  }

  get isUp(): boolean {
    return this.#link.isUp;
  }

  /** Offline approvals not yet forwarded. */
  get safPending(): number {
    return this.#safHeld.size;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#link.on('data', this.#onData);
    this.#link.on('up', this.#onUp);
    this.#link.on('down', this.#onDown);
    await this.#link.start();
  }

  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    this.#cancelTimers();
    this.#link.off('data', this.#onData);
    this.#link.off('up', this.#onUp);
    this.#link.off('down', this.#onDown);
    await this.#link.stop();
  }

  // --- the script -------------------------------------------------------------------------------

  /** The terminal's host link. Back online, held offline approvals are forwarded (saf.result). */
  setOnline(online: boolean): void {
    if (online === this.#online) return;
    this.#online = online;
    this.#log.info({ online }, online ? 'terminal online' : 'terminal offline');
    if (online) void this.#forwardSaf();
  }

  /** Hold every payment at "Enter PIN" until release(): a customer taking their time. */
  hold(on = true): void {
    this.#holding = on;
  }

  /** Lets held payments (or one) finish now. */
  release(txn?: string): void {
    for (const t of this.#txns.values()) {
      if (!t.held || t.state !== 'in_progress' || (txn !== undefined && t.txn !== txn)) continue;
      t.held = false;
      this.#decide(t);
    }
  }

  /** The next payment is decided (and charged, if approved) but its result is never sent. */
  dropNextResult(): void {
    this.#dropNext = true;
  }

  /** The next payment is acknowledged, then the terminal dies (answers nothing until revive()). */
  dieMidTransaction(): void {
    this.#dieNext = true;
  }

  /** The terminal hangs: it reads nothing and sends nothing, resends included. */
  die(): void {
    this.#dead = true;
    this.#epoch++;
    this.#cancelTimers();
    this.#log.warn({}, 'terminal died');
  }

  /** The terminal restarts: a payment it died in is final as an error, nothing charged. */
  revive(): void {
    if (!this.#dead) return;
    this.#dead = false;
    const t = this.#current !== null ? this.#txns.get(this.#current) : undefined;
    if (t?.state === 'in_progress') {
      t.state = 'final';
      t.held = false;
      t.result = { outcome: 'error', mode: this.#mode(), message: 'Terminal restarted during the payment' };
    }
    this.#current = null;
    // Results not yet acknowledged are resent after the restart, as a terminal does from its store.
    for (const [key, r] of this.#resends) this.#resend(key, r);
    this.#log.info({}, 'terminal revived');
  }

  /** The next frame sent (of `type`, if given) is damaged on the way. */
  garbleNext(how: GarbleHow = 'garble', type?: TerminalMessage['type']): void {
    this.#garble = { how, ...(type ? { type } : {}) };
  }

  /** The next result (payment.result or saf.result) is sent twice in a row. */
  duplicateNextResult(): void {
    this.#duplicateNext = true;
  }

  /** The next offline approval to be forwarded is declined by the issuer. */
  safDeclineNext(): void {
    this.#safDeclineNext = true;
  }

  /** Raw bytes on the wire: garbage, or a hand-made line. */
  async sendRaw(bytes: string | Uint8Array): Promise<void> {
    await this.#link.write(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
  }

  /** What status.query would say. */
  txnState(txn: string): 'unknown' | 'in_progress' | 'final' {
    return this.#txns.get(txn)?.state ?? 'unknown';
  }

  /** How many times this txn was charged: 0 or 1, or the simulator has a bug the tests will catch. */
  chargesFor(txn: string): number {
    return this.charges.filter((c) => c.txn === txn).length;
  }

  /** How many payment.requests arrived for this txn. */
  requestsFor(txn: string): number {
    return this.#txns.get(txn)?.requests ?? 0;
  }

  // --- the wire ---------------------------------------------------------------------------------

  readonly #onData = (chunk: Buffer): void => {
    for (const e of this.#framer.push(chunk)) {
      if (e.kind === 'error') {
        this.#log.warn({ dir: 'pos→terminal', ...e.error }, 'line broke the protocol; dropped');
        this.emit('protocolError', e.error);
        continue;
      }
      this.emit('received', e.message);
      if (!this.#dead) this.#receive(e.message);
    }
  };

  readonly #onUp = (): void => {
    this.#framer.reset();
    this.emit('up');
  };

  readonly #onDown = (reason: string): void => {
    this.#framer.reset();
    this.emit('down', reason);
  };

  #receive(m: PosMessage): void {
    this.#log.info({ dir: 'pos→terminal', type: m.type, txn: m.txn }, 'received');
    switch (m.type) {
      case 'payment.request':
        return this.#onRequest(m);
      case 'abort':
        return this.#onAbort(m.txn);
      case 'status.query': {
        const t = this.#txns.get(m.txn);
        const state = t?.state ?? 'unknown';
        const result = t?.state === 'final' ? { result: t.result } : {};
        return this.#send({ v: ECR_VERSION, type: 'status.reply', txn: m.txn, state, ...result });
      }
      case 'ack': {
        const key = `${m.of}:${m.txn}`;
        const r = this.#resends.get(key);
        if (r) this.#timers.clearTimeout(r.timer);
        this.#resends.delete(key);
        this.acks.push({ txn: m.txn, of: m.of });
        if (this.acks.length > MAX_ACKS_KEPT) this.acks.shift();
        this.emit('acked', m.txn, m.of);
        return;
      }
    }
  }

  #onRequest(m: Extract<PosMessage, { type: 'payment.request' }>): void {
    const known = this.#txns.get(m.txn);
    if (known) {
      // A repeat: never a second charge. A final one is answered with what was decided.
      known.requests++;
      this.#send({ v: ECR_VERSION, type: 'ack', txn: m.txn });
      if (known.state === 'final') this.#sendResult(known);
      return;
    }
    const t: SimTxn = {
      txn: m.txn,
      kind: m.kind,
      amountMinor: m.amount,
      currency: m.currency,
      offlineAllowed: m.offlineAllowed,
      state: 'in_progress',
      held: false,
      requests: 1,
    };
    this.#remember(t);
    if (this.#current !== null) {
      // One payment at a time, like a real terminal: this one is refused, nothing charged.
      this.#send({ v: ECR_VERSION, type: 'ack', txn: t.txn });
      this.#finish(t, { outcome: 'error', mode: this.#mode(), reason: 'busy', message: 'Terminal busy' });
      return;
    }
    this.#current = t.txn;
    void this.#run(t);
  }

  /** ack → status messages → result, each after its delay; stops if aborted or the terminal dies. */
  async #run(t: SimTxn): Promise<void> {
    const epoch = this.#epoch;
    const going = () => epoch === this.#epoch && t.state === 'in_progress';
    await this.#sleep(this.#delays.ackMs);
    if (epoch !== this.#epoch) return;
    this.#send({ v: ECR_VERSION, type: 'ack', txn: t.txn });
    if (this.#dieNext) {
      this.#dieNext = false;
      return this.die();
    }
    const messages = this.#opts.statusMessages ?? SIM_DEFAULTS.statusMessages;
    for (const message of messages) {
      await this.#sleep(this.#delays.statusMs);
      if (!going()) return;
      this.#send({ v: ECR_VERSION, type: 'status', txn: t.txn, message });
    }
    await this.#sleep(this.#delays.resultMs);
    if (!going()) return;
    if (this.#holding) {
      t.held = true;
      return;
    }
    this.#decide(t);
  }

  #decide(t: SimTxn): void {
    const mode = this.#mode();
    const rules = this.rules;
    let result: EcrResult;
    if (mode === 'offline' && !t.offlineAllowed) {
      result = {
        outcome: 'declined',
        mode,
        reason: 'offline_not_allowed',
        message: 'Offline: not allowed for this payment',
      };
    } else if (
      (rules.declineAboveMinor !== undefined && t.amountMinor > rules.declineAboveMinor) ||
      rules.declineAmounts?.includes(t.amountMinor)
    ) {
      result = { outcome: 'declined', mode, reason: 'declined_by_issuer', message: 'Declined' };
    } else {
      // Y1: the EMV authorisation response code of an offline approval; the host's code comes later.
      const authCode = mode === 'online' ? String(100000 + (this.#authSeq++ % 900000)) : 'Y1';
      result = { outcome: 'approved', mode, authCode, maskedPan: MASKED_PAN, brand: BRAND };
      if (mode === 'offline') result.saf = true;
      this.charges.push({
        txn: t.txn,
        kind: t.kind,
        amountMinor: t.amountMinor,
        currency: t.currency,
        mode,
        authCode,
      });
      if (mode === 'offline') this.#holdForForwarding(t);
    }
    if (this.#dropNext) {
      this.#dropNext = false;
      t.state = 'final';
      t.result = result;
      this.#current = null;
      this.#log.warn({ txn: t.txn, outcome: result.outcome }, 'result decided and dropped (scripted)');
      return;
    }
    this.#finish(t, result);
  }

  #onAbort(txn: string): void {
    const t = this.#txns.get(txn);
    // Too late once decided: the result stands (and is what status.query says).
    if (t?.state !== 'in_progress') return;
    t.held = false;
    this.#finish(t, { outcome: 'cancelled', mode: this.#mode(), message: 'Cancelled by the register' });
  }

  #finish(t: SimTxn, result: EcrResult): void {
    t.state = 'final';
    t.result = result;
    if (this.#current === t.txn) this.#current = null;
    this.#log.info({ txn: t.txn, outcome: result.outcome, mode: result.mode }, 'payment decided');
    this.#sendResult(t);
  }

  #sendResult(t: SimTxn): void {
    this.#deliver('payment.result', t.txn, {
      v: ECR_VERSION,
      type: 'payment.result',
      txn: t.txn,
      ...t.result!,
    });
  }

  #holdForForwarding(t: SimTxn): void {
    this.#safHeld.set(t.txn, t);
    const max = this.#opts.maxTxns ?? SIM_DEFAULTS.maxTxns;
    if (this.#safHeld.size > max) this.#safHeld.delete(this.#safHeld.keys().next().value!);
  }

  async #forwardSaf(): Promise<void> {
    const epoch = this.#epoch;
    await this.#sleep(this.#delays.safMs);
    for (const [txn, t] of this.#safHeld) {
      if (epoch !== this.#epoch || !this.#online) return; // offline again (or dead): the rest waits
      this.#safHeld.delete(txn);
      const declined = this.#safDeclineNext || this.rules.safDeclineAmounts?.includes(t.amountMinor);
      this.#safDeclineNext = false;
      const message: TerminalMessage = declined
        ? { v: ECR_VERSION, type: 'saf.result', txn, outcome: 'declined', message: 'Declined by the issuer' }
        : {
            v: ECR_VERSION,
            type: 'saf.result',
            txn,
            outcome: 'approved',
            authCode: String(100000 + (this.#authSeq++ % 900000)),
          };
      this.#log.info({ txn, outcome: message.outcome }, 'offline approval forwarded');
      this.#deliver('saf.result', txn, message);
    }
  }

  /** Sends a result now and again every resendEveryMs until acked (at most maxResends times more). */
  #deliver(of: 'payment.result' | 'saf.result', txn: string, message: TerminalMessage): void {
    const key = `${of}:${txn}`;
    const old = this.#resends.get(key);
    if (old) this.#timers.clearTimeout(old.timer);
    this.#resends.delete(key);
    // Bounded like the txns: the oldest unacknowledged result stops being resent (status.query still tells it).
    if (this.#resends.size >= (this.#opts.maxTxns ?? SIM_DEFAULTS.maxTxns)) {
      const [oldestKey, oldest] = this.#resends.entries().next().value!;
      this.#timers.clearTimeout(oldest.timer);
      this.#resends.delete(oldestKey);
    }
    const r: Resend = { message, sent: 0, timer: null };
    this.#resends.set(key, r);
    this.#resend(key, r);
  }

  #resend(key: string, r: Resend): void {
    r.timer = null;
    if (this.#dead) return; // revive() starts it again
    if (r.sent > (this.#opts.maxResends ?? SIM_DEFAULTS.maxResends)) {
      this.#resends.delete(key);
      this.#log.warn({ key }, 'result never acknowledged; kept for status.query');
      return;
    }
    r.sent++;
    this.#send(r.message);
    r.timer = this.#timers.setTimeout(
      () => this.#resend(key, r),
      this.#opts.resendEveryMs ?? SIM_DEFAULTS.resendEveryMs,
    );
  }

  #send(message: TerminalMessage): void {
    if (this.#dead) return;
    let frame = encodeTerminalMessage(message);
    const garble = this.#garble;
    if (garble && (garble.type === undefined || garble.type === message.type)) {
      this.#garble = null;
      frame = garbled(frame, garble.how);
    }
    let copies = 1;
    if (this.#duplicateNext && (message.type === 'payment.result' || message.type === 'saf.result')) {
      this.#duplicateNext = false;
      copies = 2;
    }
    this.#log.info({ dir: 'terminal→pos', type: message.type, txn: message.txn }, 'sent');
    this.emit('sent', message);
    for (let i = 0; i < copies; i++) {
      // While the cable is out the bytes are lost, as on a real line; results are resent anyway.
      this.#link.write(frame).catch((err: unknown) => this.#log.warn({ err: String(err) }, 'write failed'));
    }
  }

  #remember(t: SimTxn): void {
    const max = this.#opts.maxTxns ?? SIM_DEFAULTS.maxTxns;
    if (this.#txns.size >= max) {
      for (const txn of this.#txns.keys()) {
        if (txn === this.#current) continue;
        this.#txns.delete(txn);
        break;
      }
    }
    this.#txns.set(t.txn, t);
  }

  #mode(): 'online' | 'offline' {
    return this.#online ? 'online' : 'offline';
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const handle = this.#timers.setTimeout(() => {
        this.#sleeps.delete(handle);
        resolve();
      }, ms);
      this.#sleeps.add(handle);
    });
  }

  #cancelTimers(): void {
    // A sleep cancelled never resolves: the payment waiting on it is abandoned, which is the point.
    for (const h of this.#sleeps) this.#timers.clearTimeout(h);
    this.#sleeps.clear();
    for (const r of this.#resends.values()) this.#timers.clearTimeout(r.timer);
  }
}

function garbled(frame: Buffer, how: GarbleHow): Buffer {
  const body = frame.subarray(0, frame.length - 1);
  const half = body.subarray(0, Math.max(1, Math.floor(body.length / 2)));
  if (how === 'truncate') return Buffer.concat([half, Buffer.from('\n')]);
  if (how === 'cut') return Buffer.from(half);
  const out = Buffer.from(frame);
  for (let i = 1; i < out.length - 1; i += 7) out[i] = 0xff;
  return out;
}

// --- standalone -------------------------------------------------------------------------------------

const delayMs = z.number().int().min(0).max(600_000);

/** `--rules`: the simulator's script as JSON, checked strictly so a typo is not silently ignored. */
export const CliRulesSchema = z.strictObject({
  online: z.boolean().optional(),
  declineAboveMinor: z.number().int().min(0).optional(),
  declineAmounts: z.array(z.number().int().min(1)).max(1000).optional(),
  safDeclineAmounts: z.array(z.number().int().min(1)).max(1000).optional(),
  delays: z
    .strictObject({ ackMs: delayMs, statusMs: delayMs, resultMs: delayMs, safMs: delayMs })
    .partial()
    .optional(),
  resendEveryMs: z.number().int().min(10).max(60_000).optional(),
  maxResends: z.number().int().min(0).max(1000).optional(),
  statusMessages: z.array(z.string().min(1).max(200)).max(10).optional(),
});

/**
 * Follows a file holding `up` or `down` (the store's connection switch), re-read on change. Polled
 * every 250 ms, not fs.watch: polling survives the file being replaced by a rename, and a human
 * flipping a switch does not notice a quarter of a second.
 */
export function followConnectionFile(sim: TerminalSimulator, file: string, log: Logger): () => void {
  const read = () => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      return; // not there (yet): the terminal stays as it is
    }
    if (text === 'up' || text === 'down') sim.setOnline(text === 'up');
    else log.warn({ file, content: text.slice(0, 20) }, 'connection file holds neither up nor down; ignored');
  };
  read();
  const listener = () => read();
  watchFile(file, { interval: 250 }, listener);
  return () => unwatchFile(file, listener);
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      follow: { type: 'string' },
      rules: { type: 'string' },
      baud: { type: 'string' },
    },
    strict: true,
  });
  if (!values.port) {
    process.stderr.write('usage: terminal-sim --port PATH [--follow FILE] [--rules JSON] [--baud N]\n');
    process.exit(2);
  }
  const rules = CliRulesSchema.parse(values.rules ? JSON.parse(values.rules) : {});
  const log = jsonLogger('terminal-sim');
  const sim = new TerminalSimulator({
    path: values.port,
    baudRate: values.baud ? Number(values.baud) : 9600,
    log,
    online: rules.online ?? true,
    rules,
    delays: rules.delays ?? {},
    resendEveryMs: rules.resendEveryMs,
    maxResends: rules.maxResends,
    statusMessages: rules.statusMessages,
  });
  const unfollow = values.follow ? followConnectionFile(sim, values.follow, log) : () => {};
  await sim.start();
  log.info({ port: values.port, online: sim.online }, 'terminal simulator running');
  const stop = async () => {
    unfollow();
    await sim.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  // Real timers are unref'd so tests can exit; standalone, this keeps the process up.
  setInterval(() => {}, 1 << 30);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`terminal-sim: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
