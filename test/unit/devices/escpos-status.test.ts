// The DLE EOT n status decoder, table-driven from reply bytes to decoded bits and the cashier's state,
// plus the request and drawer-kick bytes. Bit meanings: Epson ESC/POS reference, DLE EOT n = 1..4.
import t from 'tap';
import {
  DEFAULT_DRAWER_KICK,
  STATUS_POLL,
  decodeStatus,
  drawerKickBytes,
  isStatusByte,
  printerState,
  statusRequestBytes,
  withReply,
  type StatusSnapshot,
} from '../../../appliance/devices/printer/escpos-status.js';

const none1 = {
  drawerPin3High: false,
  offline: false,
  waitingForOnlineRecovery: false,
  feedButtonPressed: false,
};
const none2 = { coverOpen: false, feedingByButton: false, stoppedByPaperEnd: false, errorOccurred: false };
const none3 = { recoverable: false, autocutter: false, unrecoverable: false, autoRecoverable: false };

const valid: { n: 1 | 2 | 3 | 4; byte: number; decoded: Record<string, unknown> }[] = [
  { n: 1, byte: 0x12, decoded: { printer: none1 } },
  { n: 1, byte: 0x16, decoded: { printer: { ...none1, drawerPin3High: true } } },
  { n: 1, byte: 0x1a, decoded: { printer: { ...none1, offline: true } } },
  { n: 1, byte: 0x32, decoded: { printer: { ...none1, waitingForOnlineRecovery: true } } },
  { n: 1, byte: 0x52, decoded: { printer: { ...none1, feedButtonPressed: true } } },
  {
    n: 1,
    byte: 0x7e,
    decoded: {
      printer: {
        drawerPin3High: true,
        offline: true,
        waitingForOnlineRecovery: true,
        feedButtonPressed: true,
      },
    },
  },
  { n: 2, byte: 0x12, decoded: { offlineCause: none2 } },
  { n: 2, byte: 0x16, decoded: { offlineCause: { ...none2, coverOpen: true } } },
  { n: 2, byte: 0x1a, decoded: { offlineCause: { ...none2, feedingByButton: true } } },
  { n: 2, byte: 0x32, decoded: { offlineCause: { ...none2, stoppedByPaperEnd: true } } },
  { n: 2, byte: 0x52, decoded: { offlineCause: { ...none2, errorOccurred: true } } },
  { n: 3, byte: 0x12, decoded: { errorCause: none3 } },
  { n: 3, byte: 0x16, decoded: { errorCause: { ...none3, recoverable: true } } },
  { n: 3, byte: 0x1a, decoded: { errorCause: { ...none3, autocutter: true } } },
  { n: 3, byte: 0x32, decoded: { errorCause: { ...none3, unrecoverable: true } } },
  { n: 3, byte: 0x52, decoded: { errorCause: { ...none3, autoRecoverable: true } } },
  { n: 4, byte: 0x12, decoded: { rollPaper: { nearEnd: false, paperEnd: false } } },
  { n: 4, byte: 0x1e, decoded: { rollPaper: { nearEnd: true, paperEnd: false } } },
  { n: 4, byte: 0x72, decoded: { rollPaper: { nearEnd: false, paperEnd: true } } },
  { n: 4, byte: 0x7e, decoded: { rollPaper: { nearEnd: true, paperEnd: true } } },
];

t.test('valid replies decode bit by bit', async (t) => {
  for (const c of valid) {
    const r = decodeStatus(c.n, c.byte);
    t.ok(isStatusByte(c.byte), `0x${c.byte.toString(16)} has the fixed bits`);
    t.same(
      r,
      { ok: true, reply: { n: c.n, byte: c.byte, ...c.decoded } },
      `n=${c.n} 0x${c.byte.toString(16)}`,
    );
  }
});

const invalid: { name: string; n: number; byte: number; reason: string }[] = [
  { name: 'zero', n: 1, byte: 0x00, reason: 'fixed-bits' },
  { name: 'bit 0 set', n: 1, byte: 0x13, reason: 'fixed-bits' },
  { name: 'bit 1 clear', n: 2, byte: 0x10, reason: 'fixed-bits' },
  { name: 'bit 4 clear', n: 3, byte: 0x02, reason: 'fixed-bits' },
  { name: 'bit 7 set', n: 4, byte: 0x92, reason: 'fixed-bits' },
  { name: 'all ones', n: 1, byte: 0xff, reason: 'fixed-bits' },
  { name: 'ASCII text', n: 1, byte: 0x41, reason: 'fixed-bits' },
  { name: 'negative', n: 1, byte: -1, reason: 'not-a-byte' },
  { name: 'over a byte', n: 1, byte: 0x112, reason: 'not-a-byte' },
  { name: 'fraction', n: 1, byte: 18.5, reason: 'not-a-byte' },
  { name: 'NaN', n: 1, byte: Number.NaN, reason: 'not-a-byte' },
  { name: 'unknown n', n: 5, byte: 0x12, reason: 'unknown-request' },
  { name: 'n = 0', n: 0, byte: 0x12, reason: 'unknown-request' },
];

t.test('invalid bytes are rejected, never read as a status', async (t) => {
  for (const c of invalid) {
    const r = decodeStatus(c.n, c.byte);
    t.match(r, { ok: false, reason: c.reason }, c.name);
    if (c.reason === 'fixed-bits') t.notOk(isStatusByte(c.byte), `${c.name}: not a status byte`);
  }
});

const fold = (...replies: [number, number][]): StatusSnapshot =>
  replies.reduce<StatusSnapshot>((s, [n, byte]) => {
    const r = decodeStatus(n, byte);
    if (!r.ok) throw new Error(`bad fixture ${n} ${byte}`);
    return withReply(s, r.reply);
  }, {});

const states: { name: string; snapshot: StatusSnapshot; state: string }[] = [
  { name: 'nothing known', snapshot: {}, state: 'ok' },
  { name: 'all clear', snapshot: fold([1, 0x12], [2, 0x12], [3, 0x12], [4, 0x12]), state: 'ok' },
  { name: 'drawer open is not a fault', snapshot: fold([1, 0x16], [4, 0x12]), state: 'ok' },
  { name: 'near end', snapshot: fold([1, 0x12], [4, 0x1e]), state: 'paper-near-end' },
  { name: 'paper end by sensor', snapshot: fold([1, 0x1a], [2, 0x12], [4, 0x7e]), state: 'paper-end' },
  { name: 'stopped by paper end', snapshot: fold([1, 0x1a], [2, 0x32]), state: 'paper-end' },
  {
    name: 'cover open wins over paper end',
    snapshot: fold([1, 0x1a], [2, 0x36], [4, 0x72]),
    state: 'cover-open',
  },
  { name: 'error occurred', snapshot: fold([1, 0x1a], [2, 0x52]), state: 'error' },
  { name: 'autocutter jam', snapshot: fold([1, 0x1a], [3, 0x1a]), state: 'error' },
  { name: 'unrecoverable', snapshot: fold([3, 0x32]), state: 'error' },
  { name: 'auto-recoverable (head hot)', snapshot: fold([3, 0x52]), state: 'error' },
  { name: 'offline, cause not asked', snapshot: fold([1, 0x1a]), state: 'offline' },
  { name: 'offline while feeding by button', snapshot: fold([1, 0x1a], [2, 0x1a]), state: 'offline' },
  { name: 'error wins over near end', snapshot: fold([3, 0x16], [4, 0x1e]), state: 'error' },
];

t.test('a poll folds into the state the cashier sees', async (t) => {
  for (const c of states) t.equal(printerState(c.snapshot), c.state, c.name);
});

t.test('request bytes: DLE EOT n', async (t) => {
  for (const n of [1, 2, 3, 4] as const) t.same([...statusRequestBytes(n)], [0x10, 0x04, n], `n=${n}`);
  t.same(
    STATUS_POLL.map((p) => [p.name, ...p.bytes]),
    [
      ['printer', 0x10, 0x04, 1],
      ['offlineCause', 0x10, 0x04, 2],
      ['errorCause', 0x10, 0x04, 3],
      ['rollPaper', 0x10, 0x04, 4],
    ],
  );
});

t.test('drawer kick: ESC p m t1 t2 in 2 ms steps', async (t) => {
  t.same([...drawerKickBytes()], [0x1b, 0x70, 0, 25, 250], 'default: pin 2, 50 ms on, 500 ms off');
  t.same([...drawerKickBytes(DEFAULT_DRAWER_KICK)], [0x1b, 0x70, 0, 25, 250]);
  t.same([...drawerKickBytes({ pin: 5, onMs: 100, offMs: 200 })], [0x1b, 0x70, 1, 50, 100], 'pin 5');
  t.same(
    [...drawerKickBytes({ pin: 2, onMs: 0, offMs: 10_000 })],
    [0x1b, 0x70, 0, 1, 255],
    'clamped to 1..255',
  );
  t.same(
    [...drawerKickBytes({ pin: 2, onMs: 200, offMs: 20 })],
    [0x1b, 0x70, 0, 100, 100],
    'off at least on',
  );
});
