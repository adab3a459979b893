// Till benchmark: what a cashier waits for. registerd runs as its own process (one esbuild bundle under
// plain node, as the appliance runs it) and is driven through its real Unix control socket, so every
// journaled command's figure includes its record's fdatasync on this machine's disk. Measured in one run:
//   - per-command latency (p50/p99) of scans, keyed items, quantity changes, cash tenders, status, login;
//   - sustained five-line cash sales per second from one client, sequentially;
//   - how long a fresh process takes to replay a day of 1,000 such sales (no checkpoint: a full replay).
//   npm run bench:till -- [--dir DIR] [--cpu-prof DIR]
// --dir: where the work directory goes (default the OS temp dir; the control socket's path must stay
// under 108 bytes). --cpu-prof: write CPU profiles of the daemons and replay children into DIR.
// Prints exactly one JSON line on stdout; progress goes to stderr.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { parseConfig, type ConfigSchema } from '../../appliance/config.js';
import { callControl } from '../../appliance/control/client.js';
import { MAX_SOCKET_PATH_BYTES } from '../../appliance/control/server.js';
import { CatalogSchema, type Product } from '../../appliance/till/catalog.js';
import type { ReplayFigures } from './till-replay.js';
import { bundle } from '../lib/bundle.js';
import { median, percentileUs, round } from '../lib/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DEMO_CATALOG_FILE = path.resolve(here, '../demo/catalog.json');
const DEMO_CASHIERS_FILE = path.resolve(here, '../demo/cashiers.json');
/** The demo cashier list's cashier (scripts/demo/cashiers.json). */
const CASHIER = { cashierId: 'ana', pin: '1111' } as const;

const DEVICE_ID = 'till-bench';
/** Pinned so that the replay child can name the journal it opens. */
const EPOCH = 1;

/** Sales before anything is recorded: the daemon's and the client's code paths get compiled. */
const WARMUP_SALES = 200;
/** Recorded sales of the latency phase (each: 3 scans, 2 keyed items, a quantity change, status, tender). */
const LATENCY_SALES = 1000;
/** A login between every this many sales: scrypt makes each one cost tens of ms, so fewer samples. */
const LOGIN_EVERY = 20;
/** Calls through callControl, which connects anew for each, as registerctl does; after a warm-up. */
const REGISTERCTL_CALLS = 200;
const REGISTERCTL_WARMUP = 20;
/** Five-line cash sales timed back to back for sales_per_s, and the day the replay recovers. */
const DAY_SALES = 1000;
const LINES_PER_SALE = 5;
/** The replay figure is the median of this many fresh child processes. */
const REPLAY_RUNS = 3;
/** Samples of the raw write + fdatasync floor. */
const FDATASYNC_SAMPLES = 500;
/** Two 512-byte sectors: about a till record's frame (frames fill whole sectors, docs/journal.md). */
const FLOOR_FRAME_BYTES = 1024;

const SCAN_P99_TARGET_US = 5000;
const REPLAY_TARGET_MS = 200;

function log(msg: string): void {
  process.stderr.write(`bench:till ${msg}\n`);
}

function parseOptions(): { baseDir: string; profileDir: string | undefined } {
  const { values } = parseArgs({
    options: { dir: { type: 'string' }, 'cpu-prof': { type: 'string' } },
    strict: true,
  });
  const profileDir = values['cpu-prof'] ? path.resolve(values['cpu-prof']) : undefined;
  return { baseDir: values.dir ?? os.tmpdir(), profileDir };
}

interface Distribution {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

function distribution(samplesNs: bigint[]): Distribution {
  if (!samplesNs.length) throw new Error('no samples');
  const sorted = [...samplesNs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    p50: round(percentileUs(sorted, 0.5), 1),
    p99: round(percentileUs(sorted, 0.99), 1),
    max: round(percentileUs(sorted, 1), 1),
    n: sorted.length,
  };
}

/**
 * The physical floor under every journaled command: a frame-sized write then fdatasync on the same
 * file system, nothing else. Into zeros written and synced beforehand, as the journal's segments are
 * preallocated (docs/journal.md), so that fdatasync has no new file size to commit. A command's
 * latency cannot beat this; its tail is the disk's.
 */
function fdatasyncFloor(work: string): Distribution {
  const file = path.join(work, 'floor.dat');
  const fd = fs.openSync(file, 'w', 0o600);
  const frame = Buffer.alloc(FLOOR_FRAME_BYTES, 0x5a);
  const samples: bigint[] = [];
  try {
    fs.writeSync(fd, Buffer.alloc(FDATASYNC_SAMPLES * frame.length));
    fs.fsyncSync(fd);
    for (let i = 0; i < FDATASYNC_SAMPLES; i++) {
      const t0 = process.hrtime.bigint();
      fs.writeSync(fd, frame, 0, frame.length, i * frame.length);
      fs.fdatasyncSync(fd);
      samples.push(process.hrtime.bigint() - t0);
    }
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(file);
  }
  return distribution(samples);
}

// ---- registerd as a child process ----

type ConfigInput = z.input<typeof ConfigSchema>;

interface Daemon {
  socketPath: string;
  /** The journal directory, `<stateDir>/journal`. */
  journalDir: string;
  /** SIGTERM, as systemd stops it: the daemon drains, closes the journal and must exit 0. */
  stop(): Promise<void>;
  /** SIGKILL if it is still running: cleanup after a failure. */
  kill(): void;
}

/**
 * Start registerd (bundled at `bin`) with its state in `<work>/<name>`, and resolve once it logs
 * "ready". The demo catalog and cashiers are its seed, as in the integration test.
 */
function startDaemon(
  bin: string,
  work: string,
  name: string,
  checkpointEveryRecords: number,
  nodeArgs: string[],
): Promise<Daemon> {
  const raw: ConfigInput = {
    deviceId: DEVICE_ID,
    storeId: 'demo-store',
    stateDir: path.join(work, name),
    epoch: EPOCH,
    journal: { checkpointEveryRecords },
    // A synchronised clock, as on a register that has seen NTP since boot.
    clock: { assumeTrusted: true },
    seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
  };
  // Checked here first, so a config the schema refuses fails with the field named, not as a dead child.
  const config = parseConfig(raw);
  const socketPath = path.join(config.stateDir, 'control.sock');
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(`socket path ${socketPath} is over ${MAX_SOCKET_PATH_BYTES} bytes: use a shorter --dir`);
  }
  const configFile = path.join(work, `${name}.json`);
  fs.writeFileSync(configFile, JSON.stringify(raw));

  const proc = spawn(process.execPath, [...nodeArgs, bin, '--config', configFile], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  // The daemon logs JSON lines on stderr (two per control connection). The pipe is read to the end, or
  // a full pipe would block the daemon's writes and show up as latency; a tail is kept for errors.
  const tail: string[] = [];
  let ready = false;
  const daemon: Daemon = {
    socketPath,
    journalDir: path.join(config.stateDir, 'journal'),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`registerd ${name} exited with ${code}:\n${tail.join('\n')}`);
    },
    kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
  return new Promise<Daemon>((resolve, reject) => {
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      if (!ready && line.includes('"msg":"ready"')) {
        ready = true;
        resolve(daemon);
      } else if (ready && !line.includes('"level":"info"')) {
        log(`registerd ${name}: ${line}`); // a warning or error while measuring is worth seeing
      }
    });
    proc.on('exit', (code, signal) => {
      if (!ready)
        reject(new Error(`registerd ${name} exited (${code ?? signal}) before ready:\n${tail.join('\n')}`));
    });
  });
}

// ---- the client ----

/**
 * One long-lived control connection, as the till UI keeps: newline-delimited JSON requests, answers
 * matched by id (docs/control-protocol.md). callControl connects anew for every call (registerctl's
 * way), which adds a connect, an accept and two log lines to each; that cost is measured on its own.
 */
class ControlConnection {
  private buffered = '';
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.failAll(err));
    socket.on('close', () => this.failAll(new Error('registerd closed the control connection')));
  }

  static open(socketPath: string): Promise<ControlConnection> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new ControlConnection(socket));
      });
    });
  }

  /** Resolves with the result; an error answer rejects: the benchmark's workload expects none. */
  call(method: string, params: object = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, {
        resolve,
        reject: (err) => reject(new Error(`${method}: ${err.message}`)),
      });
      this.socket.write(JSON.stringify({ id, method, params }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const msg = JSON.parse(this.buffered.slice(0, nl)) as {
        id?: unknown;
        result?: unknown;
        error?: { code: string; message: string };
      };
      this.buffered = this.buffered.slice(nl + 1);
      const waiter = typeof msg.id === 'number' ? this.waiting.get(msg.id) : undefined;
      if (!waiter) continue; // pushed events: this client does not subscribe, so there are none
      this.waiting.delete(msg.id as number);
      if (msg.error) waiter.reject(new Error(`${msg.error.code}: ${msg.error.message}`));
      else waiter.resolve(msg.result);
    }
  }

  private failAll(err: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(err);
    this.waiting.clear();
  }
}

/** Client-side round trips by method: request written to answer parsed, as the till UI waits for them. */
class TimedCalls {
  readonly samples = new Map<string, bigint[]>();
  recording = false;

  constructor(private readonly conn: ControlConnection) {}

  async call(method: string, params: object = {}): Promise<unknown> {
    const t0 = process.hrtime.bigint();
    const result = await this.conn.call(method, params);
    const dt = process.hrtime.bigint() - t0;
    if (this.recording) {
      let list = this.samples.get(method);
      if (!list) this.samples.set(method, (list = []));
      list.push(dt);
    }
    return result;
  }
}

// ---- the workload ----

interface TenderAnswer {
  completed: boolean;
  receiptNo: number;
}

/** The demo catalog's products a scan rings up without a keyed price. */
function sellableProducts(): Product[] {
  const catalog = CatalogSchema.parse(JSON.parse(fs.readFileSync(DEMO_CATALOG_FILE, 'utf8')));
  const products = catalog.products.filter((p) => !p.openPrice && p.barcodes.length > 0);
  if (products.length < LINES_PER_SALE) throw new Error('the demo catalog has too few scannable products');
  return products;
}

/** The products of sale `n`, rotating through the catalog so sales differ. */
const productOf = (products: Product[], n: number, line: number): Product =>
  products[(n * LINES_PER_SALE + line) % products.length]!;

/** Exact cash: the tender that completes the sale (its answer carries the receipt). */
async function tenderCash(call: (m: string, p?: object) => Promise<unknown>): Promise<TenderAnswer> {
  const paid = (await call('sale.tender', { kind: 'cash' })) as TenderAnswer;
  if (!paid.completed) throw new Error(`cash tender did not complete the sale: ${JSON.stringify(paid)}`);
  return paid;
}

/** A five-line cash sale: five scans, then cash. */
async function cashSale(conn: ControlConnection, products: Product[], n: number): Promise<TenderAnswer> {
  for (let line = 0; line < LINES_PER_SALE; line++) {
    await conn.call('sale.scan', { code: productOf(products, n, line).barcodes[0] });
  }
  return tenderCash((m, p) => conn.call(m, p));
}

/** A sale of the latency phase: each measured command at least once, in a cashier's order. */
async function latencySale(t: TimedCalls, products: Product[], n: number): Promise<void> {
  for (let line = 0; line < 3; line++) {
    await t.call('sale.scan', { code: productOf(products, n, line).barcodes[0] });
  }
  await t.call('sale.add', { sku: productOf(products, n, 3).sku });
  await t.call('sale.add', { sku: productOf(products, n, 4).sku, qty: 2 });
  await t.call('sale.setQty', { lineId: '1', qty: 3 }); // line ids are 1, 2, … within a sale
  await t.call('status'); // the screen refreshing mid-sale: no record
  await tenderCash((m, p) => t.call(m, p));
}

/** Opens a shift for the demo cashier: every sale needs a session and a shift. */
async function openShift(conn: ControlConnection): Promise<void> {
  await conn.call('cashier.login', CASHIER);
  await conn.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
}

/** Per-command latency: warm-up sales unrecorded, then LATENCY_SALES recorded, a login every LOGIN_EVERY. */
async function measureLatency(conn: ControlConnection, products: Product[]): Promise<Map<string, bigint[]>> {
  const t = new TimedCalls(conn);
  for (let n = 0; n < WARMUP_SALES + LATENCY_SALES; n++) {
    t.recording = n >= WARMUP_SALES;
    // Between sales, as at a change of cashier: a login is refused mid-sale for anyone else.
    if (n % LOGIN_EVERY === 0) await t.call('cashier.login', CASHIER);
    await latencySale(t, products, n);
    if ((n + 1) % 200 === 0)
      log(`latency: ${n + 1}/${WARMUP_SALES + LATENCY_SALES} sales (${WARMUP_SALES} warm-up)`);
  }
  return t.samples;
}

/** `status` through callControl: a new connection for every call, as registerctl makes them. */
async function measureRegisterctl(socketPath: string): Promise<Distribution> {
  const samples: bigint[] = [];
  for (let i = 0; i < REGISTERCTL_WARMUP + REGISTERCTL_CALLS; i++) {
    const t0 = process.hrtime.bigint();
    const answer = await callControl(socketPath, 'status', {}, 10_000);
    const dt = process.hrtime.bigint() - t0;
    if (!answer.ok) throw new Error(`status: ${answer.error.code}: ${answer.error.message}`);
    if (i >= REGISTERCTL_WARMUP) samples.push(dt);
  }
  return distribution(samples);
}

/** DAY_SALES five-line cash sales back to back from one client; returns the wall time in ms. */
async function timeSales(conn: ControlConnection, products: Product[]): Promise<number> {
  let lastReceipt: number | undefined;
  const t0 = performance.now();
  for (let n = 0; n < DAY_SALES; n++) {
    const { receiptNo } = await cashSale(conn, products, n);
    // Receipt numbers are gapless: a skipped one would mean a sale went somewhere unexpected.
    if (lastReceipt !== undefined && receiptNo !== lastReceipt + 1)
      throw new Error(`receipt ${receiptNo} after ${lastReceipt}`);
    lastReceipt = receiptNo;
  }
  return performance.now() - t0;
}

/** Greedy note and coin counts for an amount (at most 100,000 of each, the schema's bound). */
function countsFor(amountMinor: number): Record<string, number> {
  const counts: Record<string, number> = {};
  let left = amountMinor;
  for (const denom of [50_000, 10_000, 1000, 100, 10, 1]) {
    const n = Math.min(Math.floor(left / denom), 100_000);
    if (n > 0) counts[String(denom)] = n;
    left -= n * denom;
  }
  if (left !== 0) throw new Error(`cannot count ${amountMinor}`);
  return counts;
}

/**
 * One register day on a fresh daemon: login, shift open, DAY_SALES five-line cash sales, the shift
 * closed with the drawer counted right (a Z report), logout. Returns the journal's last seq and the
 * wall time of the sales (a fresh daemon's: not warmed up, so only logged, not reported).
 */
async function recordDay(
  conn: ControlConnection,
  products: Product[],
): Promise<{ lastSeq: number; ms: number }> {
  await openShift(conn);
  const ms = await timeSales(conn, products);
  const { expectedCashMinor } = (await conn.call('shift.report')) as { expectedCashMinor: number };
  await conn.call('shift.close', { counts: countsFor(expectedCashMinor) });
  await conn.call('cashier.logout');
  const { lastSeq } = (await conn.call('status')) as { lastSeq: number };
  return { lastSeq, ms };
}

/** Recover the day's journal in REPLAY_RUNS fresh children, checking each folded the whole day. */
function replayInChildren(
  child: string,
  journalDir: string,
  lastSeq: number,
  nodeArgs: string[],
): ReplayFigures[] {
  const runs: ReplayFigures[] = [];
  for (let i = 0; i < REPLAY_RUNS; i++) {
    const out = spawnSync(process.execPath, [...nodeArgs, child, journalDir, DEVICE_ID, String(EPOCH)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (out.status !== 0) throw new Error(`replay child exited with ${out.status ?? out.signal}`);
    const f = JSON.parse(out.stdout) as ReplayFigures;
    // A full replay: no checkpoint, every record of the day folded, the day's receipts and Z report back.
    if (f.checkpointSeq !== 0 || f.replayed !== lastSeq || f.lastSeq !== lastSeq)
      throw new Error(`replay was not a full replay of ${lastSeq} records: ${JSON.stringify(f)}`);
    if (f.receiptNo !== DAY_SALES || f.zNo !== 1)
      throw new Error(`replay folded a different day: ${JSON.stringify(f)}`);
    log(
      `replay run ${i + 1}: ${f.openMs.toFixed(1)} ms for ${f.replayed} records in ${f.segments} segment(s), ` +
        `rss ${f.rssMb.toFixed(1)} MB`,
    );
    runs.push(f);
  }
  return runs;
}

async function main(): Promise<void> {
  const { baseDir, profileDir } = parseOptions();
  // Short: the control socket lives in the state directory under here, and sun_path is 108 bytes.
  const work = fs.mkdtempSync(path.join(baseDir, 'bt-'));
  const nodeArgs = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const daemons: Daemon[] = [];
  log(`working in ${work}`);
  try {
    // Both children run as one bundle under plain node, like the built appliance: no loader in them.
    const [registerd, replayChild] = await Promise.all([
      bundle(path.join(here, '../../appliance/registerd.ts'), work),
      bundle(path.join(here, 'till-replay.ts'), work),
    ]);
    const products = sellableProducts();

    const floor = fdatasyncFloor(work);
    log(`raw write+fdatasync of ${FLOOR_FRAME_BYTES} bytes: p50 ${floor.p50} us, p99 ${floor.p99} us`);

    // Latency and throughput on one warmed daemon, with the production checkpoint interval: a
    // checkpoint's cost lands on whichever command crosses it, as it would at the till.
    const warm = await startDaemon(registerd, work, 'w', 5000, nodeArgs);
    daemons.push(warm);
    const conn = await ControlConnection.open(warm.socketPath);
    await openShift(conn);
    const samples = await measureLatency(conn, products);
    const registerctl = await measureRegisterctl(warm.socketPath);
    log(
      `registerctl-style status (connection per call): p50 ${registerctl.p50} us, p99 ${registerctl.p99} us`,
    );
    const salesMs = await timeSales(conn, products);
    const salesPerS = round(DAY_SALES / (salesMs / 1000), 1);
    log(`${DAY_SALES} five-line cash sales in ${salesMs.toFixed(0)} ms: ${salesPerS} sales/s`);
    conn.close();
    await warm.stop();

    // The day to replay, on a daemon of its own so its journal holds that day and nothing else.
    // Checkpoints off: recovery then folds every record, the slow case a boot can meet.
    const fresh = await startDaemon(registerd, work, 'd', 0, nodeArgs);
    daemons.push(fresh);
    const dayConn = await ControlConnection.open(fresh.socketPath);
    const day = await recordDay(dayConn, products);
    log(
      `day: ${day.lastSeq} records, ${DAY_SALES} sales in ${day.ms.toFixed(0)} ms on a fresh (cold) daemon: ` +
        `${(DAY_SALES / (day.ms / 1000)).toFixed(1)} sales/s`,
    );
    dayConn.close();
    await fresh.stop();
    const replays = replayInChildren(replayChild, fresh.journalDir, day.lastSeq, nodeArgs);
    const replayMs = round(median(replays.map((r) => r.openMs)), 1);

    const latency: Record<string, Distribution> = {};
    for (const method of ['sale.scan', 'sale.add', 'sale.setQty', 'sale.tender', 'status', 'cashier.login']) {
      latency[method] = distribution(samples.get(method) ?? []);
    }
    const result = {
      latency_us: latency,
      registerctl_status_us: registerctl,
      fdatasync_floor_us: floor,
      sales_per_s: salesPerS,
      replay_1000_sales_ms: replayMs,
      replay_runs_ms: replays.map((r) => round(r.openMs, 1)),
      replay_records: day.lastSeq,
      targets_met: {
        'sale.scan_p99_under_5ms': latency['sale.scan']!.p99 < SCAN_P99_TARGET_US,
        replay_1000_under_200ms: replayMs < REPLAY_TARGET_MS,
      },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    for (const d of daemons) d.kill();
    fs.rmSync(work, { recursive: true, force: true });
    log(`removed ${work}`);
  }
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
