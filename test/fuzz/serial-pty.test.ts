// Seeded junk on the serial lines of a live registerd (the bad-input campaign at the wire, issue 7): the
// real card terminal driver and serial scanner driver, each on a socat pty, the terminal simulator
// playing the terminal. Between junk rounds — binary bytes, over-long lines, half frames, control
// characters, chunked anywhere — a normal scan and a card sale must still work, exactly one charge
// each; every junk line is refused with its reason in registerd's log; the journal verifies at the
// end. The seed is printed; replay with `FUZZ_SEED=<seed> npx tap test/fuzz/serial-pty.test.ts`.
import t from 'tap';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SerialPortStream } from '@serialport/stream';
import { serialBinding } from '../../appliance/devices/serial-link.js';
import {
  MAX_LINE_BYTES as ECR_MAX_LINE_BYTES,
  encodeTerminalMessage,
} from '../../appliance/devices/terminal/ecr-protocol.js';
import { LINE_DECODER_DEFAULTS } from '../../appliance/devices/scanner/line-decoder.js';
import { nodeFs } from '../../appliance/journal/fs.js';
import { verifyJournal } from '../../appliance/journal/verify.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { ptyPair } from '../../scripts/sim/pty.js';
import { TerminalSimulator } from '../../scripts/sim/terminal-sim.js';
import { controlCaller, startDaemon } from '../support/registerd-process.js';
import { Rng, seedFromEnv } from '../support/rng.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE, PINS, code, demoCatalog } from '../support/till-fixtures.js';
import { waitFor } from '../support/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SEED = seedFromEnv('FUZZ_SEED');
/** Junk rounds, each followed by a normal scan and card sale. */
const ROUNDS = 6;
/** Junk pieces per line and round. */
const PIECES = 8;
const WAIT_MS = 15_000; // a bound on every wait; each normally ends in milliseconds

interface Status {
  devices: Record<string, { state: string }>;
  lastScan: { code: string; ok: boolean } | null;
  sale: { lines: { sku: string }[] } | null;
  pendingCard: unknown;
}

/** Every barcode of the catalog: junk must never be one (it would ring up, rightly). */
const VALID_CODES = new Set(demoCatalog.products.flatMap((p) => p.barcodes ?? []));

type Junk = { kind: string; bytes: Buffer };

/** Random bytes that make one line: no CR or LF inside, and a NUL somewhere (never barcode text). */
function oneLine(rng: Rng, maxBytes: number): Buffer {
  const bytes = Buffer.from(rng.bytes(rng.int(1, maxBytes)).map((b) => (b === 0x0a || b === 0x0d ? 0 : b)));
  bytes[rng.int(0, bytes.length - 1)] = 0;
  return bytes;
}

/** One piece of junk for the scanner's line (the decoder's bound: LINE_DECODER_DEFAULTS.maxLength). */
function scannerJunk(rng: Rng): Junk {
  const printable = (n: number) =>
    Array.from({ length: n }, () => String.fromCharCode(rng.int(0x21, 0x7e))).join('');
  switch (rng.int(0, 4)) {
    case 0:
      return { kind: 'binary', bytes: Buffer.concat([oneLine(rng, 200), Buffer.from('\r\n')]) };
    case 1:
      return {
        kind: 'over-long line',
        bytes: Buffer.from(`${printable(rng.int(LINE_DECODER_DEFAULTS.maxLength + 1, 5000))}\r\n`),
      };
    case 2: {
      // Half a barcode, cut by the line end: an unknown code, fed back, never a sale line.
      const real = rng.pick([...VALID_CODES]);
      let half = real.slice(0, rng.int(1, real.length - 1));
      if (VALID_CODES.has(half)) half += 'X';
      return { kind: 'half code', bytes: Buffer.from(`${half}\n`) };
    }
    case 3:
      return {
        kind: 'control characters',
        bytes: Buffer.from(`${printable(rng.int(0, 10))}\u0007\u001b[2J${printable(rng.int(0, 10))}\r`),
      };
    default: {
      let text = printable(rng.int(1, LINE_DECODER_DEFAULTS.maxLength));
      if (VALID_CODES.has(text)) text += 'X';
      return { kind: 'unknown code', bytes: Buffer.from(`${text}\r\n`) };
    }
  }
}

/** One piece of junk from the "terminal", always ending its line (so no real frame is glued to it). */
function terminalJunk(rng: Rng): Junk {
  const txn = `fuzz-${rng.int(0, 1e9)}`;
  switch (rng.int(0, 5)) {
    case 0:
      return { kind: 'binary', bytes: Buffer.concat([oneLine(rng, 300), Buffer.from('\n')]) };
    case 1:
      return {
        kind: 'over-long line',
        bytes: Buffer.from(
          `${'{"v":1,"type":"status",'.padEnd(rng.int(ECR_MAX_LINE_BYTES + 1, 20_000), 'x')}\n`,
        ),
      };
    case 2: {
      const frame = encodeTerminalMessage({ v: 1, type: 'ack', txn });
      return {
        kind: 'half frame',
        bytes: Buffer.concat([frame.subarray(0, rng.int(1, frame.length - 2)), Buffer.from('\n')]),
      };
    }
    case 3:
      return { kind: 'wrong version', bytes: Buffer.from(`${JSON.stringify({ v: 9, type: 'ack', txn })}\n`) };
    case 4:
      return {
        kind: 'unknown type',
        bytes: Buffer.from(`${JSON.stringify({ v: 1, type: 'reboot', txn })}\n`),
      };
    default:
      return { kind: 'JSON of the wrong shape', bytes: Buffer.from(`[${rng.int(0, 99)}, null, {"v":1}]\n`) };
  }
}

/** Writes bytes in random chunks: the drivers must frame across any split. */
async function chunked(rng: Rng, bytes: Buffer, write: (b: Buffer) => Promise<void>): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    const n = rng.int(1, Math.min(512, bytes.length - at));
    await write(bytes.subarray(at, at + n));
    at += n;
  }
}

t.test(`junk on the scanner and terminal lines of a live registerd, seed ${SEED}`, async (t) => {
  t.comment(`seed ${SEED} (replay: FUZZ_SEED=${SEED} npx tap test/fuzz/serial-pty.test.ts)`);
  const rng = new Rng(SEED);
  const dir = mkdtempSync(path.join(tmpdir(), 'fuzz-pty-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = await bundle(path.join(here, '../../appliance/registerd.ts'), dir);
  const termPty = await ptyPair(dir, 'term');
  const scanPty = await ptyPair(dir, 'scan');
  t.teardown(() => Promise.all([termPty.close(), scanPty.close()]));
  const terminal = new TerminalSimulator({ path: termPty.peer, backoff: { initialMs: 20, maxMs: 100 } });
  await terminal.start();
  t.teardown(() => terminal.stop());
  const scanner = new SerialPortStream({ binding: serialBinding, path: scanPty.peer, baudRate: 9600 });
  await once(scanner, 'open');
  t.teardown(() => new Promise((r) => scanner.close(() => r(undefined))));
  const scanWrite = (b: Buffer) =>
    new Promise<void>((resolve, reject) => scanner.write(b, (err) => (err ? reject(err) : resolve())));

  const config = path.join(dir, 'config.json');
  const stateDir = path.join(dir, 'state');
  writeFileSync(
    config,
    JSON.stringify({
      deviceId: 'till-fuzz',
      storeId: 'demo-store',
      stateDir,
      clock: { assumeTrusted: true },
      seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
      devices: {
        terminal: { kind: 'ecr', path: termPty.device },
        printer: { kind: 'none' },
        scanners: [{ kind: 'serial', path: scanPty.device }],
      },
    }),
  );
  const d = await startDaemon(bin, config);
  t.teardown(() => d.proc.kill('SIGKILL'));
  const call = controlCaller(path.join(stateDir, 'control.sock'), WAIT_MS);
  const status = async () => (await call('status')) as unknown as Status;
  /** registerd's log lines with this message. */
  const logged = (msg: string) =>
    d
      .log()
      .split('\n')
      .filter((l) => l.includes(`"msg":"${msg}"`)).length;

  await waitFor(
    'terminal and scanner up',
    async () => {
      const s = await status();
      return s.devices.terminal?.state === 'ok' && s.devices.scanner?.state === 'ok' && s;
    },
    { timeoutMs: WAIT_MS },
  );
  await call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
  await call('shift.open', { floatCounts: { '1000': 5 } });

  const kinds = new Map<string, number>();
  const products = demoCatalog.products.filter((p) => !p.openPrice && p.barcodes?.length);
  for (let round = 1; round <= ROUNDS; round++) {
    const scanRejectedBefore = logged('scan rejected');
    const ecrDroppedBefore = logged('ecr line broke the protocol; dropped');
    let scanRejects = 0;
    let ecrRejects = 0;
    for (let i = 0; i < PIECES; i++) {
      const s = scannerJunk(rng);
      kinds.set(`scanner ${s.kind}`, (kinds.get(`scanner ${s.kind}`) ?? 0) + 1);
      if (s.kind !== 'half code' && s.kind !== 'unknown code') scanRejects++;
      await chunked(rng, s.bytes, scanWrite);
      const m = terminalJunk(rng);
      kinds.set(`terminal ${m.kind}`, (kinds.get(`terminal ${m.kind}`) ?? 0) + 1);
      ecrRejects++;
      // Whole, in one write: the simulator's own answers to the driver's keep-alives share the line,
      // and a chunk of junk glued into one of them would be the test's doing, not the terminal's.
      await terminal.sendRaw(m.bytes);
    }
    // Each junk line is refused, with its reason in the log (the decoders' reasons: too-long,
    // not-printable; the ECR framer's: bad JSON, schema, too long, ...).
    await waitFor(
      `round ${round}: ${scanRejects} scans rejected and ${ecrRejects} ECR lines dropped`,
      () =>
        logged('scan rejected') - scanRejectedBefore >= scanRejects &&
        logged('ecr line broke the protocol; dropped') - ecrDroppedBefore >= ecrRejects,
      { timeoutMs: WAIT_MS },
    );
    const after = await status();
    t.equal(after.sale, null, `round ${round}: the junk rang nothing up`);
    t.equal(after.pendingCard, null, `round ${round}: no card payment opened`);

    // Then a normal scan through the scanner and a card sale through the terminal.
    const product = rng.pick(products);
    const barcode = code(product.sku);
    await scanWrite(Buffer.from(`${barcode}\r\n`));
    const scanned = await waitFor(
      `round ${round}: the scan of ${barcode}`,
      async () => {
        const s = await status();
        return s.lastScan?.code === barcode && s;
      },
      { timeoutMs: WAIT_MS },
    );
    t.match(
      scanned,
      { lastScan: { ok: true }, sale: { lines: [{ sku: product.sku }] } },
      `round ${round}: scanned`,
    );
    const charges = terminal.charges.length;
    const paid = await call('sale.tender', { kind: 'card' });
    t.match(paid, { completed: true, receiptNo: round }, `round ${round}: the card sale completed`);
    t.equal(terminal.charges.length, charges + 1, `round ${round}: charged exactly once`);
  }
  t.comment(`junk sent: ${JSON.stringify(Object.fromEntries(kinds))}`);
  const s = await status();
  t.equal(s.devices.terminal?.state, 'ok', 'the terminal driver is still up');
  t.equal(s.devices.scanner?.state, 'ok', 'the scanner driver is still up');

  d.proc.kill('SIGTERM');
  await d.exited;
  const report = verifyJournal(nodeFs, path.join(stateDir, 'journal'));
  t.ok(report.ok, `the journal verifies (${report.records} records)`);
});
