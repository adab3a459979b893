// ESC/POS real-time status (DLE EOT n) and the drawer kick (ESC p), as pure bytes in and out. The printer
// answers each DLE EOT with one byte, even while offline or with the cover open, so the driver can ask
// between jobs; what it does with the answer (retry, queue the receipt, tell the cashier) is its business.
// Bit meanings follow the Epson ESC/POS reference for DLE EOT n = 1..4.

const DLE = 0x10;
const EOT = 0x04;
const ESC = 0x1b;

/** Which status DLE EOT n asks for. */
export const StatusRequest = {
  printer: 1,
  offlineCause: 2,
  errorCause: 3,
  rollPaper: 4,
} as const;
export type StatusRequestName = keyof typeof StatusRequest;
export type StatusRequestN = (typeof StatusRequest)[StatusRequestName];

/** The bytes that ask for one real-time status: DLE EOT n. */
export function statusRequestBytes(n: StatusRequestN): Uint8Array {
  return Uint8Array.of(DLE, EOT, n);
}

/** All four requests, in the order a full status poll sends them. */
export const STATUS_POLL: readonly { name: StatusRequestName; bytes: Uint8Array }[] = (
  Object.keys(StatusRequest) as StatusRequestName[]
).map((name) => ({ name, bytes: statusRequestBytes(StatusRequest[name]) }));

/** n = 1. */
export interface PrinterStatus {
  /** The drawer kick-out connector's pin 3 is high (with most drawers: the drawer is open). */
  drawerPin3High: boolean;
  offline: boolean;
  waitingForOnlineRecovery: boolean;
  feedButtonPressed: boolean;
}

/** n = 2: why the printer is offline. */
export interface OfflineCause {
  coverOpen: boolean;
  feedingByButton: boolean;
  stoppedByPaperEnd: boolean;
  errorOccurred: boolean;
}

/** n = 3: which error. */
export interface ErrorCause {
  recoverable: boolean;
  autocutter: boolean;
  unrecoverable: boolean;
  autoRecoverable: boolean;
}

/** n = 4: the roll paper sensors. */
export interface RollPaperStatus {
  nearEnd: boolean;
  paperEnd: boolean;
}

export type StatusReply =
  | { n: 1; byte: number; printer: PrinterStatus }
  | { n: 2; byte: number; offlineCause: OfflineCause }
  | { n: 3; byte: number; errorCause: ErrorCause }
  | { n: 4; byte: number; rollPaper: RollPaperStatus };

export type StatusDecode =
  | { ok: true; reply: StatusReply }
  | { ok: false; reason: 'not-a-byte' | 'fixed-bits' | 'unknown-request'; byte: unknown };

// Every reply has bit 1 and bit 4 set and bits 0 and 7 clear. A byte that does not is line noise, an
// ASB message, or a reply to something else: it must not be read as a status.
const FIXED_MASK = 0x93;
const FIXED_VALUE = 0x12;

const bit = (byte: number, n: number): boolean => (byte & (1 << n)) !== 0;

/** Whether a byte has the fixed bits every DLE EOT reply has. */
export function isStatusByte(byte: number): boolean {
  return Number.isInteger(byte) && byte >= 0 && byte <= 0xff && (byte & FIXED_MASK) === FIXED_VALUE;
}

/** Decode the one-byte reply to DLE EOT n. */
export function decodeStatus(n: number, byte: number): StatusDecode {
  if (!Number.isInteger(byte) || byte < 0 || byte > 0xff) return { ok: false, reason: 'not-a-byte', byte };
  if ((byte & FIXED_MASK) !== FIXED_VALUE) return { ok: false, reason: 'fixed-bits', byte };
  switch (n) {
    case 1:
      return {
        ok: true,
        reply: {
          n,
          byte,
          printer: {
            drawerPin3High: bit(byte, 2),
            offline: bit(byte, 3),
            waitingForOnlineRecovery: bit(byte, 5),
            feedButtonPressed: bit(byte, 6),
          },
        },
      };
    case 2:
      return {
        ok: true,
        reply: {
          n,
          byte,
          offlineCause: {
            coverOpen: bit(byte, 2),
            feedingByButton: bit(byte, 3),
            stoppedByPaperEnd: bit(byte, 5),
            errorOccurred: bit(byte, 6),
          },
        },
      };
    case 3:
      return {
        ok: true,
        reply: {
          n,
          byte,
          errorCause: {
            recoverable: bit(byte, 2),
            autocutter: bit(byte, 3),
            unrecoverable: bit(byte, 5),
            autoRecoverable: bit(byte, 6),
          },
        },
      };
    case 4:
      // Each sensor is reported on two bits (2-3 near end, 5-6 end); printers set both, either one counts.
      return {
        ok: true,
        reply: { n, byte, rollPaper: { nearEnd: (byte & 0x0c) !== 0, paperEnd: (byte & 0x60) !== 0 } },
      };
    default:
      return { ok: false, reason: 'unknown-request', byte };
  }
}

/** What the cashier is told, most urgent first when several hold. */
export type PrinterState = 'ok' | 'offline' | 'cover-open' | 'paper-near-end' | 'paper-end' | 'error';

/** The replies of one poll; a missing one (not asked, or timed out) is simply not known. */
export interface StatusSnapshot {
  printer?: PrinterStatus;
  offlineCause?: OfflineCause;
  errorCause?: ErrorCause;
  rollPaper?: RollPaperStatus;
}

/** Fold a poll's replies into one state. */
export function printerState(s: StatusSnapshot): PrinterState {
  // An open cover usually also reads as paper end and offline: the cover is what the cashier must fix.
  if (s.offlineCause?.coverOpen) return 'cover-open';
  if (s.rollPaper?.paperEnd || s.offlineCause?.stoppedByPaperEnd) return 'paper-end';
  const e = s.errorCause;
  if (
    s.offlineCause?.errorOccurred ||
    e?.recoverable ||
    e?.autocutter ||
    e?.unrecoverable ||
    e?.autoRecoverable
  )
    return 'error';
  if (s.printer?.offline) return 'offline';
  if (s.rollPaper?.nearEnd) return 'paper-near-end';
  return 'ok';
}

/** Add one decoded reply to a snapshot (a new object; the old one is not changed). */
export function withReply(s: StatusSnapshot, r: StatusReply): StatusSnapshot {
  switch (r.n) {
    case 1:
      return { ...s, printer: r.printer };
    case 2:
      return { ...s, offlineCause: r.offlineCause };
    case 3:
      return { ...s, errorCause: r.errorCause };
    case 4:
      return { ...s, rollPaper: r.rollPaper };
  }
}

export interface DrawerKick {
  /** Connector pin that drives the solenoid: 2 (the usual first drawer) or 5 (a second one). */
  pin: 2 | 5;
  /** Pulse on-time, ms, sent in 2 ms steps (1..255). 50 ms opens common drawers without heating the coil. */
  onMs: number;
  /** Off-time after the pulse, ms, 2 ms steps, at least the on-time. 500 ms keeps repeated kicks apart. */
  offMs: number;
}

export const DEFAULT_DRAWER_KICK: DrawerKick = { pin: 2, onMs: 50, offMs: 500 };

const steps = (ms: number): number => Math.min(255, Math.max(1, Math.round(ms / 2)));

/** ESC p m t1 t2: pulse the drawer kick-out connector. */
export function drawerKickBytes(k: DrawerKick = DEFAULT_DRAWER_KICK): Uint8Array {
  const t1 = steps(k.onMs);
  const t2 = Math.max(t1, steps(k.offMs));
  return Uint8Array.of(ESC, 0x70, k.pin === 2 ? 0 : 1, t1, t2);
}
