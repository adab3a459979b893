// The ECR protocol ◆ between the register and its card terminal (docs/protocols/ecr.md): UTF-8 JSON,
// one object per line, LF-terminated. This module is pure: the schemas of every message in both
// directions, a bounded line framer that turns bytes into messages or protocol errors (never a throw),
// and the encoders. Both the driver and the simulator use it, so they cannot drift apart.
//
// No PAN may cross this boundary: a masked PAN shows the last four digits only, any string that looks
// like a full card number makes the whole line a protocol error, and errors never quote the line.

import { z } from 'zod';
import { RegisterError } from '../../errors.js';

export const ECR_VERSION = 1;

/**
 * Longest line accepted, in bytes, LF excluded. The largest message (a payment.result with every
 * optional field at its maximum) is under 1 KiB; 8 KiB leaves room for a chatty terminal while a
 * terminal babbling without a newline costs at most this much memory.
 */
export const MAX_LINE_BYTES = 8 * 1024;

const MAX_LINE_BYTES_LIMIT = 1024 * 1024; // a bound on the bound, so a typo cannot disable it

// --- field types ---------------------------------------------------------------------------------

/** The POS's idempotency key (the register uses UUIDv7): echoed by the terminal, never invented by it. */
const TXN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const txn = z.string().regex(TXN);
const v = z.literal(ECR_VERSION);
/** ISO 4217 alphabetic code. */
const currency = z.string().regex(/^[A-Z]{3}$/);
/** Integer minor units; at most 12 digits, the size of EMV's Amount, Authorised (n12). */
const amount = z.number().int().min(1).max(999_999_999_999);
// Text for the cashier's display: no control characters (they would reach the till's screen), bounded.
const text = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]*$/u);
/** ISO 8583 field 38 is six characters; some acquirers send up to twelve. `Y1`/`Y3` mark offline approvals. */
const authCode = z.string().regex(/^[A-Za-z0-9]{1,12}$/);
/** Only the last four digits visible, e.g. `************4242` (12–19 characters, as PANs are). */
export const MASKED_PAN = /^[*Xx]{8,15}[0-9]{4}$/;
const maskedPan = z.string().regex(MASKED_PAN);
const brand = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}$/);
/** A machine-readable reason in snake_case, e.g. `offline_not_allowed`, `busy`. */
const reason = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/);

const resultFields = {
  outcome: z.enum(['approved', 'declined', 'cancelled', 'error']),
  mode: z.enum(['online', 'offline']),
  authCode: authCode.optional(),
  maskedPan: maskedPan.optional(),
  brand: brand.optional(),
  saf: z.boolean().optional(),
  reason: reason.optional(),
  message: text.optional(),
};

// Store and forward only exists for an offline approval: anything else claiming it is confused.
const safOnlyForOfflineApproval = (r: { saf?: boolean; outcome: string; mode: string }) =>
  r.saf !== true || (r.outcome === 'approved' && r.mode === 'offline');
const safRule = { message: 'saf is only for an offline approval', path: ['saf'] };

const CardResult = z.strictObject(resultFields).refine(safOnlyForOfflineApproval, safRule);

// --- messages from the POS to the terminal --------------------------------------------------------

const PaymentRequest = z.strictObject({
  v,
  type: z.literal('payment.request'),
  txn,
  amount,
  currency,
  /** Whether the POS's offline limits let the terminal approve this one offline. */
  offlineAllowed: z.boolean(),
  kind: z.enum(['sale', 'refund']),
});
const Abort = z.strictObject({ v, type: z.literal('abort'), txn });
const StatusQuery = z.strictObject({ v, type: z.literal('status.query'), txn });
const PosAck = z.strictObject({
  v,
  type: z.literal('ack'),
  txn,
  of: z.enum(['payment.result', 'saf.result']),
});

export const PosMessageSchema = z.discriminatedUnion('type', [PaymentRequest, Abort, StatusQuery, PosAck]);

// --- messages from the terminal to the POS --------------------------------------------------------

/** The request was received (not: approved). */
const TerminalAck = z.strictObject({ v, type: z.literal('ack'), txn });
const Status = z.strictObject({ v, type: z.literal('status'), txn, message: text });
const PaymentResult = z
  .strictObject({ v, type: z.literal('payment.result'), txn, ...resultFields })
  .refine(safOnlyForOfflineApproval, safRule);
const StatusReply = z
  .strictObject({
    v,
    type: z.literal('status.reply'),
    txn,
    state: z.enum(['unknown', 'in_progress', 'final']),
    result: CardResult.optional(),
  })
  .refine((m) => (m.state === 'final') === (m.result !== undefined), {
    message: 'a result comes with state final, and only then',
    path: ['result'],
  });
const SafResult = z.strictObject({
  v,
  type: z.literal('saf.result'),
  txn,
  outcome: z.enum(['approved', 'declined']),
  authCode: authCode.optional(),
  message: text.optional(),
});

export const TerminalMessageSchema = z.discriminatedUnion('type', [
  TerminalAck,
  Status,
  PaymentResult,
  StatusReply,
  SafResult,
]);

export type PosMessage = z.infer<typeof PosMessageSchema>;
export type TerminalMessage = z.infer<typeof TerminalMessageSchema>;
export type EcrResult = z.infer<typeof CardResult>;
export type PaymentResultMessage = Extract<TerminalMessage, { type: 'payment.result' }>;

/** Who wrote a line: the POS or the terminal; each side reads the other's messages. */
export type EcrSide = 'pos' | 'terminal';
type MessageFrom<S extends EcrSide> = S extends 'pos' ? PosMessage : TerminalMessage;

const schemaOf = { pos: PosMessageSchema, terminal: TerminalMessageSchema } as const;
const POS_TYPES = ['payment.request', 'abort', 'status.query', 'ack'];
const TERMINAL_TYPES = ['ack', 'status', 'payment.result', 'status.reply', 'saf.result'];

// --- PAN guard ------------------------------------------------------------------------------------

/** Runs of digits, optionally grouped by single spaces as card numbers are printed (`4111 1111 …`). */
const DIGIT_RUN = /[0-9](?: ?[0-9])*/g;

function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * Whether a text holds something that could be a full card number: 13–19 digits (ISO/IEC 7812), in one
 * run or grouped by spaces, passing the Luhn check. Dashes end a run, so a UUID is never mistaken for
 * one; a run longer than 19 digits is not a PAN.
 */
export function looksLikePan(text: string): boolean {
  for (const m of text.matchAll(DIGIT_RUN)) {
    const digits = m[0].replaceAll(' ', '');
    if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return true;
  }
  return false;
}

/** Every key, string and integer in a parsed JSON value, checked for a PAN; the depth is bounded by the line. */
function holdsPan(value: unknown): boolean {
  if (typeof value === 'string') return looksLikePan(value);
  if (typeof value === 'number') return Number.isInteger(value) && looksLikePan(String(value));
  if (Array.isArray(value)) return value.some(holdsPan);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([k, x]) => looksLikePan(k) || holdsPan(x));
  }
  return false;
}

/** Long digit runs blanked: what remains of a wire value in an error detail can never be a card number. */
export function redactDigits(text: string): string {
  return text.replace(/[0-9][0-9 -]{6,}[0-9]/g, '[digits]');
}

// --- decoding -------------------------------------------------------------------------------------

export type ProtocolErrorReason =
  /** Longer than the line limit: the rest up to the next LF is skipped. */
  | 'too-long'
  /** Not UTF-8, or not a JSON object. */
  | 'not-json'
  /** A `v` this side does not speak. */
  | 'version'
  /** An unknown type, a missing or extra field, a value out of range. */
  | 'invalid'
  /** Something in it looks like a full card number: refused whole, and never quoted anywhere. */
  | 'pan';

/** A line that broke the protocol. Never holds the line itself: it may hold a PAN. */
export interface ProtocolError {
  reason: ProtocolErrorReason;
  /** For the log: which rule it broke (field paths and codes), long digit runs blanked. */
  detail: string;
  /** The line's length in bytes, LF excluded. */
  bytes: number;
  /** When the line named a known message type and a well-formed txn, for tracing. */
  type?: string;
  txn?: string;
}

export type Decoded<M> = { ok: true; message: M } | { ok: false; error: ProtocolError };

/** Decodes one line (LF already removed) written by `from`. */
export function decodeLine<S extends EcrSide>(from: S, line: string): Decoded<MessageFrom<S>> {
  const bytes = Buffer.byteLength(line);
  const fail = (reason: ProtocolErrorReason, detail: string, extra: object = {}) =>
    ({ ok: false, error: { reason, detail, bytes, ...extra } }) as const;
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return fail('not-json', 'not valid JSON');
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return fail('not-json', 'not a JSON object');
  }
  const obj = raw as Record<string, unknown>;
  const trace = traceFields(from, obj);
  // Checked before anything else so that no later step (nor a log line about it) ever sees the value.
  if (holdsPan(obj)) return fail('pan', 'holds what looks like a full card number', trace);
  if (obj.v !== ECR_VERSION) {
    const said = typeof obj.v === 'number' && Number.isInteger(obj.v) ? ` ${obj.v}` : '';
    return fail('version', `protocol version${said} is not ${ECR_VERSION}`, trace);
  }
  const parsed = schemaOf[from].safeParse(obj);
  if (!parsed.success) {
    const detail = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || 'message'}: ${i.code === 'custom' ? i.message : i.code}`)
      .join('; ');
    return fail('invalid', redactDigits(detail), trace);
  }
  return { ok: true, message: parsed.data as MessageFrom<S> };
}

function traceFields(from: EcrSide, obj: Record<string, unknown>): { type?: string; txn?: string } {
  const types = from === 'pos' ? POS_TYPES : TERMINAL_TYPES;
  const out: { type?: string; txn?: string } = {};
  if (typeof obj.type === 'string' && types.includes(obj.type)) out.type = obj.type;
  if (typeof obj.txn === 'string' && TXN.test(obj.txn) && !looksLikePan(obj.txn)) out.txn = obj.txn;
  return out;
}

// --- framing --------------------------------------------------------------------------------------

export type FrameEvent<M> = { kind: 'message'; message: M } | { kind: 'error'; error: ProtocolError };

/**
 * Bytes off the serial port in, messages out. Chunks split anywhere (inside a UTF-8 character too);
 * memory is bounded by the line limit; a bad line costs only itself.
 */
export class EcrFramer<S extends EcrSide> {
  readonly #from: S;
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  #size = 0;
  #overflowed = false;
  // Fatal: a garbled byte makes the line not-json instead of a U+FFFD slipping into a message.
  readonly #utf8 = new TextDecoder('utf-8', { fatal: true });

  /** `from`: whose lines this reads (the driver reads the terminal's). */
  constructor(from: S, maxLineBytes: number = MAX_LINE_BYTES) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 256 || maxLineBytes > MAX_LINE_BYTES_LIMIT) {
      throw new RegisterError('CONFIG_INVALID', `ECR maxLineBytes must be 256–${MAX_LINE_BYTES_LIMIT}`);
    }
    this.#from = from;
    this.#maxLineBytes = maxLineBytes;
  }

  push(chunk: Uint8Array): FrameEvent<MessageFrom<S>>[] {
    const events: FrameEvent<MessageFrom<S>>[] = [];
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(0x0a, start);
      if (lf === -1) {
        this.#append(chunk.subarray(start));
        return events;
      }
      this.#append(chunk.subarray(start, lf));
      const event = this.#finish();
      if (event) events.push(event);
      start = lf + 1;
    }
  }

  /** Forgets a partial line, e.g. when the link went down: its end will never come. */
  reset(): void {
    this.#parts = [];
    this.#size = 0;
    this.#overflowed = false;
  }

  #append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#overflowed || this.#size + bytes.length > this.#maxLineBytes) {
      // Counted, not kept: the error reports the length without holding the bytes.
      if (!this.#overflowed) this.#parts = [];
      this.#overflowed = true;
      this.#size += bytes.length;
      return;
    }
    this.#parts.push(Buffer.from(bytes));
    this.#size += bytes.length;
  }

  #finish(): FrameEvent<MessageFrom<S>> | null {
    const size = this.#size;
    const overflowed = this.#overflowed;
    let line = overflowed ? Buffer.alloc(0) : Buffer.concat(this.#parts, size);
    this.reset();
    if (overflowed) {
      const detail = `line is longer than ${this.#maxLineBytes} bytes`;
      return { kind: 'error', error: { reason: 'too-long', detail, bytes: size } };
    }
    // A CRLF terminal is tolerated; an empty line (a keep-alive, the LF of a CRLF pair) says nothing.
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (line.length === 0) return null;
    let text: string;
    try {
      text = this.#utf8.decode(line);
    } catch {
      return { kind: 'error', error: { reason: 'not-json', detail: 'not UTF-8', bytes: line.length } };
    }
    const decoded = decodeLine(this.#from, text);
    return decoded.ok
      ? { kind: 'message', message: decoded.message }
      : { kind: 'error', error: decoded.error };
  }
}

// --- encoding -------------------------------------------------------------------------------------

function encode(from: EcrSide, message: PosMessage | TerminalMessage): Buffer {
  const line = JSON.stringify(message);
  const decoded = decodeLine(from, line);
  if (!decoded.ok) {
    // Our own bug, never the peer's: say so loudly, without quoting the message.
    const { reason, detail } = decoded.error;
    throw new RegisterError(
      'DEVICE_PROTOCOL',
      `refusing to send an invalid ECR message (${reason}: ${detail})`,
    );
  }
  const bytes = Buffer.from(line + '\n', 'utf8');
  if (bytes.length - 1 > MAX_LINE_BYTES) {
    throw new RegisterError('DEVICE_PROTOCOL', `an ECR message is longer than ${MAX_LINE_BYTES} bytes`);
  }
  return bytes;
}

/** One line the POS sends, validated: a bug here throws DEVICE_PROTOCOL instead of confusing the terminal. */
export const encodePosMessage = (message: PosMessage): Buffer => encode('pos', message);

/** One line the terminal (or its simulator) sends, validated the same way. */
export const encodeTerminalMessage = (message: TerminalMessage): Buffer => encode('terminal', message);

/** Whether a txn can go on the wire at all (a request with any other txn can never have been sent). */
export const isWireTxn = (t: string): boolean => TXN.test(t) && !looksLikePan(t);
