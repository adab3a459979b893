// The printer simulator's ESC/POS decoder and its printer behaviour, in memory: receiptline jobs decode
// back to the lines receiptline's own text renderer gives (whole, byte by byte, in random chunks), data
// blocks are skipped by their declared length, unknown commands are recorded and never stop decoding,
// and status requests are answered for each state the way the driver's decoder reads them.
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatMinor } from '../../../appliance/till/money.js';
import {
  renderReceiptEscPos,
  renderReceiptText,
  type ReceiptDoc,
} from '../../../appliance/devices/printer/receipt-render.js';
import { decodeStatus, printerState, withReply } from '../../../appliance/devices/printer/escpos-status.js';
import {
  EscPosDecoder,
  PrinterSimulator,
  SIM_STATES,
  parseSimArgs,
  type DecodedKick,
  type SimPrinterState,
} from '../../../scripts/sim/printer-sim.js';
import { Rng } from '../../support/rng.js';
import { receipts } from '../../support/receipt-fixtures.js';

type SaleDoc = Extract<ReceiptDoc, { kind: 'sale' }>;

const trimmed = (lines: readonly string[]): string[] => lines.map((l) => l.trimEnd());
const textLines = (doc: ReceiptDoc, columns: 42 | 48): string[] => {
  const lines = trimmed(renderReceiptText(doc, { columns }).split('\n'));
  if (lines.at(-1) === '') lines.pop();
  return lines;
};

/** A simulator and one in-memory connection to it; replies collected. */
function rig(state: SimPrinterState = 'ok', opts: ConstructorParameters<typeof PrinterSimulator>[0] = {}) {
  const sim = new PrinterSimulator({ state, ...opts });
  const replies: number[] = [];
  const conn = sim.connect((b) => replies.push(...b));
  return { sim, conn, replies };
}

t.test('a receiptline job decodes to the lines of the text renderer', async (t) => {
  const { sale, refund } = await receipts();
  const rng = new Rng(7);
  for (const [name, doc] of [
    ['sale', sale],
    ['refund', refund],
  ] as const) {
    for (const columns of [42, 48] as const) {
      const bytes = renderReceiptEscPos(doc, { columns });
      const want = textLines(doc, columns);
      const splits: [string, (c: { write(b: Uint8Array): void }) => void][] = [
        ['whole', (c) => c.write(bytes)],
        ['byte by byte', (c) => bytes.forEach((_, i) => c.write(bytes.subarray(i, i + 1)))],
        [
          'random chunks',
          (c) => {
            for (let i = 0; i < bytes.length;) {
              const n = rng.int(1, 64);
              c.write(bytes.subarray(i, i + n));
              i += n;
            }
          },
        ],
      ];
      for (const [how, feed] of splits) {
        const { sim, conn, replies } = rig();
        feed(conn);
        t.equal(sim.receipts.length, 1, `${name} ${columns} ${how}: one receipt`);
        t.same(trimmed(sim.receipts[0]!.lines), want, `${name} ${columns} ${how}: same lines`);
        t.equal(sim.receipts[0]!.cut, 'partial', 'ended by GS V B (feed and partial cut)');
        t.same(replies, [0x00], 'GS r 1 answered: paper adequate');
        t.same(sim.unknownCommands, [], 'every command receiptline emits is known');
      }
    }
  }
  const { sim, conn } = rig();
  conn.write(renderReceiptEscPos(sale, { columns: 42 }));
  const text = sim.receipts[0]!.text;
  for (const l of sale.lines) t.ok(text.includes(l.name), `item ${l.name}`);
  const spaced = [...formatMinor(sale.totalMinor, 'EUR')].join(' ');
  t.ok(new RegExp(`T O T A L +${spaced.replace(/\./g, '\\.')}`).test(text), `double-width total: ${spaced}`);
  t.ok(text.includes(formatMinor(sale.changeMinor, 'EUR')), 'change');
  t.ok(text.includes(`No. ${sale.receiptNo}`), 'receipt number');
  t.ok(text.includes('**** 4242'), 'masked card');
});

t.test('code pages: accents and the Euro sign through ESC t switching', async (t) => {
  const { sale } = await receipts();
  const doc: SaleDoc = {
    ...sale,
    storeName: 'Café Müller € Ærø Łódź',
    lines: sale.lines.map((l) => ({ ...l, name: 'Crème brûlée ÄÖÜ ß' })),
  };
  const { sim, conn } = rig();
  conn.write(renderReceiptEscPos(doc, { columns: 48 }));
  t.same(trimmed(sim.receipts[0]!.lines), textLines(doc, 48));
  t.ok(sim.receipts[0]!.text.includes('Café Müller € Ærø Łódź'));
  t.ok(sim.receipts[0]!.text.includes('Crème brûlée ÄÖÜ ß'));
});

const kickCases: { name: string; bytes: number[]; kick: DecodedKick }[] = [
  {
    name: 'ESC p 0 25 250',
    bytes: [0x1b, 0x70, 0, 25, 250],
    kick: { pin: 2, onMs: 50, offMs: 500, realtime: false },
  },
  {
    name: 'ESC p 1 50 200 (pin 5)',
    bytes: [0x1b, 0x70, 1, 50, 200],
    kick: { pin: 5, onMs: 100, offMs: 400, realtime: false },
  },
  {
    name: "ESC p '0' (ASCII m)",
    bytes: [0x1b, 0x70, 0x30, 10, 20],
    kick: { pin: 2, onMs: 20, offMs: 40, realtime: false },
  },
  {
    name: 'DLE DC4 1 1 3 (real time, pin 5, 300 ms)',
    bytes: [0x10, 0x14, 1, 1, 3],
    kick: { pin: 5, onMs: 300, offMs: 300, realtime: true },
  },
];

t.test('drawer kicks: pin and timing decoded', async (t) => {
  for (const c of kickCases) {
    const { sim, conn } = rig();
    conn.write(Uint8Array.from(c.bytes));
    t.match(sim.kicks, [c.kick], c.name);
    t.equal(sim.kicks.length, 1);
  }
  const { sale } = await receipts();
  const { sim, conn } = rig();
  conn.write(renderReceiptEscPos(sale, { columns: 42, drawerKick: { pin: 5, onMs: 100, offMs: 400 } }));
  t.match(sim.kicks, [{ pin: 5, onMs: 100, offMs: 400, realtime: false }], 'a kick inside a receipt job');
  t.same(trimmed(sim.receipts[0]!.lines), textLines(sale, 42), 'and the text is unchanged');
});

const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];

t.test('cuts split receipts; every cut form is known', async (t) => {
  const cuts: [string, number[], 'full' | 'partial'][] = [
    ['GS V 0', [0x1d, 0x56, 0], 'full'],
    ['GS V 1', [0x1d, 0x56, 1], 'partial'],
    ["GS V '0'", [0x1d, 0x56, 0x30], 'full'],
    ['GS V A 3', [0x1d, 0x56, 65, 3], 'full'],
    ['GS V B 0', [0x1d, 0x56, 66, 0], 'partial'],
    ['ESC i', [0x1b, 0x69], 'partial'],
    ['ESC m', [0x1b, 0x6d], 'partial'],
  ];
  const { sim, conn } = rig();
  const kinds: string[] = [];
  sim.on('cut', (k) => kinds.push(k));
  for (const [name, bytes] of cuts) conn.write(Uint8Array.from([...ascii(`${name}\n`), ...bytes]));
  t.same(
    sim.receipts.map((r) => [r.lines, r.cut]),
    cuts.map(([name, , kind]) => [[name], kind]),
  );
  t.same(
    kinds,
    cuts.map(([, , k]) => k),
  );
  t.equal(sim.counts.cuts, cuts.length);
  t.same(sim.unknownCommands, []);

  const r2 = rig();
  r2.conn.write(Uint8Array.from([...ascii('no line feed before the cut'), 0x1d, 0x56, 1]));
  t.same(r2.sim.receipts[0]!.lines, ['no line feed before the cut'], 'a cut prints the buffer first');
  r2.conn.write(Uint8Array.from(ascii('closed without a cut\n')));
  r2.conn.close();
  t.match(r2.sim.receipts[1], { lines: ['closed without a cut'], cut: 'none' });
});

t.test('data blocks are skipped by their declared length, whatever they contain', async (t) => {
  // Data full of bytes that would otherwise read as text, line feeds, cuts and status requests.
  const junk = (n: number): number[] =>
    Array.from({ length: n }, (_, i) => [0x41, 0x0a, 0x1d, 0x56, 0x10, 0x04][i % 6]!);
  const blocks: [string, number[]][] = [
    ['GS v 0 raster 3x2', [0x1d, 0x76, 0x30, 0, 3, 0, 2, 0, ...junk(6)]],
    ['GS ( k QR store', [0x1d, 0x28, 0x6b, 7, 0, 0x31, 0x50, 0x30, ...junk(4)]],
    ['GS ( L graphics', [0x1d, 0x28, 0x4c, 2, 0, 0x30, 0x32]],
    ['GS 8 L graphics', [0x1d, 0x38, 0x4c, 12, 0, 0, 0, ...junk(12)]],
    ['GS k m=2 (NUL-terminated)', [0x1d, 0x6b, 2, ...ascii('4006381333931'), 0]],
    ['GS k m=73 n', [0x1d, 0x6b, 73, 5, ...junk(5)]],
    ['ESC * 33 (24-dot, 3 bytes a column)', [0x1b, 0x2a, 33, 2, 0, ...junk(6)]],
    ['ESC * 0 (8-dot)', [0x1b, 0x2a, 0, 3, 0, ...junk(3)]],
    ['GS * x y', [0x1d, 0x2a, 1, 1, ...junk(8)]],
    ['FS ( A', [0x1c, 0x28, 0x41, 2, 0, 0x30, 0]],
    ['ESC D tab stops', [0x1b, 0x44, 8, 16, 24, 0]],
    ['FS 2 user Kanji', [0x1c, 0x32, 0x77, 0x21, ...junk(72)]],
  ];
  for (const [name, bytes] of blocks) {
    const { sim, conn, replies } = rig();
    conn.write(Uint8Array.from([...ascii('before\n'), ...bytes, ...ascii('after\n'), 0x1d, 0x56, 0x31]));
    t.same(sim.receipts[0]?.lines, ['before', 'after'], name);
    t.same(replies, [], `${name}: nothing in the data was answered`);
    t.same(sim.unknownCommands, [], `${name}: known`);
  }
});

t.test('unknown commands are recorded and decoding goes on', async (t) => {
  const { sim, conn } = rig();
  const seen: string[] = [];
  sim.on('unknown', (u) => seen.push(u.bytes));
  conn.write(
    Uint8Array.from([
      ...ascii('one'),
      0x1b, 0x01, // ESC with no such command
      ...ascii(' two'),
      0x1d, 0x01, // GS likewise
      0x1c, 0x7a, // FS likewise
      0x10, 0x7f, // DLE likewise
      0x07, // BEL
      0x10, 0x14, 0x09, // DLE DC4 with an unknown function
      ...ascii(' three\n'),
      0x1d, 0x56, 0x01,
    ]), // prettier-ignore
  );
  t.same(sim.receipts[0]?.lines, ['one two three']);
  t.same(seen, ['1b 01', '1d 01', '1c 7a', '10 7f', '07', '10 14 09']);

  // Random bytes never throw, and what is kept stays bounded.
  const fuzz = new PrinterSimulator({ maxReceipts: 5, maxRecords: 10, maxLinesPerReceipt: 20 });
  const c = fuzz.connect(() => {});
  const rng = new Rng(42);
  for (let i = 0; i < 200; i++) c.write(Uint8Array.from(rng.bytes(1024)));
  c.close();
  t.ok(fuzz.receipts.length <= 5, 'receipts bounded');
  t.ok(fuzz.unknownCommands.length <= 10, 'unknown records bounded');
  t.ok(fuzz.kicks.length <= 10, 'kicks bounded');
  t.ok(
    fuzz.receipts.every((r) => r.lines.length <= 20 && r.lines.every((l) => l.length <= 256)),
    'lines bounded',
  );
});

t.test('layout: alignment, double width, tabs, feeds, print area', async (t) => {
  const { sim, conn } = rig('ok', { columns: 20 });
  conn.write(
    Uint8Array.from([
      0x1b, 0x61, 1, ...ascii('mid\n'),
      0x1b, 0x61, 2, ...ascii('right\n'),
      0x1b, 0x61, 0, 0x1b, 0x21, 0x20, ...ascii('WIDE\n'),
      0x1b, 0x21, 0, ...ascii('a\tb\n'),
      0x1b, 0x64, 3, // print (nothing is buffered) and feed three lines
      0x1d, 0x4c, 24, 0, ...ascii('indented\n'),
      0x1b, 0x40, ...ascii('reset\n'),
      0x1d, 0x56, 0x01,
    ]), // prettier-ignore
  );
  t.same(sim.receipts[0]?.lines, [
    '        mid',
    '               right',
    'W I D E ',
    'a       b',
    '',
    '',
    '',
    '  indented',
    'reset',
  ]);
});

/** What the driver's decoder makes of the four replies. */
function readAs(replies: number[]): string {
  let s = {};
  replies.forEach((byte, i) => {
    const r = decodeStatus(i + 1, byte);
    if (!r.ok) throw new Error(`not a status byte: ${byte}`);
    s = withReply(s, r.reply);
  });
  return printerState(s);
}

t.test('DLE EOT 1..4 answered per state, read back by the driver decoder', async (t) => {
  const expected: Record<Exclude<SimPrinterState, 'offline'>, { state: string; gsr: number }> = {
    ok: { state: 'ok', gsr: 0x00 },
    'paper-near-end': { state: 'paper-near-end', gsr: 0x03 },
    'paper-out': { state: 'paper-end', gsr: -1 },
    'cover-open': { state: 'cover-open', gsr: -1 },
  };
  const poll = Uint8Array.from([0x10, 0x04, 1, 0x10, 0x04, 2, 0x10, 0x04, 3, 0x10, 0x04, 4]);
  for (const [state, want] of Object.entries(expected)) {
    const { sim, conn, replies } = rig(state as SimPrinterState);
    conn.write(poll);
    t.equal(replies.length, 4, `${state}: four answers`);
    t.equal(readAs(replies), want.state, `${state} reads as ${want.state}`);
    t.equal(sim.counts.statusRequests, 4);
    replies.length = 0;
    conn.write(Uint8Array.from([0x1d, 0x72, 0x31]));
    t.same(replies, want.gsr < 0 ? [] : [want.gsr], `${state}: GS r 1 (answered only while printing)`);
  }
  t.same(SIM_STATES, ['ok', 'paper-near-end', 'paper-out', 'cover-open', 'offline']);
});

t.test('offline: no answers and nothing read until it comes back', async (t) => {
  const { sim, conn, replies } = rig('offline');
  conn.write(Uint8Array.from([0x10, 0x04, 1, ...ascii('held\n'), 0x1d, 0x56, 1]));
  t.same(replies, [], 'silent');
  t.same(sim.receipts, [], 'not read');
  sim.setState('ok');
  t.same(replies, [0x12], 'the held request is answered once back');
  t.same(sim.receipts[0]?.lines, ['held']);
  const tiny = rig('offline');
  tiny.conn.write(new Uint8Array(70 * 1024));
  t.equal(tiny.sim.counts.droppedBytes, 70 * 1024, 'an in-memory connection holds at most 64 KiB');
});

t.test('paper out or cover open: text and ESC p dropped, real-time requests still served', async (t) => {
  for (const state of ['paper-out', 'cover-open'] as const) {
    const { sim, conn, replies } = rig(state);
    conn.write(
      Uint8Array.from([
        0x1b, 0x70, 0, 25, 250, ...ascii('lost\n'), 0x1d, 0x56, 1,
        0x10, 0x14, 1, 0, 1, 0x10, 0x04, 2,
      ]), // prettier-ignore
    );
    t.same(sim.receipts, [], `${state}: nothing printed`);
    t.equal(sim.counts.discardedLines, 1);
    t.equal(sim.counts.discardedKicks, 1, 'ESC p waits its turn: not pulsed');
    t.match(sim.kicks, [{ pin: 2, onMs: 100, realtime: true }], 'DLE DC4 1 pulses at once');
    t.equal(replies.length, 1, 'DLE EOT 2 answered');
  }
});

t.test('receipts kept are bounded; --out appends them as text', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'x-'));
  const out = path.join(dir, 'printed.txt');
  const { sim, conn } = rig('ok', { maxReceipts: 3, out });
  for (let i = 1; i <= 5; i++) conn.write(Uint8Array.from([...ascii(`receipt ${i}\n`), 0x1d, 0x56, 1]));
  t.same(
    sim.receipts.map((r) => [r.seq, r.lines[0]]),
    [
      [3, 'receipt 3'],
      [4, 'receipt 4'],
      [5, 'receipt 5'],
    ],
  );
  t.equal(sim.findReceipt('receipt 4')?.seq, 4);
  const text = readFileSync(out, 'utf8');
  for (let i = 1; i <= 5; i++) t.ok(text.includes(`receipt ${i}\n`), `receipt ${i} in --out`);
  t.match(text, /^----- receipt 1 · .* · cut partial -----$/m);
});

t.test('waitForReceipt is bounded', async (t) => {
  const { sim, conn } = rig();
  const waiting = sim.waitForReceipt('later', 1000);
  conn.write(Uint8Array.from([...ascii('later\n'), 0x1d, 0x56, 1]));
  t.equal((await waiting).lines[0], 'later');
  await t.rejects(sim.waitForReceipt('never', 20), /no receipt with "never" within 20 ms/);
});

t.test('command line', async (t) => {
  t.match(parseSimArgs(['--tcp', '0']), { tcp: 0, host: '127.0.0.1', state: 'ok' });
  t.match(parseSimArgs(['--pty', '/tmp/p', '--out', 'o.txt', '--state', 'paper-out']), {
    pty: '/tmp/p',
    out: 'o.txt',
    state: 'paper-out',
  });
  t.throws(() => parseSimArgs([]), /usage/);
  t.throws(() => parseSimArgs(['--tcp', 'x']), /not a port/);
  t.throws(() => parseSimArgs(['--tcp']), /needs a value/);
  t.throws(() => parseSimArgs(['--state', 'wet', '--tcp', '1']), /one of/);
  t.throws(() => parseSimArgs(['--bogus', '1']), /unknown option/);
});

t.test('decoder alone: lines and requests in stream order', async (t) => {
  const events: string[] = [];
  const d = new EscPosDecoder(
    {
      line: (s) => events.push(`line ${s}`),
      cut: (k) => events.push(`cut ${k}`),
      kick: (k) => events.push(`kick ${k.pin}`),
      realtimeStatus: (n) => events.push(`eot ${n}`),
      transmitStatus: (n) => events.push(`gsr ${n}`),
      unknown: (b) => events.push(`unknown ${b.join(',')}`),
    },
    42,
  );
  d.feed(
    Uint8Array.from([0x10, 0x04, 1, ...ascii('x\n'), 0x1b, 0x70, 0, 1, 1, 0x1d, 0x56, 0, 0x1d, 0x72, 1]),
  );
  d.feed(Uint8Array.from(ascii('tail')));
  d.flush();
  t.same(events, ['eot 1', 'line x', 'kick 2', 'cut full', 'gsr 1', 'line tail']);
});
