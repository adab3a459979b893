// `npm start` as a newcomer gets it, headless: the demo store comes up in one process (ledger, broker,
// connection switch, device simulators, registerd), a sale rung up through the control socket reaches
// the ledger's books and the printer, `npm run scan` rings a line up, `npm run net -- down|up` cuts and
// restores the register's link, and SIGINT stops it all: exit 0, nothing left running.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlCaller } from '../support/registerd-process.js';
import { code } from '../support/till-fixtures.js';
import { processesMentioning } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { processAlive } from '../../scripts/demo/state.js';
import { LEDGER_DEFAULTS } from '../../ledger/main.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Starting takes a few seconds (tsx compiles, the ledger migrates); every other wait is shorter. */
const START_MS = 60_000;
const WAIT_MS = 20_000;
/** The demo's bridge retries at most 3 s apart (scripts/demo.ts): well within this after `net up`. */
const RECONNECT_MS = 45_000;
/** A clean stop takes well under a second; the demo's own hard stop is at 20 s. */
const STOP_MS = 30_000;
/** Output kept from a child, bytes: enough for the ready line and a failure's story. */
const MAX_OUTPUT = 1_000_000;

interface Ready {
  event: 'ready';
  pid: number;
  stateDir: string;
  controlSocket: string;
  ledgerHttp: string;
  scannerPeer: string | null;
  receiptsFile: string;
  netFile: string;
}

interface Status {
  sale: { lines: { sku: string }[] } | null;
  sync: { state: string; pending: number } | null;
  lastScan: { code: string; ok: boolean } | null;
}

/** The test's state directory; a shorter one when the socket path would not fit in 107 bytes. */
function stateDir(t: Test): string {
  const dir = t.testdir();
  if (Buffer.byteLength(path.join(dir, 'control.sock')) <= 107) return dir;
  const short = mkdtempSync(path.join(tmpdir(), 'demo-'));
  t.teardown(() => rmSync(short, { recursive: true, force: true }));
  return short;
}

function collect(proc: ChildProcess) {
  const out = { stdout: '', stderr: '' };
  proc
    .stdout!.setEncoding('utf8')
    .on('data', (c: string) => (out.stdout = (out.stdout + c).slice(-MAX_OUTPUT)));
  proc
    .stderr!.setEncoding('utf8')
    .on('data', (c: string) => (out.stderr = (out.stderr + c).slice(-MAX_OUTPUT)));
  return out;
}

/** One of the demo's commands (scripts/net.ts, scripts/scan.ts) to its end. */
async function run(
  script: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn('npx', ['tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = collect(proc);
  const timer = setTimeout(() => proc.kill('SIGKILL'), WAIT_MS);
  const exitCode = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code: exitCode, ...out };
}

/** The promise's value, or `late` when it takes longer than `ms` (the timer does not outlive it). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

interface RunningDemo {
  dir: string;
  ready: Ready;
  out: { stdout: string; stderr: string };
  /** The exit code of `npx tsx scripts/demo.ts`. */
  exited: Promise<number | null>;
}

/**
 * `npm start` headless in a fresh state directory, up to its ready line; stopped at teardown if still up.
 * `ports`: its port flags (any free ports unless told).
 */
async function startDemo(
  t: Test,
  env: NodeJS.ProcessEnv = {},
  ports: string[] = ['--http', '0', '--mqtt', '0'],
): Promise<RunningDemo> {
  const dir = stateDir(t);
  const proc = spawn('npx', ['tsx', 'scripts/demo.ts', '--no-ui', '--state', dir, ...ports], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = collect(proc);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((r) =>
    proc.on('exit', (c) => {
      exitCode = c;
      r(c);
    }),
  );
  const demo = { pid: 0 };
  t.teardown(async () => {
    // A failed test still leaves nothing running: the demo is asked to stop, then made to.
    if (exitCode !== undefined) return;
    if (demo.pid && processAlive(demo.pid)) process.kill(demo.pid, 'SIGINT');
    if ((await within(exited, STOP_MS)) === 'late') {
      for (const pid of processesMentioning(dir)) process.kill(pid, 'SIGKILL');
      proc.kill('SIGKILL');
    }
  });
  const ready = await waitFor(
    'the ready line',
    () => {
      if (exitCode !== undefined)
        throw new Error(`the demo exited (${exitCode}) before ready:\n${out.stderr}`);
      const line = out.stdout.split('\n').find((l) => l.startsWith('{"event":"ready"'));
      return line ? (JSON.parse(line) as Ready) : undefined;
    },
    { timeoutMs: START_MS },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nstderr:\n${out.stderr}`);
  });
  demo.pid = ready.pid;
  return { dir, ready, out, exited };
}

/** SIGINT to the demo: it exits 0 in time, removes demo.json and its socket, and leaves no process behind. */
async function stopDemo(t: Test, { dir, ready, exited }: RunningDemo): Promise<void> {
  process.kill(ready.pid, 'SIGINT');
  t.equal(await within(exited, STOP_MS), 0, 'npm start exits 0 after SIGINT');
  t.notOk(existsSync(path.join(dir, 'demo.json')), 'demo.json is removed');
  t.notOk(existsSync(ready.controlSocket), 'the control socket is removed');
  t.same(processesMentioning(dir), [], 'no process of the demo is left (no socat, no node)');
}

/** Waits for a receipt holding every one of `texts` in the demo's receipts file. */
function receiptPrinted(ready: Ready, ...texts: string[]): Promise<true> {
  return waitFor(`a receipt with ${texts.join(', ')}`, () => {
    const text = existsSync(ready.receiptsFile) ? readFileSync(ready.receiptsFile, 'utf8') : '';
    return texts.every((x) => text.includes(x));
  });
}

t.test('npm start: a demo store that sells, syncs, scans, switches its link and stops clean', async (t) => {
  const running = await startDemo(t);
  const { dir, ready, out } = running;
  t.equal(ready.stateDir, dir);
  t.ok(processAlive(ready.pid), 'the ready line names the running demo');
  const info = JSON.parse(readFileSync(path.join(dir, 'demo.json'), 'utf8'));
  t.same({ event: 'ready', ...info }, ready, 'demo.json holds what the ready line said');
  t.match(out.stderr, /ana 1111, ben 2222, mia 9999 \(manager\)/, 'the cashiers and their PINs are printed');

  const call = controlCaller(ready.controlSocket, WAIT_MS);
  const status = async () => (await call('status')) as unknown as Status;
  await waitFor('the register online', async () => (await status()).sync?.state === 'connected', {
    timeoutMs: WAIT_MS,
  });

  // A sale through the control socket reaches the books, takes a unit off stock, and prints.
  await call('cashier.login', { cashierId: 'ana', pin: '1111' });
  await call('shift.open', { floatCounts: { '1000': 5 } });
  await call('sale.scan', { code: code('COF-250') });
  const sold = (await call('sale.tender', { kind: 'cash', amountMinor: 1000 })) as {
    completed: boolean;
    totalMinor: number;
    changeMinor: number;
    receipt: { saleId: string };
  };
  t.match(sold, { completed: true, totalMinor: 649, changeMinor: 351 });
  const booked = await waitFor(
    'the sale in the ledger',
    async () => {
      const res = await fetch(`${ready.ledgerHttp}/api/sales`);
      const body = (await res.json()) as {
        sales: { saleId: string; totalMinor: number; deviceId: string }[];
      };
      return body.sales.find((s) => s.saleId === sold.receipt.saleId);
    },
    { timeoutMs: WAIT_MS },
  );
  t.match(booked, { deviceId: 'demo-till-1', totalMinor: 649 });
  const stock = (await (await fetch(`${ready.ledgerHttp}/api/stock/COF-250`)).json()) as { onHand: number };
  t.equal(stock.onHand, 49, 'the demo stock (50) less the unit sold');
  await receiptPrinted(ready, 'Espresso beans', '6.49');

  // `npm run scan`: the code rings a line up (down the scanner's line when the demo has one).
  const water = code('WAT-150');
  const scanned = await run('scripts/scan.ts', ['--state', dir, water]);
  t.equal(scanned.code, 0, `scan exits 0 (${scanned.stderr.trim()})`);
  t.match(scanned.stdout, /Sparkling water/);
  const afterScan = await status();
  t.match(afterScan.sale?.lines, [{ sku: 'WAT-150' }], 'the line is on the sale');
  if (ready.scannerPeer) {
    t.match(scanned.stdout, /serial scanner/);
    t.match(afterScan.lastScan, { code: water, ok: true }, 'it came through the scanner');
  }
  const bad = await run('scripts/scan.ts', ['--state', dir, 'abc\tdef']);
  t.equal(bad.code, 2, 'a code with a control character is refused');
  t.match(bad.stderr, /printable/);
  t.same((await status()).sale?.lines.length, 1, 'and nothing was rung up for it');

  // `npm run net -- down|up`: the register's link goes offline and comes back.
  const down = await run('scripts/net.ts', ['down', '--state', dir]);
  t.equal(down.code, 0);
  t.match(down.stdout, /net: down/);
  await waitFor('the register offline', async () => (await status()).sync?.state === 'offline', {
    timeoutMs: WAIT_MS,
  });
  const netStatus = await run('scripts/net.ts', ['status', '--state', dir]);
  t.match(netStatus.stdout, /net: down\nregister: (offline|connecting)/);
  const up = await run('scripts/net.ts', ['up', '--state', dir]);
  t.equal(up.code, 0);
  t.equal(readFileSync(ready.netFile, 'utf8').trim(), 'up');
  await waitFor('the register online again', async () => (await status()).sync?.state === 'connected', {
    timeoutMs: RECONNECT_MS,
  });

  // SIGINT stops everything: exit 0 in time, demo.json gone, no process of this demo left.
  await stopDemo(t, running);
  const after = await run('scripts/net.ts', ['status', '--state', dir]);
  t.equal(after.code, 1);
  t.match(after.stderr, /no demo is running/);
});

t.test(
  'npm start without socat: in-process terminal, printer over TCP, scans through the socket',
  async (t) => {
    const running = await startDemo(t, { DEMO_NO_SOCAT: '1' });
    const { dir, ready } = running;
    t.equal(ready.scannerPeer, null, 'no serial scanner');
    t.match(ready, { devices: { terminal: 'simulated', printer: 'tcp', scanner: 'none' } });
    const call = controlCaller(ready.controlSocket, WAIT_MS);
    await call('cashier.login', { cashierId: 'ben', pin: '2222' });
    await call('shift.open', { floatCounts: { '1000': 5 } });
    const scanned = await run('scripts/scan.ts', ['--state', dir, code('MUG-CER')]);
    t.equal(scanned.code, 0, `scan exits 0 (${scanned.stderr.trim()})`);
    t.match(scanned.stdout, /Ceramic mug .*\(control socket\)/);
    const refused = await run('scripts/scan.ts', ['--state', dir, '0000000000000']);
    t.equal(refused.code, 1, 'an unknown barcode is refused by the register');
    t.match(refused.stdout, /UNKNOWN_BARCODE/);
    t.match(await call('sale.tender', { kind: 'card' }), { completed: true, totalMinor: 899 });
    await receiptPrinted(ready, 'Ceramic mug', '8.99');
    await stopDemo(t, running);
  },
);

t.test('npm start with its default HTTP port busy: it takes a free one and says so', async (t) => {
  // The default: held here, unless something on this machine holds it already (busy either way).
  const DEFAULT_HTTP = LEDGER_DEFAULTS.http;
  const holder = createServer();
  const held = await new Promise<boolean>((resolve, reject) => {
    holder.once('error', (err: NodeJS.ErrnoException) =>
      err.code === 'EADDRINUSE' ? resolve(false) : reject(err),
    );
    holder.listen(DEFAULT_HTTP, '127.0.0.1', () => resolve(true));
  });
  t.teardown(() => new Promise<void>((r) => (held ? holder.close(() => r()) : r())));
  // No --http and no DEMO_HTTP_PORT: the default is asked for; the broker on any free port.
  const running = await startDemo(t, { DEMO_HTTP_PORT: '' }, ['--mqtt', '0']);
  const port = Number(new URL(running.ready.ledgerHttp).port);
  t.not(port, DEFAULT_HTTP, 'the ledger is on another port');
  t.ok(port > 0);
  t.match(running.out.stderr, `port ${DEFAULT_HTTP} was busy: HTTP on ${port}`, 'and the banner says which');
  const res = await fetch(`${running.ready.ledgerHttp}/api/sales`);
  t.equal(res.status, 200, 'the ledger answers on the port it printed');
  await stopDemo(t, running);
});
