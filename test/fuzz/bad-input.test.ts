// Seeded fuzzing of two of the register's inputs (the "bad-input campaign" of the resilience issue):
// the control socket of an in-process registerd, and the two serial line framers (the card terminal's
// ECR decoder and the serial scanner's line decoder). Every failing check names its seed; replay one
// with `FUZZ_SEED=<seed> npx tap test/fuzz/bad-input.test.ts`.
import t, { type Test } from 'tap';
import { createConnection, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseConfig } from '../../appliance/config.js';
import { startRegisterd, type Daemon } from '../../appliance/registerd.js';
import { ErrorCodes } from '../../appliance/errors.js';
import type { Logger } from '../../appliance/log.js';
import { METHODS } from '../../appliance/till/register.js';
import { nodeFs } from '../../appliance/journal/fs.js';
import { verifyJournal } from '../../appliance/journal/verify.js';
import { DEFAULT_MAX_LINE_BYTES } from '../../appliance/control/server.js';
import { SimulatedCardTerminal } from '../../appliance/till/card.js';
import {
  EcrFramer,
  MAX_LINE_BYTES as ECR_MAX_LINE_BYTES,
} from '../../appliance/devices/terminal/ecr-protocol.js';
import { LineScanDecoder, LINE_DECODER_DEFAULTS } from '../../appliance/devices/scanner/line-decoder.js';
import type { ScanEvent } from '../../appliance/devices/scanner/hid-decoder.js';
import { DEMO_CATALOG_FILE, DEMO_CASHIERS_FILE, PINS, code, demoCatalog } from '../support/till-fixtures.js';
import { Rng } from '../support/rng.js';

const FILE = 'test/fuzz/bad-input.test.ts';
const replaySeed = process.env.FUZZ_SEED;
if (replaySeed !== undefined && !/^\d+$/.test(replaySeed)) throw new Error(`FUZZ_SEED must be an integer`);
const seeds = (fixed: number[]): number[] => (replaySeed === undefined ? fixed : [Number(replaySeed)]);

/** Runs one seed as its own subtest; a failure prints how to replay it. */
function fuzz(t: Test, name: string, seed: number, body: (t: Test, rng: Rng) => Promise<void> | void) {
  return t.test(`${name}, seed ${seed}`, async (t) => {
    try {
      await body(t, new Rng(seed));
    } finally {
      if (!t.passing()) t.comment(`replay: FUZZ_SEED=${seed} npx tap ${FILE}`);
    }
  });
}

// ---- control socket ------------------------------------------------------------------------------

/** Every code registerd may answer with: the ones in appliance/errors.ts, INTERNAL being a bug. */
const DOCUMENTED = new Set(Object.keys(ErrorCodes).filter((c) => c !== 'INTERNAL'));
/** Refusals the protocol says are journaled (login failures, refused approvals, card outcomes). */
const JOURNALED_REFUSALS = new Set([
  'WRONG_PIN',
  'LOCKED_OUT',
  'APPROVAL_REFUSED',
  'CARD_DECLINED',
  'CARD_OFFLINE_LIMIT',
  'CARD_PENDING',
]);
const READ_ONLY = new Set(['status', 'shift.report', 'receipt.get', 'till.info', 'subscribe']);
const KNOWN = new Set<string>(METHODS);
const BARCODES = demoCatalog.products.flatMap((p) => p.barcodes);
const SKUS = demoCatalog.products.map((p) => p.sku);
const ESPRESSO = code('COF-250');
const CORRECT_PINS = new Set<string>(Object.values(PINS));

interface Answer {
  id?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown; details?: unknown };
  event?: unknown;
  data?: unknown;
}

/** A raw line client: answers and pushes apart, every line checked to be JSON. */
class Conn {
  private buf = '';
  readonly answers: Answer[] = [];
  readonly pushes: Answer[] = [];
  readonly garbage: string[] = [];
  private wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let msg: Answer;
        try {
          msg = JSON.parse(line) as Answer;
        } catch {
          this.garbage.push(line.slice(0, 200));
          continue;
        }
        if (msg && typeof msg === 'object' && 'event' in msg && !('id' in msg)) this.pushes.push(msg);
        else this.answers.push(msg);
      }
      this.wake?.();
    });
    socket.on('error', () => {}); // EPIPE after LINE_TOO_LONG: the close is what the test looks at
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  static open(socketPath: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new Conn(socket));
      });
    });
  }

  async write(bytes: Buffer): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** Waits until `n` answers are in (or the connection closed); a deadline, not a sleep. */
  async take(n: number, timeoutMs = 10_000): Promise<Answer[]> {
    const deadline = setTimeout(() => this.wake?.(), timeoutMs);
    const started = Date.now();
    try {
      while (this.answers.length < n && !this.closed && Date.now() - started < timeoutMs)
        await new Promise<void>((r) => (this.wake = r));
    } finally {
      clearTimeout(deadline);
      this.wake = undefined;
    }
    return this.answers.splice(0, n);
  }

  async closedByServer(timeoutMs = 10_000): Promise<boolean> {
    await this.take(Number.MAX_SAFE_INTEGER, timeoutMs).then((extra) => this.answers.unshift(...extra));
    return this.closed;
  }
}

type Expect =
  | { kind: 'blank' }
  | { kind: 'bad-request'; id: unknown }
  | { kind: 'subscribe'; id: unknown }
  | { kind: 'unknown-method'; id: unknown; method: string }
  | { kind: 'method'; id: unknown; method: string };

/** What the protocol says a line gets (docs/control-protocol.md, "Framing"). */
function expectFor(bytes: Buffer): Expect {
  const text = bytes.toString('utf8');
  if (!text.trim()) return { kind: 'blank' };
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return { kind: 'bad-request', id: null };
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return { kind: 'bad-request', id: null };
  const { id, method } = msg as Record<string, unknown>;
  const usable = typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
  if (id !== undefined && !usable) return { kind: 'bad-request', id: null };
  const echo = usable ? id : null;
  if (typeof method !== 'string' || method === '') return { kind: 'bad-request', id: echo };
  if (method === 'subscribe') return { kind: 'subscribe', id: echo };
  if (!KNOWN.has(method)) return { kind: 'unknown-method', id: echo, method };
  return { kind: 'method', id: echo, method };
}

const PRINTABLE = 'abcxyzABCXYZ0123456789 -_./:+$%#@!?ßé€中';
function str(rng: Rng, lo: number, hi: number, alphabet = PRINTABLE): string {
  const n = rng.int(lo, hi);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[rng.int(0, alphabet.length - 1)]!;
  return s;
}

function randomNumber(rng: Rng): number {
  return rng.pick([
    0,
    1,
    -1,
    rng.int(-1000, 1000),
    rng.int(1, 100_000_000),
    rng.int(-2_000_000_000, 2_000_000_000) / 7,
    0.5,
    -0.25,
    1e-9,
    2 ** 53 + 2,
    -(2 ** 53),
    1e21,
    1e300,
    100_000_001,
    10_001,
  ]);
}

function randomString(rng: Rng): string {
  const pin = (): string => {
    const p = str(rng, 4, 8, '0123456789');
    return CORRECT_PINS.has(p) ? p + '0' : p;
  };
  return rng.pick([
    () => '',
    () => str(rng, 1, 20),
    () => 'x'.repeat(10 * 1024),
    () => str(rng, 1, 5, '\u0000\u0001\u001b\u007f\t\r\u2028\ud800'),
    () => rng.pick(BARCODES),
    () => rng.pick(SKUS),
    () => rng.pick(['ana', 'ben', 'mia', 'zed', 'MIA', '__proto__', 'constructor']).replace(/^ana$/, 'ann'),
    pin,
    () => rng.pick(['cash', 'card', 'percent', 'amount', 'check']),
    () => String(rng.int(-5, 50)),
    () => '01890a5d-ac96-774b-bcce-b302099a8057',
  ])();
}

/** A JSON value of any shape, biased towards what the methods read. */
function randomValue(rng: Rng, depth = 0): unknown {
  const leaf = depth >= 3;
  switch (rng.int(0, leaf ? 4 : 7)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
    case 3:
      return randomNumber(rng);
    case 4:
      return randomString(rng);
    case 5:
      return Array.from({ length: rng.int(0, 4) }, () => randomValue(rng, depth + 1));
    case 6:
      return randomParams(rng, depth + 1);
    default: {
      // nested deep
      let v: unknown = randomValue(rng, 3);
      for (let i = rng.int(1, 40); i > 0; i--) v = rng.chance(0.5) ? [v] : { a: v };
      return v;
    }
  }
}

const PARAM_KEYS = [
  'cashierId',
  'pin',
  'floatCounts',
  'counts',
  'code',
  'sku',
  'qty',
  'priceMinor',
  'lineId',
  'kind',
  'value',
  'amountMinor',
  'receiptNo',
  'saleId',
  'lines',
  'tender',
  'reason',
  'approval',
  'managerId',
  '__proto__',
];

function randomParams(rng: Rng, depth = 0): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  for (let i = rng.int(0, 4); i > 0; i--) {
    const key = rng.pick(PARAM_KEYS);
    let value: unknown;
    if (key === 'approval' && rng.chance(0.7))
      value = { managerId: rng.pick(['mia', 'ben', 'zed', randomString(rng)]), pin: randomString(rng) };
    else if ((key === 'floatCounts' || key === 'counts') && rng.chance(0.6))
      value = { [rng.pick(['1000', '200', '5', '0', '1234567', 'x', '-1', '1.5'])]: randomValue(rng, 3) };
    else if (key === 'lines' && rng.chance(0.5))
      value = [{ lineId: randomValue(rng, 3), qty: randomValue(rng, 3) }];
    else value = randomValue(rng, depth + 1);
    // defineProperty, so that a "__proto__" key really goes out on the wire
    Object.defineProperty(p, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return p;
}

/** Params close to what the method takes: the right keys, values right, wrong or out of range. */
function plausibleParams(rng: Rng, method: string): Record<string, unknown> {
  const maybe = <T>(good: () => T): unknown => (rng.chance(0.7) ? good() : randomValue(rng, 2));
  const amount = () => (rng.chance(0.6) ? rng.int(1, 5000) : randomNumber(rng));
  const approval = () => ({ managerId: rng.pick(['mia', 'ben', 'zed']), pin: randomString(rng) });
  const counts = () => ({ [rng.pick(['1000', '200', '50', '5'])]: rng.int(0, 20) });
  const table: Record<string, Record<string, unknown>> = {
    'cashier.login': {
      cashierId: maybe(() => rng.pick(['ben', 'mia', 'zed', 'x'.repeat(33)])),
      pin: maybe(() => randomString(rng)),
    },
    'shift.open': { floatCounts: maybe(counts) },
    'shift.close': { counts: maybe(counts), approval: maybe(approval) },
    'sale.scan': { code: maybe(() => rng.pick(BARCODES)) },
    'sale.add': {
      sku: maybe(() => rng.pick(SKUS)),
      qty: maybe(() => rng.int(1, 5)),
      priceMinor: maybe(amount),
    },
    'sale.setQty': { lineId: maybe(() => String(rng.int(1, 4))), qty: maybe(amount) },
    'sale.voidLine': { lineId: maybe(() => String(rng.int(1, 4))), approval: maybe(approval) },
    'sale.discount': { kind: maybe(() => rng.pick(['percent', 'amount'])), value: maybe(amount) },
    'sale.tender': { kind: maybe(() => rng.pick(['cash', 'card'])), amountMinor: maybe(amount) },
    'sale.cancel': { approval: maybe(approval) },
    'sale.refund': {
      receiptNo: maybe(() => rng.int(1, 4)),
      tender: maybe(() => rng.pick(['cash', 'card'])),
      approval: maybe(approval),
    },
    'cash.payout': {
      amountMinor: maybe(amount),
      reason: maybe(() => str(rng, 1, 80)),
      approval: maybe(approval),
    },
    'cash.paidIn': { amountMinor: maybe(amount), reason: maybe(() => str(rng, 1, 80)) },
    'drawer.open': { approval: maybe(approval) },
    'receipt.reprint': { receiptNo: maybe(() => rng.int(1, 4)) },
    'receipt.get': { receiptNo: maybe(() => rng.int(1, 4)) },
  };
  return table[method] ?? randomParams(rng);
}

function randomId(rng: Rng, n: number): unknown {
  if (rng.chance(0.75)) return rng.pick([n, `r${n}`, n + 0.5, undefined]);
  return rng.pick([
    () => n,
    () => `r${n}`,
    () => n + 0.5,
    () => undefined,
    () => null,
    () => ({ n }),
    () => [n],
    () => true,
    () => '',
  ])();
}

const UNKNOWN_METHODS = [
  'sale',
  'sale.scan2',
  'SALE.SCAN',
  ' status',
  'status ',
  'status\u0000',
  'shift',
  'x',
  'é',
];

/** One random request line (no newline in it). */
function randomLine(rng: Rng, n: number): Buffer {
  const request = (): Record<string, unknown> => {
    const req: Record<string, unknown> = {};
    const id = randomId(rng, n);
    if (id !== undefined) req.id = id;
    req.method = rng.chance(0.9) ? rng.pick(METHODS) : 'subscribe';
    if (rng.chance(0.85))
      req.params = rng.pick([
        () => plausibleParams(rng, req.method as string),
        () => plausibleParams(rng, req.method as string),
        () => randomParams(rng),
        () => randomValue(rng),
      ])();
    return req;
  };
  switch (rng.int(0, 13)) {
    case 0: {
      // random bytes
      const b = rng.bytes(rng.int(1, 300));
      for (let i = 0; i < b.length; i++) if (b[i] === 0x0a) b[i] = 0x00;
      return b;
    }
    case 1: {
      // truncated JSON
      const full = Buffer.from(JSON.stringify(request()));
      return full.subarray(0, rng.int(1, full.length - 1));
    }
    case 2: {
      // garbled JSON
      const b = Buffer.from(JSON.stringify(request()));
      for (let i = rng.int(1, 4); i > 0; i--) {
        b[rng.int(0, b.length - 1)] = rng.pick([
          0x00,
          0x22,
          0x7b,
          0x7d,
          0x5c,
          0xff,
          0x2c,
          rng.int(0x20, 0x7e),
        ]);
      }
      return b;
    }
    case 3: {
      // valid JSON of the wrong shape
      const v = rng.pick<unknown>([
        [request()],
        randomNumber(rng),
        null,
        true,
        'status',
        {},
        { id: n },
        { id: n, method: randomValue(rng, 2) },
        { id: n, method: '' },
        { id: n, params: randomParams(rng) },
      ]);
      return Buffer.from(JSON.stringify(v));
    }
    case 4: {
      // an unknown method
      const method = rng.chance(0.5) ? rng.pick(UNKNOWN_METHODS) : str(rng, 1, rng.chance(0.1) ? 2000 : 20);
      return Buffer.from(JSON.stringify({ id: n, method, params: randomParams(rng) }));
    }
    case 5:
      // a blank line: no answer at all
      return Buffer.from(rng.pick([' ', '\t', '\r', ' \r', '   \t ']));
    default:
      // a real method with random, wrong-typed, out-of-range or huge params
      return Buffer.from(JSON.stringify(request()));
  }
}

/** A request padded with spaces to exactly `bytes` bytes. */
function padded(id: number, bytes: number): Buffer {
  const head = `{"id":${id},"method":"status","params":{"pad":"`;
  const tail = '"}}';
  return Buffer.from(head + 'p'.repeat(bytes - head.length - tail.length) + tail);
}

/** Only printable ASCII in a test name: a U+2028 or a C1 control breaks the TAP stream. */
const ascii = (s: string): string =>
  s.replace(/[^\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));

/** Splits bytes at random points. */
function chunks(rng: Rng, bytes: Buffer): Buffer[] {
  const cuts = new Set<number>();
  for (let i = rng.int(0, 4); i > 0 && bytes.length > 1; i--) cuts.add(rng.int(1, bytes.length - 1));
  const at = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  return at.slice(1).map((end, i) => bytes.subarray(at[i]!, end));
}

function recordingLog() {
  const errors: string[] = [];
  const log: Logger = {
    info() {},
    warn() {},
    error(fields, msg) {
      errors.push(`${msg} ${JSON.stringify(fields).slice(0, 500)}`);
    },
  };
  return { log, errors };
}

async function startTill(t: Test) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fuzz-'));
  const config = parseConfig({
    deviceId: 'fuzz-till',
    storeId: 'demo-store',
    stateDir: path.join(dir, 'state'),
    clock: { assumeTrusted: true },
    seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
  });
  const { log, errors } = recordingLog();
  let daemon: Daemon | undefined = await startRegisterd(config, {
    log,
    terminal: new SimulatedCardTerminal(),
  });
  const stop = async () => {
    const d = daemon;
    daemon = undefined;
    await d?.stop();
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { daemon, errors, stop, journalDir: path.join(config.stateDir, 'journal') };
}

const CONTROL_LINES = 250; // per seed; two seeds: 500 per run

t.test('control socket: random request lines', async (t) => {
  for (const seed of seeds([7001, 7002])) {
    await fuzz(t, 'control socket', seed, async (t, rng) => {
      const { daemon, errors, stop, journalDir } = await startTill(t);
      let conn = await Conn.open(daemon.socketPath);
      t.teardown(() => conn.socket.destroy());
      let n = 0;
      const where = (i: number, line: Buffer) =>
        `[seed ${seed} #${i}] ${ascii(JSON.stringify(line.toString('utf8').slice(0, 160)))}`;

      /** One call made by the test itself (setup, keep-alive, the final sale): must succeed. */
      const call = async (method: string, params: object = {}): Promise<Record<string, unknown>> => {
        const id = `t${++n}`;
        await conn.write(Buffer.from(JSON.stringify({ id, method, params }) + '\n'));
        const [a] = await conn.take(1);
        t.same(a?.id, id, `[seed ${seed}] ${method} answered with its id`);
        if (!a || a.error || typeof a.result !== 'object' || a.result === null)
          t.fail(`[seed ${seed}] ${method} failed: ${JSON.stringify(a)}`);
        return (a?.result ?? {}) as Record<string, unknown>;
      };
      /** Logged in as ana with a shift open, whatever the fuzz did (logout, shift.close, …). */
      const keepReady = async () => {
        const s = await call('status');
        t.equal(s.lastSeq, daemon.journal.lastSeq, `[seed ${seed}] status answers, lastSeq current`);
        if (!s.session) await call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
        if (!s.shift) await call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
      };

      await keepReady();
      let sent = 0;
      const tally: Record<string, number> = {};
      while (sent < CONTROL_LINES) {
        const roll = rng.int(0, 99);
        if (roll < 3) {
          // a line just over the bound: LINE_TOO_LONG, id null, closed; nothing journaled
          const line = padded(++sent, DEFAULT_MAX_LINE_BYTES + rng.int(1, 64));
          const before = daemon.journal.lastSeq;
          for (const piece of chunks(rng, Buffer.concat([line, Buffer.from('\n')]))) await conn.write(piece);
          const answers = await conn.take(1);
          t.match(
            answers,
            [{ id: null, error: { code: 'LINE_TOO_LONG' } }],
            where(sent, line.subarray(0, 60)),
          );
          t.ok(await conn.closedByServer(), `[seed ${seed} #${sent}] closed after LINE_TOO_LONG`);
          t.same(conn.answers, [], `[seed ${seed} #${sent}] nothing after LINE_TOO_LONG`);
          t.equal(daemon.journal.lastSeq, before, `[seed ${seed} #${sent}] LINE_TOO_LONG journals nothing`);
          tally.LINE_TOO_LONG = (tally.LINE_TOO_LONG ?? 0) + 1;
          conn.socket.destroy();
          conn = await Conn.open(daemon.socketPath);
          await keepReady();
          continue;
        }
        // a batch of 1–7 lines and a status of our own (8 may wait on one connection), in random pieces
        const batch: Buffer[] = [];
        for (let k = rng.int(1, 7); k > 0 && sent < CONTROL_LINES; k--)
          batch.push(roll < 6 ? padded(++sent, DEFAULT_MAX_LINE_BYTES) : randomLine(rng, ++sent));
        const first = sent - batch.length + 1;
        const expects = batch.map(expectFor);
        const answered = expects.filter((e) => e.kind !== 'blank').length;
        const before = daemon.journal.lastSeq;
        const wire = Buffer.concat(batch.flatMap((b) => [b, Buffer.from('\n')]));
        for (const piece of chunks(rng, wire)) await conn.write(piece);
        // then a status of our own: its answer comes last, so an extra answer to the batch shows
        const sentinel = `s${sent}`;
        await conn.write(Buffer.from(JSON.stringify({ id: sentinel, method: 'status' }) + '\n'));
        const answers = await conn.take(answered + 1);
        t.same(conn.garbage, [], `[seed ${seed} #${first}] every answer line is JSON`);
        let journaling = false;
        let a = 0;
        for (let j = 0; j < batch.length; j++) {
          const e = expects[j]!;
          if (e.kind === 'blank') continue;
          const ans = answers[a++];
          const w = where(first + j, batch[j]!);
          if (!ans) {
            t.fail(`${w}: no answer (connection closed: ${conn.closed})`);
            continue;
          }
          t.same(ans.id, e.id, `${w}: id echoed`);
          const isError = ans.error !== undefined;
          const code = isError ? String(ans.error?.code) : 'result';
          tally[code] = (tally[code] ?? 0) + 1;
          t.ok(isError !== 'result' in ans, `${w}: a result or an error, not both`);
          if (isError) {
            t.ok(
              DOCUMENTED.has(code),
              `${w}: documented code (${ascii(code)}) ${ascii(JSON.stringify(ans.error))}`,
            );
            t.equal(typeof ans.error?.message, 'string', `${w}: a message`);
          }
          if (e.kind === 'bad-request') t.equal(code, 'BAD_REQUEST', `${w}: BAD_REQUEST`);
          else if (e.kind === 'unknown-method') t.equal(code, 'UNKNOWN_METHOD', `${w}: UNKNOWN_METHOD`);
          else if (e.kind === 'subscribe') t.same(ans.result, { subscribed: true }, `${w}: subscribed`);
          else
            t.notOk(
              ['BAD_REQUEST', 'UNKNOWN_METHOD', 'LINE_TOO_LONG', 'BUSY'].includes(code),
              `${w}: a method's answer (${ascii(code)})`,
            );
          if (isError ? JOURNALED_REFUSALS.has(code) : e.kind === 'method' && !READ_ONLY.has(e.method))
            journaling = true;
        }
        const last = answers[answered];
        t.match(
          last,
          { id: sentinel, result: { deviceId: 'fuzz-till' } },
          `[seed ${seed} #${sent}] status after`,
        );
        t.same(conn.answers, [], `[seed ${seed} #${first}] no answer beyond one per line`);
        // Refusals (other than the journaled ones) and read-only calls write nothing.
        if (!journaling)
          t.equal(daemon.journal.lastSeq, before, `[seed ${seed} #${first}..${sent}] nothing journaled`);
        t.notOk(conn.closed, `[seed ${seed} #${sent}] the connection stays open`);
        const pushes = conn.pushes.splice(0);
        t.ok(
          pushes.every(
            (p) => p.event === 'state' && typeof (p.data as { lastSeq?: unknown })?.lastSeq === 'number',
          ),
          `[seed ${seed} #${sent}] the only lines without an id are state pushes`,
        );
        await keepReady();
      }
      t.comment(`seed ${seed}: ${JSON.stringify(tally)}`);

      // A normal sale still works: finish whatever the fuzz left open, then one of our own.
      const status = await call('status');
      const open = status.sale as { lines: unknown[]; tenders: unknown[] } | null;
      if (open && open.lines.length === 0 && open.tenders.length === 0)
        await call('sale.scan', { code: ESPRESSO });
      if (open)
        t.match(
          await call('sale.tender', { kind: 'cash' }),
          { completed: true },
          `[seed ${seed}] left-over sale`,
        );
      const receiptNo = (await call('status')).receiptNo as number;
      t.match(
        await call('sale.scan', { code: ESPRESSO }),
        { line: { sku: 'COF-250' } },
        `[seed ${seed}] scan`,
      );
      t.match(
        await call('sale.tender', { kind: 'cash', amountMinor: 1000 }),
        { completed: true, receiptNo: receiptNo + 1 },
        `[seed ${seed}] a normal cash sale completes`,
      );
      t.same(errors, [], `[seed ${seed}] registerd logged no error (no INTERNAL)`);

      const lastSeq = daemon.journal.lastSeq;
      conn.socket.destroy();
      await stop();
      const report = verifyJournal(nodeFs, journalDir);
      t.match(
        report,
        { ok: true, problem: null, lastSeq, tornTailBytes: 0 },
        `[seed ${seed}] the journal verifies`,
      );
    });
  }
});

t.test('control socket: method names that are Object.prototype members are unknown methods', async (t) => {
  const { daemon, errors } = await startTill(t);
  const conn = await Conn.open(daemon.socketPath);
  t.teardown(() => conn.socket.destroy());
  const names = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf'];
  await conn.write(Buffer.from(names.map((method, id) => JSON.stringify({ id, method }) + '\n').join('')));
  const answers = await conn.take(names.length);
  names.forEach((method, id) =>
    t.match(answers[id], { id, error: { code: 'UNKNOWN_METHOD' } }, `${method}: UNKNOWN_METHOD`),
  );
  t.same(errors, [], 'no error logged');
});

// ---- serial line framers -------------------------------------------------------------------------

/** Splits a stream at random points (0 to many), or byte by byte. */
function randomChunking(rng: Rng, stream: Buffer): Buffer[] {
  if (stream.length < 4096 && rng.chance(0.2)) return [...stream].map((b) => Buffer.of(b));
  const cuts = new Set<number>();
  for (let i = rng.int(0, 60); i > 0 && stream.length > 1; i--) cuts.add(rng.int(1, stream.length - 1));
  const at = [0, ...[...cuts].sort((a, b) => a - b), stream.length];
  return at.slice(1).map((end, i) => stream.subarray(at[i]!, end));
}

/** Random bytes with no LF (and no CR unless allowed). */
function noiseBytes(rng: Rng, n: number, allowCr: boolean): Buffer {
  const b = rng.bytes(n);
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a || (!allowCr && b[i] === 0x0d)) b[i] = 0x00;
  return b;
}

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}
const heldBytes = (): number => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

type EcrExpect = { kind: 'message'; txn: string } | { kind: 'error'; reasons: string[]; bytes?: number };
const ALL_ECR_REASONS = ['too-long', 'not-json', 'version', 'invalid', 'pan'];
const PAN = '4111111111111111';

function ecrFrame(rng: Rng, txn: string): Record<string, unknown> {
  return rng.pick([
    () => ({ v: 1, type: 'ack', txn }),
    () => ({ v: 1, type: 'status', txn, message: str(rng, 1, 60, 'abcdefXYZ äöü€ .,:!') }),
    () => ({
      v: 1,
      type: 'payment.result',
      txn,
      outcome: 'approved',
      mode: 'online',
      authCode: '123456',
      maskedPan: '************4242',
      brand: 'VISA',
    }),
    () => ({ v: 1, type: 'status.reply', txn, state: 'unknown' }),
    () => ({ v: 1, type: 'saf.result', txn, outcome: 'declined' }),
  ])();
}

function ecrStream(rng: Rng, max: number): { stream: Buffer; expected: EcrExpect[]; valid: number } {
  const parts: Buffer[] = [];
  const expected: EcrExpect[] = [];
  let valid = 0;
  const items = rng.int(20, 80);
  for (let i = 0; i < items; i++) {
    const crlf = rng.chance(0.3);
    const end = Buffer.from(crlf ? '\r\n' : '\n');
    /** A garbage line; `reasons` is what the decoder may call it. */
    const bad = (content: Buffer, reasons: string[]) => {
      const raw = crlf ? content.length + 1 : content.length;
      const line = crlf ? content : content.at(-1) === 0x0d ? content.subarray(0, -1) : content;
      if (raw > max) expected.push({ kind: 'error', reasons: ['too-long'], bytes: raw });
      else if (line.length > 0) expected.push({ kind: 'error', reasons });
      parts.push(content, end);
    };
    const txn = `fz-${i}`;
    const json = (o: unknown) => Buffer.from(JSON.stringify(o));
    switch (rng.int(0, 12)) {
      case 0:
      case 1:
      case 2:
      case 3: {
        // a valid frame, sometimes padded with spaces up to exactly the bound
        let line = json(ecrFrame(rng, txn));
        if (rng.chance(0.1))
          line = Buffer.concat([line, Buffer.alloc(max - line.length - (crlf ? 1 : 0), 0x20)]);
        parts.push(line, end);
        expected.push({ kind: 'message', txn });
        valid++;
        break;
      }
      case 4:
        bad(noiseBytes(rng, rng.int(1, 400), true), ALL_ECR_REASONS);
        break;
      case 5:
        // a long run without a newline, just over the bound or far over
        bad(noiseBytes(rng, rng.chance(0.5) ? max + rng.int(1, 3) : rng.int(max + 1, 40_000), true), [
          'too-long',
        ]);
        break;
      case 6: {
        // a frame with a NUL or an invalid UTF-8 byte in it
        const b = json(ecrFrame(rng, `bad-${i}`));
        const at = rng.int(0, b.length);
        bad(
          Buffer.concat([b.subarray(0, at), Buffer.of(rng.pick([0x00, 0xff, 0xc3, 0x80])), b.subarray(at)]),
          ['not-json'],
        );
        break;
      }
      case 7: {
        const b = json(ecrFrame(rng, `bad-${i}`));
        bad(b.subarray(0, rng.int(1, b.length - 1)), ['not-json']);
        break;
      }
      case 8:
        bad(json({ ...ecrFrame(rng, `bad-${i}`), v: rng.pick([0, 2, '1', null]) }), ['version']);
        break;
      case 9:
        bad(json({ ...ecrFrame(rng, `bad-${i}`), extra: 1 }), ['invalid']);
        break;
      case 10:
        bad(
          json({
            v: 1,
            type: 'status',
            txn: `bad-${i}`,
            message: `card ${PAN.replace(/(\d{4})/g, '$1 ').trim()}`,
          }),
          ['pan'],
        );
        break;
      case 11:
        bad(Buffer.from(rng.pick(['[1,2]', '42', '"ack"', 'null', 'true'])), ['not-json']);
        break;
      default:
        // blank lines and stray CRs
        parts.push(Buffer.from(rng.pick(['\n', '\r\n', '\n\n', ''])));
    }
  }
  return { stream: Buffer.concat(parts), expected, valid };
}

t.test('ECR framer: random byte streams, chunked anywhere', async (t) => {
  for (const seed of seeds([8001, 8002, 8003, 8004])) {
    await fuzz(t, 'ECR framer', seed, (t, rng) => {
      const max = rng.chance(0.5) ? ECR_MAX_LINE_BYTES : rng.int(512, 4096);
      for (let round = 0; round < 10; round++) {
        const { stream, expected } = ecrStream(rng, max);
        for (let c = 0; c < 3; c++) {
          const framer = new EcrFramer('terminal', max);
          const events: ReturnType<typeof framer.push> = [];
          const pieces = randomChunking(rng, stream);
          let threw: unknown;
          try {
            for (const piece of pieces) events.push(...framer.push(piece));
          } catch (err) {
            threw = err;
          }
          const w = `[seed ${seed} round ${round} chunking ${c}: ${pieces.length} pieces, max ${max}]`;
          t.equal(threw, undefined, `${w} no throw`);
          const got = events.map((e) =>
            e.kind === 'message'
              ? { kind: 'message', txn: e.message.txn }
              : { kind: 'error', reason: e.error.reason, bytes: e.error.bytes },
          );
          const want = expected.map((e) =>
            e.kind === 'message' ? e : { kind: 'error', reason: e.reasons.join('|'), bytes: e.bytes },
          );
          const matches = (g: (typeof got)[number], x: (typeof want)[number] | undefined): boolean => {
            if (!x || x.kind !== g.kind) return false;
            if (x.kind === 'message') return (g as { txn: string }).txn === (x as { txn: string }).txn;
            const ge = g as { reason: string; bytes: number };
            const xe = x as { reason: string; bytes?: number };
            return (
              xe.reason.split('|').includes(ge.reason) && (xe.bytes === undefined || xe.bytes === ge.bytes)
            );
          };
          const first = got.findIndex((g, i) => !matches(g, want[i]));
          if (first >= 0 || got.length !== want.length) {
            const at = first >= 0 ? first : Math.min(got.length, want.length);
            t.fail(`${w} events as expected, first difference at ${at}`, {
              got: got.slice(Math.max(0, at - 1), at + 3),
              want: want.slice(Math.max(0, at - 1), at + 3),
              lengths: [got.length, want.length],
            });
          } else t.pass(`${w} every valid frame once, in order; every bad line one error`);
          t.notOk(
            events.some((e) => JSON.stringify(e).includes(PAN.slice(0, 8))),
            `${w} no event quotes the card number`,
          );
        }
      }
    });
  }
});

type ScanExpect = { kind: 'code'; code: string } | { kind: 'rejected'; reason: string; partial?: string };

function scanStream(rng: Rng, max: number): { stream: Buffer; expected: ScanExpect[] } {
  const parts: Buffer[] = [];
  const expected: ScanExpect[] = [];
  const utf8 = (s: string) => Buffer.from(s, 'utf8');
  const items = rng.int(20, 80);
  for (let i = 0; i < items; i++) {
    const end = utf8(rng.pick(['\r', '\n', '\r\n', '\r\n\r\n', '\n\r', '\n\n']));
    switch (rng.int(0, 6)) {
      case 0:
      case 1:
      case 2: {
        // a valid code, sometimes exactly the bound long
        const prefix = `${i}:`;
        const len = rng.chance(0.15) ? max : rng.int(prefix.length, Math.min(max, 40));
        const text = (prefix + str(rng, len, len, 'ABCXYZ0123456789 -./+$%ßé€')).slice(0, Math.max(len, 1));
        parts.push(utf8(text), end);
        expected.push({ kind: 'code', code: text });
        break;
      }
      case 3: {
        // random bytes without line ends, with at least one byte that can never be barcode text
        const b = noiseBytes(rng, rng.int(1, 200), false);
        b[rng.int(0, b.length - 1)] = rng.pick([0x00, 0x1b, 0x7f, 0xff, 0x80, 0x09]);
        const chars = new TextDecoder().decode(b);
        expected.push({ kind: 'rejected', reason: chars.length > max ? 'too-long' : 'not-printable' });
        parts.push(b, end);
        break;
      }
      case 4: {
        // a long run without a line end: printable, so only its length is wrong
        const n = rng.chance(0.5) ? max + 1 : rng.int(max + 1, 40_000);
        const text = str(rng, n, n, '0123456789');
        expected.push({ kind: 'rejected', reason: 'too-long', partial: text.slice(0, max) });
        parts.push(utf8(text), end);
        break;
      }
      case 5: {
        // a valid code with a NUL or control character inside
        const text = `${i}:ABC`;
        const at = rng.int(0, text.length);
        expected.push({ kind: 'rejected', reason: 'not-printable', partial: text.slice(0, at) });
        parts.push(
          utf8(text.slice(0, at) + rng.pick(['\u0000', '\u001b', '\u0085', '\t']) + text.slice(at)),
          end,
        );
        break;
      }
      default:
        parts.push(utf8(rng.pick(['\r\n', '\n', '\r', '\n\r\n\r'])));
    }
  }
  return { stream: Buffer.concat(parts), expected };
}

t.test('scanner line decoder: random byte streams, chunked anywhere', async (t) => {
  for (const seed of seeds([9001, 9002, 9003, 9004])) {
    await fuzz(t, 'scanner line decoder', seed, (t, rng) => {
      const max = rng.chance(0.5) ? LINE_DECODER_DEFAULTS.maxLength : rng.int(16, 512);
      for (let round = 0; round < 10; round++) {
        const { stream, expected } = scanStream(rng, max);
        for (let c = 0; c < 3; c++) {
          const decoder = new LineScanDecoder({ maxLength: max });
          const events: ScanEvent[] = [];
          const pieces = randomChunking(rng, stream);
          let threw: unknown;
          try {
            for (const piece of pieces) events.push(...decoder.pushChunk(piece));
          } catch (err) {
            threw = err;
          }
          const w = `[seed ${seed} round ${round} chunking ${c}: ${pieces.length} pieces, max ${max}]`;
          t.equal(threw, undefined, `${w} no throw`);
          const diff = events.findIndex((e, i) => {
            const x = expected[i];
            if (!x || x.kind !== e.kind) return true;
            if (x.kind === 'code') return (e as { code: string }).code !== x.code;
            const r = e as Extract<ScanEvent, { kind: 'rejected' }>;
            return r.reason !== x.reason || (x.partial !== undefined && r.partial !== x.partial);
          });
          if (diff >= 0 || events.length !== expected.length)
            t.fail(`${w} events as expected, first difference at ${diff}`, {
              got: events.slice(Math.max(0, diff - 1), diff + 3),
              want: expected.slice(Math.max(0, diff - 1), diff + 3),
              lengths: [events.length, expected.length],
            });
          else t.pass(`${w} every valid code once, in order; every bad line one rejection`);
          t.ok(
            events.every((e) => (e.kind === 'code' ? e.code : e.partial).length <= max),
            `${w} nothing longer than the bound comes out`,
          );
        }
      }
    });
  }
});

t.test('memory stays bounded however long a line runs without its end', async (t) => {
  for (const seed of seeds([10_001])) {
    await fuzz(t, 'memory bound', seed, (t, rng) => {
      const TOTAL = 32 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024);
      for (let i = 0; i < chunk.length; i++) chunk[i] = rng.pick([0x30 + rng.int(0, 9), 0x00, 0xff, 0x7b]);
      for (let i = 0; i < chunk.length; i++) if (chunk[i] === 0x0a || chunk[i] === 0x0d) chunk[i] = 0x31;

      // ECR: a terminal babbling 32 MiB without a newline
      const framer = new EcrFramer('terminal');
      let base = heldBytes();
      let events = 0;
      for (let fed = 0; fed < TOTAL; fed += chunk.length) events += framer.push(chunk).length;
      const ecrGrowth = heldBytes() - base;
      t.equal(events, 0, `[seed ${seed}] ECR: nothing comes out before the newline`);
      t.ok(
        ecrGrowth < 4 * 1024 * 1024,
        `[seed ${seed}] ECR holds at most about its bound (grew ${ecrGrowth} bytes)`,
      );
      const after = framer.push(Buffer.from('\n{"v":1,"type":"ack","txn":"after"}\n'));
      t.match(
        after,
        [
          { kind: 'error', error: { reason: 'too-long', bytes: TOTAL } },
          { kind: 'message', message: { txn: 'after' } },
        ],
        `[seed ${seed}] ECR: one too-long error, then the next frame`,
      );

      // scanner: the same 32 MiB, printable this time so that only the length is wrong
      const digits = Buffer.from(chunk.map((b) => 0x30 + (b % 10)));
      const decoder = new LineScanDecoder();
      base = heldBytes();
      let scans = 0;
      for (let fed = 0; fed < TOTAL; fed += digits.length) scans += decoder.pushChunk(digits).length;
      const scanGrowth = heldBytes() - base;
      t.equal(scans, 0, `[seed ${seed}] scanner: nothing comes out before the line end`);
      t.ok(
        scanGrowth < 4 * 1024 * 1024,
        `[seed ${seed}] scanner holds at most about its bound (grew ${scanGrowth} bytes)`,
      );
      t.match(
        decoder.pushChunk('\r\n96385074\r\n'),
        [
          { kind: 'rejected', reason: 'too-long', partial: digits.toString('latin1', 0, 64) },
          { kind: 'code', code: '96385074' },
        ],
        `[seed ${seed}] scanner: one too-long rejection, then the next code`,
      );
    });
  }
});
