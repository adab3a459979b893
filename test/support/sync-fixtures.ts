// The sync suite's harness: a ledger on one of two backends (embedded aedes + SQLite, or the shared
// Mosquitto + PostgreSQL with two consumers), registers as real registerd processes or in-process
// daemons, each behind its own MQTT proxy (to cut its link, or to swallow chosen packets), the ledger
// as a child process for kill -9, and the checks every case ends with: each record once in the
// ledger's tables, the register's X report equal to its books, and honest stock.
//
// On the shared Mosquitto everything is named per run (device ids, store id, client ids), the ledger
// reaches the broker through a proxy that gives it a share group of its own and only our registers'
// messages (`Harness.ledgerLink`), and at the end the retained acks and statuses we caused are cleared
// and every persistent session we made is dropped: Mosquitto keeps routing a shared subscription's
// messages to a member that is gone, so a dead consumer of ours would go on taking its share.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { connectAsync } from 'mqtt';
import pg from 'pg';
import type { Test } from 'tap';
import { startRegisterd, type Daemon } from '../../appliance/registerd.js';
import { parseConfig } from '../../appliance/config.js';
import { silentLogger, type Logger } from '../../appliance/log.js';
import type { ShiftTotals } from '../../appliance/till/state.js';
import type { BridgeStatus } from '../../cloud-bridge/bridge.js';
import { parseDeviceTopic, topics } from '../../cloud-bridge/protocol/wire.js';
import { startLedger, type RunningLedger } from '../../ledger/main.js';
import { openLedgerDb, type LedgerDb } from '../../ledger/db/open.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { PG_URL, snapshotBooks } from './ledger-fixtures.js';
import { controlCaller, kill9, startDaemon, type DaemonProcess } from './registerd-process.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE, MANAGER, PINS, code } from './till-fixtures.js';
import { waitFor as pollUntil } from './wait.js';
import { remainingLength } from './mqtt-wire.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const MOSQUITTO_URL = process.env.LEDGER_TEST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883';
export { PG_URL };

/** Unique per run: device, store and client ids on the shared broker carry it. */
export const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;

/** Every wait in the suite ends by this deadline, ms: a drain of a few hundred records takes ~1 s. */
export const WAIT_MS = 20_000;
/** Between two looks at a condition, ms. */
const POLL_MS = 20;

// ---- waiting ----

/** The shared poll, with this suite's deadline by default. */
export function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  return pollUntil(what, probe, { timeoutMs: WAIT_MS, intervalMs: POLL_MS, ...opts });
}

// ---- an MQTT-aware TCP proxy ----

/** MQTT control packet types (the high nibble of the first byte). */
export const MQTT = { PUBLISH: 3, PUBACK: 4, SUBSCRIBE: 8 } as const;

/** One whole MQTT packet off the front of `buf` (and its fixed header's size), or undefined while incomplete. */
function takePacket(buf: Buffer): { packet: Buffer; header: number; rest: Buffer } | undefined {
  let length = 0;
  let i = 1;
  for (let shift = 0; ; shift += 7) {
    if (i >= buf.length) return undefined;
    const b = buf[i++]!;
    length += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) break;
    if (i > 4) throw new Error('malformed MQTT remaining length');
  }
  if (buf.length < i + length) return undefined;
  return { packet: buf.subarray(0, i + length), header: i, rest: buf.subarray(i + length) };
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** A SUBSCRIBE with each topic filter mapped (same count, same order, same options). */
function mapSubscribe(packet: Buffer, header: number, map: (filter: string) => string): Buffer {
  const parts: Buffer[] = [packet.subarray(header, header + 2)];
  for (let at = header + 2; at < packet.length;) {
    const len = packet.readUInt16BE(at);
    const filter = map(packet.toString('utf8', at + 2, at + 2 + len));
    const bytes = Buffer.from(filter, 'utf8');
    parts.push(u16(bytes.length), bytes, packet.subarray(at + 2 + len, at + 3 + len));
    at += 3 + len;
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([packet[0]!]), remainingLength(body.length), body]);
}

/** A PUBLISH's topic and, for QoS 1 and 2, its packet id. */
function readPublish(packet: Buffer, header: number): { topic: string; qos: number; messageId?: number } {
  const qos = (packet[0]! >> 1) & 3;
  const len = packet.readUInt16BE(header);
  const topic = packet.toString('utf8', header + 2, header + 2 + len);
  return qos > 0 ? { topic, qos, messageId: packet.readUInt16BE(header + 2 + len) } : { topic, qos };
}

export interface ProxyOptions {
  /** Start refusing connections. */
  online?: boolean;
  /** Rename a shared-subscription group in the client's SUBSCRIBEs (`$share/{from}/…` → `$share/{to}/…`). */
  shareGroup?: { from: string; to: string };
  /**
   * Hand the client only the PUBLISHes whose topic this accepts; the proxy PUBACKs the others to the
   * broker itself, so they never hold the client's in-flight window.
   */
  deliverOnly?: (topic: string) => boolean;
}

/**
 * Between MQTT clients and a broker. `setOnline(false)` cuts every link and refuses new ones (the
 * client sees its connection reset: the network is down); `drop.up`/`drop.down` swallow packets of the
 * listed types going to the broker or to the client. The upstream is asked for at each connection,
 * so a ledger that moved its port is followed.
 */
export class MqttProxy {
  readonly drop = { up: new Set<number>(), down: new Set<number>() };
  readonly dropped = { up: 0, down: 0, filtered: 0 };
  private online: boolean;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly upstream: () => { host: string; port: number },
    private readonly opts: ProxyOptions = {},
  ) {
    this.online = opts.online ?? true;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this;
  }

  setOnline(online: boolean): void {
    this.online = online;
    if (!online) this.cut();
  }

  /** Drop every open link (both sides see the connection go). */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.cut();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    const target = this.upstream();
    if (!this.online || !target.port) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => s.destroy());
    }
    this.pipe(client, upstream, 'up');
    this.pipe(upstream, client, 'down');
  }

  /** What becomes of one packet on its way: forwarded (maybe rewritten) or not. */
  private pass(packet: Buffer, header: number, dir: 'up' | 'down', back: net.Socket): Buffer | undefined {
    const type = packet[0]! >> 4;
    if (this.drop[dir].has(type)) {
      this.dropped[dir]++;
      return undefined;
    }
    const { shareGroup, deliverOnly } = this.opts;
    if (dir === 'up' && type === MQTT.SUBSCRIBE && shareGroup) {
      const from = `$share/${shareGroup.from}/`;
      return mapSubscribe(packet, header, (f) =>
        f.startsWith(from) ? `$share/${shareGroup.to}/${f.slice(from.length)}` : f,
      );
    }
    if (dir === 'down' && type === MQTT.PUBLISH && deliverOnly) {
      const p = readPublish(packet, header);
      if (!deliverOnly(p.topic)) {
        this.dropped.filtered++;
        if (p.qos === 1) back.write(Buffer.concat([Buffer.from([0x40, 2]), u16(p.messageId!)]));
        return undefined;
      }
    }
    return packet;
  }

  private pipe(from: net.Socket, to: net.Socket, dir: 'up' | 'down'): void {
    let buf: Buffer = Buffer.alloc(0);
    from.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        let next: ReturnType<typeof takePacket>;
        try {
          next = takePacket(buf);
        } catch {
          from.destroy();
          return;
        }
        if (!next) break;
        buf = next.rest;
        const out = this.pass(next.packet, next.header, dir, from);
        if (out) to.write(out);
      }
    });
  }
}

// ---- registers ----

export interface TillStatus {
  deviceId: string;
  epoch: number;
  lastSeq: number;
  sync: BridgeStatus | null;
}

export interface SaleDone {
  saleId: string;
  receiptNo: number;
  /** When the sale happened on the register (the record's ts). */
  time: number;
  lines: { sku: string; qty: number }[];
}

export interface RefundDone {
  refundId: string;
  lines: { sku: string; qty: number }[];
}

/** What a register did in one epoch of its journal, as the test saw it answered. */
export interface TillBook {
  epoch: number | undefined;
  sales: SaleDone[];
  refunds: RefundDone[];
}

export interface XReport {
  shiftId: string;
  totals: ShiftTotals;
}

/** A register's state once its queue drained: what the books must hold for this (device, epoch). */
export interface TillSnapshot {
  deviceId: string;
  epoch: number;
  lastSeq: number;
  x: XReport;
  saleIds: string[];
  refundIds: string[];
}

export interface TillOptions {
  /** A real registerd process (kill -9 works on it), or the daemon in this process. */
  process?: boolean;
  epoch?: number;
  batchMaxRecords?: number;
  maxInFlightBatches?: number;
  /** The proxy starts cut off (the register is offline from its first breath). */
  offline?: boolean;
}

type Answer = Record<string, unknown>;

/** One register: its config, its proxy to the broker, and the daemon while it runs. */
export class Till {
  readonly configFile: string;
  book: TillBook;
  private daemon: Daemon | undefined;
  private proc: DaemonProcess | undefined;
  private caller: ((method: string, params?: unknown) => Promise<Answer>) | undefined;

  constructor(
    readonly deviceId: string,
    readonly stateDir: string,
    readonly proxy: MqttProxy,
    private readonly storeId: string,
    private readonly opts: TillOptions,
    private readonly registerdBin: () => Promise<string>,
  ) {
    this.configFile = `${stateDir}.config.json`;
    this.book = { epoch: opts.epoch, sales: [], refunds: [] };
    this.writeConfig();
  }

  get running(): boolean {
    return this.daemon !== undefined || this.proc !== undefined;
  }

  /** Pin the epoch of the next journal this register creates (after its state dir was wiped). */
  setEpoch(epoch: number | undefined): void {
    this.opts.epoch = epoch;
    this.writeConfig();
  }

  private writeConfig(): void {
    writeFileSync(
      this.configFile,
      JSON.stringify({
        deviceId: this.deviceId,
        storeId: this.storeId,
        stateDir: this.stateDir,
        clock: { assumeTrusted: true },
        seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
        ...(this.opts.epoch !== undefined ? { epoch: this.opts.epoch } : {}),
        cloud: {
          brokerUrl: this.proxy.url,
          // The smallest the schema takes: a lost batch is resent within a second.
          ackTimeoutMs: 1000,
          ...(this.opts.batchMaxRecords ? { batchMaxRecords: this.opts.batchMaxRecords } : {}),
          ...(this.opts.maxInFlightBatches ? { maxInFlightBatches: this.opts.maxInFlightBatches } : {}),
        },
      }),
    );
  }

  async start(): Promise<void> {
    if (this.running) return;
    if (this.opts.process) {
      this.proc = await startDaemon(await this.registerdBin(), this.configFile);
      const call = controlCaller(path.join(this.stateDir, 'control.sock'));
      this.caller = call;
    } else {
      const raw = JSON.parse(readFileSync(this.configFile, 'utf8')) as unknown;
      const daemon = await startRegisterd(parseConfig(raw, {}, path.dirname(this.configFile)), {
        log: silentLogger,
      });
      this.daemon = daemon;
      this.caller = async (method, params = {}) => (await daemon.register.execute(method, params)) as Answer;
    }
  }

  /** A clean stop (SIGTERM for a process): the bridge says goodbye and saves its last ack. */
  async stop(): Promise<void> {
    const { daemon, proc } = this;
    this.daemon = undefined;
    this.proc = undefined;
    this.caller = undefined;
    if (daemon) await daemon.stop();
    if (proc) {
      proc.proc.kill('SIGTERM');
      await proc.exited;
    }
  }

  /** Power cut: SIGKILL (a real process only). */
  async kill9(): Promise<void> {
    if (!this.proc) throw new Error('kill -9 needs a registerd process');
    const proc = this.proc;
    this.proc = undefined;
    this.caller = undefined;
    await kill9(proc);
  }

  call(method: string, params: unknown = {}): Promise<Answer> {
    if (!this.caller) throw new Error(`${this.deviceId} is not running`);
    return this.caller(method, params);
  }

  async status(): Promise<TillStatus> {
    return (await this.call('status')) as unknown as TillStatus;
  }

  // ---- a cashier's work ----

  /** Log in and open a shift: the start of every journal. */
  async openShift(): Promise<void> {
    await this.call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
    await this.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
    const s = await this.status();
    this.book.epoch ??= s.epoch;
  }

  /** Ring up the lines (scanned one by one, or added with a quantity) and tender. */
  async sell(
    lines: { sku: string; qty: number }[],
    tender: 'cash' | 'card' | 'cash-note',
  ): Promise<SaleDone> {
    for (const l of lines) {
      if (l.qty === 1) await this.call('sale.scan', { code: code(l.sku) });
      else await this.call('sale.add', { sku: l.sku, qty: l.qty });
    }
    const params =
      tender === 'card'
        ? { kind: 'card' }
        : tender === 'cash-note'
          ? { kind: 'cash', amountMinor: 10_000 }
          : { kind: 'cash' };
    const a = (await this.call('sale.tender', params)) as unknown as {
      completed: boolean;
      receiptNo: number;
      receipt: { saleId: string; time: number; lines: { sku: string; qty: number }[] };
    };
    if (!a.completed) throw new Error(`sale not completed: ${JSON.stringify(a)}`);
    const done: SaleDone = {
      saleId: a.receipt.saleId,
      receiptNo: a.receiptNo,
      time: a.receipt.time,
      lines: a.receipt.lines.map((l) => ({ sku: l.sku, qty: l.qty })),
    };
    this.book.sales.push(done);
    return done;
  }

  /** A manager-approved cash refund of a whole sale. */
  async refund(sale: SaleDone): Promise<RefundDone> {
    const a = (await this.call('sale.refund', {
      receiptNo: sale.receiptNo,
      tender: 'cash',
      approval: MANAGER,
    })) as unknown as { refundId: string; receipt: { lines: { sku: string; qty: number }[] } };
    const done: RefundDone = {
      refundId: a.refundId,
      lines: a.receipt.lines.map((l) => ({ sku: l.sku, qty: l.qty })),
    };
    this.book.refunds.push(done);
    return done;
  }

  /** Wait for the queue to drain (status pending → 0), then take the figures the books must match. */
  async settle(timeoutMs = WAIT_MS): Promise<TillSnapshot> {
    await waitFor(
      `${this.deviceId} to drain its queue (status pending → 0)`,
      async () => {
        const s = await this.status();
        return s.sync?.pending === 0 && s.sync.ackedThrough === s.lastSeq && s.lastSeq > 0;
      },
      { timeoutMs },
    );
    return this.snapshot();
  }

  /** The figures the books must match, as the register has them now. */
  async snapshot(): Promise<TillSnapshot> {
    const s = await this.status();
    const x = (await this.call('shift.report')) as unknown as XReport;
    return {
      deviceId: this.deviceId,
      epoch: s.epoch,
      lastSeq: s.lastSeq,
      x,
      saleIds: this.book.sales.map((v) => v.saleId),
      refundIds: this.book.refunds.map((v) => v.refundId),
    };
  }
}

/** The demo SKUs the suite sells: fixed prices, scanned by barcode. */
export const SKUS = ['COF-250', 'WAT-150', 'BRD-RYE', 'MLK-1L', 'CHO-100', 'APL-1KG', 'BAT-AA4', 'MUG-CER'];

/** A seeded mix of sales: one to three lines, cash (exact or a note), or card. */
export async function sellMany(
  till: Till,
  rng: { int(lo: number, hi: number): number; pick<T>(items: readonly T[]): T },
  n: number,
  skus: readonly string[] = SKUS,
): Promise<SaleDone[]> {
  const done: SaleDone[] = [];
  for (let i = 0; i < n; i++) {
    const lines = new Map<string, number>();
    for (let j = rng.int(1, 3); j > 0; j--) {
      const sku = rng.pick(skus);
      lines.set(sku, (lines.get(sku) ?? 0) + rng.int(1, 2));
    }
    const tender = rng.pick(['cash', 'card', 'cash-note'] as const);
    done.push(
      await till.sell(
        [...lines].map(([sku, qty]) => ({ sku, qty })),
        tender,
      ),
    );
  }
  return done;
}

// ---- stock, as the test expects it ----

export class StockTally {
  readonly expected = new Map<string, number>();

  add(sku: string, qty: number): void {
    this.expected.set(sku, (this.expected.get(sku) ?? 0) + qty);
  }

  sold(lines: { sku: string; qty: number }[]): void {
    for (const l of lines) this.add(l.sku, -l.qty);
  }

  fromBook(book: TillBook): void {
    for (const s of book.sales) this.sold(s.lines);
    for (const r of book.refunds) for (const l of r.lines) this.add(l.sku, l.qty);
  }
}

// ---- the ledger as a child process ----

/** The ledger command bundled with its packages left outside (better-sqlite3 cannot be bundled). */
async function bundleLedger(outDir: string): Promise<string> {
  const outfile = path.join(outDir, 'ledger.mjs');
  await build({
    entryPoints: [path.join(root, 'ledger/main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  const link = path.join(outDir, 'node_modules');
  if (!existsSync(link)) symlinkSync(path.join(root, 'node_modules'), link, 'dir');
  return outfile;
}

export interface LogLine {
  msg: string;
  part?: string;
  deviceId?: string;
  [k: string]: unknown;
}

export class LedgerChild {
  private out = '';
  private err = '';
  readonly exited: Promise<number | null>;
  httpUrl = '';
  mqttUrl = '';

  private constructor(readonly proc: ChildProcess) {
    this.exited = new Promise((r) => proc.on('exit', (c) => r(c)));
  }

  static async start(bin: string, args: string[], cwd: string): Promise<LedgerChild> {
    const proc = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const child = new LedgerChild(proc);
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => (child.err = (child.err + d).slice(-4_000_000)));
    proc.stdout!.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`ledger not ready in ${WAIT_MS} ms:\n${child.err}`)),
        WAIT_MS,
      );
      proc.stdout!.on('data', (d: string) => {
        child.out += d;
        const line = child.out.split('\n').find((l) => l.includes('"event":"ready"'));
        if (!line) return;
        clearTimeout(timer);
        const ready = JSON.parse(line) as { mqtt: string; http: string };
        child.mqttUrl = ready.mqtt;
        child.httpUrl = ready.http;
        resolve();
      });
      proc.on('exit', (c) => {
        clearTimeout(timer);
        reject(new Error(`ledger exited (${c}) before ready:\n${child.err}`));
      });
    });
    return child;
  }

  /** Its log so far, parsed. */
  lines(): LogLine[] {
    return this.err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM: HTTP stops, the consumers finish and PUBACK what they hold, the books close. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), WAIT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---- the backends and the harness ----

export type BackendKind = 'aedes-sqlite' | 'mosquitto-postgres';

let harnesses = 0;
let registerdBin: Promise<string> | undefined;
let bundleDir: string | undefined;

/** registerd bundled once per test file. */
function registerdBundle(): Promise<string> {
  if (!registerdBin) {
    bundleDir = mkdtempSync(path.join(tmpdir(), 'sync-bundle-'));
    const dir = bundleDir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    registerdBin = bundle(path.join(root, 'appliance/registerd.ts'), dir);
  }
  return registerdBin;
}

export interface ApiAnswer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * One case's world: a fresh set of books (SQLite file or PostgreSQL schema), the ledger (in-process or
 * child), registers with their proxies. Everything it made goes away in `dispose()`, in order.
 */
export class Harness {
  readonly dir: string;
  readonly storeId: string;
  readonly stock = new StockTally();
  /** The in-process ledger's log, parsed (a child's is read from the child). */
  readonly logs: LogLine[] = [];
  ledger: RunningLedger | undefined;
  child: LedgerChild | undefined;
  readonly tills: Till[] = [];
  private readonly proxies: MqttProxy[] = [];
  private readonly children: LedgerChild[] = [];
  private readonly n = ++harnesses;
  /** SQLite file, or the PostgreSQL URL of our schema. */
  dbUrl = '';
  private schema: string | undefined;
  /** A: the embedded broker's port, kept across ledger restarts. */
  brokerPort = 0;
  private readonly clientIds = new Set<string>();
  /** B: the ledger's link to Mosquitto (see `ledgerLink`). */
  private link: MqttProxy | undefined;
  private booksHandle: LedgerDb | undefined;
  private ledgerBin: Promise<string> | undefined;
  private ledgerStarts = 0;

  private constructor(readonly kind: BackendKind) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'sync-e2e-'));
    this.storeId = `store-${RUN}-${this.n}`;
  }

  static async create(t: Test, kind: BackendKind): Promise<Harness> {
    const h = new Harness(kind);
    t.teardown(() => h.dispose());
    if (kind === 'aedes-sqlite') h.dbUrl = `sqlite:${path.join(h.dir, 'ledger.db')}`;
    else {
      const schema = `sync_${RUN}_${h.n}`.replace(/[^a-z0-9_]/g, '_');
      await withAdmin((c) => c.query(`create schema "${schema}"`));
      h.schema = schema;
      h.dbUrl = `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    }
    return h;
  }

  get mosquitto(): boolean {
    return this.kind === 'mosquitto-postgres';
  }

  /** Where the registers' proxies lead: the ledger's embedded broker, or Mosquitto. */
  brokerTarget(): { host: string; port: number } {
    if (this.mosquitto) {
      const u = new URL(MOSQUITTO_URL);
      return { host: u.hostname, port: Number(u.port || 1883) };
    }
    return { host: '127.0.0.1', port: this.brokerPort };
  }

  deviceId(name: string): string {
    return `${name}-${RUN}-${this.n}`;
  }

  /** Whether a device topic is of one of this harness's registers. */
  isOurs(topic: string): boolean {
    const target = parseDeviceTopic(topic);
    return target !== null && target.deviceId.endsWith(`-${RUN}-${this.n}`);
  }

  /**
   * B: the ledger reaches Mosquitto through this proxy, which keeps the shared broker's other traffic
   * out of our books. Every ledger subscribes `$share/ledger/pos/v1/d/+/journal` (ledger/main.ts has
   * no option for the group, nor for which devices): another suite's or a bench's ledger on the same
   * broker would take a share of our registers' messages, and ours a share of theirs. The proxy renames
   * the group to one of our own and hands the ledger our registers' messages only.
   */
  async ledgerLink(): Promise<MqttProxy> {
    this.link ??= await new MqttProxy(() => this.brokerTarget(), {
      shareGroup: { from: 'ledger', to: this.ledgerClientId },
      deliverOnly: (topic) => this.isOurs(topic),
    }).start();
    if (!this.proxies.includes(this.link)) this.proxies.push(this.link);
    return this.link;
  }

  /** The ledger's client-id prefix; a fresh one per harness, the same across its restarts. */
  get ledgerClientId(): string {
    return `sync-${RUN}-${this.n}`;
  }

  private noteLedgerClients(consumers: number): void {
    for (let i = 0; i < consumers; i++) this.clientIds.add(`${this.ledgerClientId}-${i}`);
  }

  get consumers(): number {
    return this.mosquitto ? 2 : 1;
  }

  /** The ledger in this process: on A the same port and file on every start, on B the same schema. */
  async startLedger(): Promise<RunningLedger> {
    if (this.ledger) throw new Error('the ledger is running');
    const log: Logger = {
      info: (fields, msg) => this.note(msg, fields),
      warn: (fields, msg) => this.note(msg, fields),
      error: (fields, msg) => this.note(msg, fields),
    };
    this.noteLedgerClients(this.consumers);
    this.ledger = await startLedger(
      {
        db: this.dbUrl,
        mqtt: this.mosquitto ? (await this.ledgerLink()).url : `embedded:${this.brokerPort}`,
        http: 0,
        host: '127.0.0.1',
        shared: this.mosquitto,
        consumers: this.consumers,
        clientId: this.ledgerClientId,
        apiAuth: 'loopback', // the harness reads the books over /api without a login
      },
      { log },
    );
    if (!this.mosquitto) this.brokerPort = Number(new URL(this.ledger.mqttUrl).port);
    this.ledgerStarts++;
    return this.ledger;
  }

  async stopLedger(): Promise<void> {
    const ledger = this.ledger;
    this.ledger = undefined;
    await ledger?.stop();
  }

  private note(msg: string, fields: Record<string, unknown>): void {
    if (this.logs.length < 200_000) this.logs.push({ ...fields, msg, start: this.ledgerStarts });
  }

  /**
   * The ledger as a child process (`ledger` command, bundled). On A it takes the embedded broker's port
   * (a free one the first time); on B it reaches Mosquitto through `ledgerLink()`.
   */
  async startLedgerChild(): Promise<LedgerChild> {
    this.ledgerBin ??= bundleLedger(this.dir);
    const args = [
      '--db',
      this.dbUrl,
      '--http',
      '0',
      '--client-id',
      this.ledgerClientId,
      '--api-auth',
      'loopback',
    ];
    if (this.mosquitto)
      args.push('--mqtt', (await this.ledgerLink()).url, '--shared', '--consumers', String(this.consumers));
    else args.push('--mqtt', `embedded:${this.brokerPort}`);
    this.noteLedgerClients(this.consumers);
    const child = await LedgerChild.start(await this.ledgerBin, args, this.dir);
    this.children.push(child);
    this.child = child;
    if (!this.mosquitto) this.brokerPort = Number(new URL(child.mqttUrl).port);
    return child;
  }

  /** The running ledger's HTTP API (in-process or child). */
  async api(method: string, url: string, body?: unknown): Promise<ApiAnswer> {
    const base = this.ledger?.httpUrl ?? this.child?.httpUrl;
    if (!base) throw new Error('no ledger running');
    const res = await fetch(base + url, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  /** Goods in through the API, and into the tally. */
  async receive(sku: string, qty: number): Promise<void> {
    const r = await this.api('POST', `/api/stock/${sku}/receive`, { qty, ref: `opening-${RUN}` });
    if (r.status !== 200) throw new Error(`receive ${sku}: ${r.status} ${JSON.stringify(r.body)}`);
    this.stock.add(sku, qty);
  }

  /** The books to check: the in-process ledger's handle, else one of our own. */
  async books(): Promise<LedgerDb> {
    if (this.ledger) return this.ledger.ldb;
    this.booksHandle ??= await openLedgerDb(this.dbUrl);
    return this.booksHandle;
  }

  /** Close our own handle (SQLite: before a ledger process takes the file again). */
  async closeBooks(): Promise<void> {
    const h = this.booksHandle;
    this.booksHandle = undefined;
    await h?.close();
  }

  /** A register with its own proxy to the broker, started. */
  async till(name: string, opts: TillOptions = {}): Promise<Till> {
    const proxy = await new MqttProxy(() => this.brokerTarget(), { online: !opts.offline }).start();
    this.proxies.push(proxy);
    const stateDir = path.join(this.dir, name);
    mkdirSync(path.dirname(stateDir), { recursive: true });
    const till = new Till(this.deviceId(name), stateDir, proxy, this.storeId, { ...opts }, registerdBundle);
    this.tills.push(till);
    this.clientIds.add(`register-${till.deviceId}`);
    await till.start();
    return till;
  }

  /**
   * The register drained (its status says pending 0), and the books hold its last seq: on a shared
   * broker another ledger may ack our registers too, so the register's word alone is not enough.
   */
  async settle(till: Till, timeoutMs = WAIT_MS): Promise<TillSnapshot> {
    const snap = await till.settle(timeoutMs);
    const ldb = await this.books();
    await waitFor(`the books to hold ${till.deviceId} through seq ${snap.lastSeq}`, async () => {
      return (await cursorOf(ldb, till.deviceId, snap.epoch)) === snap.lastSeq;
    });
    return snap;
  }

  /** The last ack the in-process ledger published for a device, as its log says. */
  lastAck(deviceId: string): LogLine | undefined {
    const topic = topics.ack(deviceId);
    for (let i = this.logs.length - 1; i >= 0; i--) {
      const l = this.logs[i]!;
      if (l.msg === 'ack' && l.topic === topic) return l;
    }
    return undefined;
  }

  /** Everything this harness made, in order: registers, ledgers, proxies, books, broker leftovers, files. */
  async dispose(): Promise<void> {
    const step = async (what: string, run: () => Promise<unknown>) => {
      try {
        await run();
      } catch (err) {
        process.stderr.write(`sync harness cleanup (${what}): ${String((err as Error)?.message ?? err)}\n`);
      }
    };
    for (const till of this.tills) await step(`stop ${till.deviceId}`, () => till.stop());
    for (const child of this.children) await step('stop ledger child', () => child.stop());
    await step('stop ledger', () => this.stopLedger());
    for (const proxy of this.proxies) await step('stop proxy', () => proxy.stop());
    await step('close books', () => this.closeBooks());
    if (this.schema) {
      const schema = this.schema;
      await step('drop schema', () => withAdmin((c) => c.query(`drop schema "${schema}" cascade`)));
    }
    if (this.mosquitto) {
      const retained = this.tills.flatMap((t) => [topics.ack(t.deviceId), topics.status(t.deviceId)]);
      await step('clear retained', () => clearRetained(MOSQUITTO_URL, retained));
      await step('drop sessions', () => dropSessions(MOSQUITTO_URL, [...this.clientIds]));
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function withAdmin<T>(run: (c: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    return await run(admin);
  } finally {
    await admin.end();
  }
}

/** Empty retained publishes: the broker forgets what we left on these topics. */
export async function clearRetained(url: string, topicList: string[]): Promise<void> {
  if (!topicList.length) return;
  const c = await connectAsync(url, { clientId: `sync-clean-${RUN}`, clean: true, reconnectPeriod: 0 });
  try {
    for (const topic of topicList) await c.publishAsync(topic, '', { qos: 1, retain: true });
  } finally {
    await c.endAsync();
  }
}

/** Connect clean and leave: the broker drops each persistent session (and whatever it queued). */
export async function dropSessions(url: string, clientIds: string[]): Promise<void> {
  for (const clientId of clientIds) {
    const c = await connectAsync(url, { clientId, clean: true, reconnectPeriod: 0 });
    await c.endAsync();
  }
}

// ---- what the books must say ----

/** 'journal applied' lines of the ledger's log for one device. */
export function appliedLines(lines: LogLine[], deviceId: string): LogLine[] {
  return lines.filter((l) => l.msg === 'journal applied' && l.deviceId === deviceId);
}

/** The books of these devices only (the shared broker's other traffic may leave rows of its own). */
export async function booksOf(ldb: LedgerDb, deviceIds: string[]) {
  const all = await snapshotBooks(ldb);
  const ours = new Set(deviceIds);
  const saleIds = new Set(
    all.sales!.filter((s) => ours.has(s.device_id as string)).map((s) => s.sale_id as string),
  );
  const refundIds = new Set(
    all.refunds!.filter((r) => ours.has(r.device_id as string)).map((r) => r.refund_id as string),
  );
  const out: typeof all = {};
  for (const [table, rows] of Object.entries(all)) {
    out[table] = rows.filter((row) => {
      if ('device_id' in row && row.device_id !== null) return ours.has(row.device_id as string);
      if ('sale_id' in row) return saleIds.has(row.sale_id as string);
      if ('refund_id' in row) return refundIds.has(row.refund_id as string);
      return true;
    });
  }
  return out;
}

export interface BooksExpectation {
  tills: TillSnapshot[];
  stock: StockTally;
  /** Oversell exceptions expected per device (0 when not listed). */
  oversells?: Record<string, number>;
}

/**
 * Exactly once and honest stock, from the ledger's tables:
 * - per (device, epoch): the cursor at the register's last seq, one inbox row per seq, all applied;
 * - the register's sales and refunds, each once (by id), none extra;
 * - per shift: count, total, change and each tender kind equal to the register's X report;
 * - nothing quarantined, no chain break, no gap left open, only the expected oversells;
 * - on-hand ≥ 0 everywhere, equal to the sum of its moves and to what the test expects.
 */
export async function assertBooks(t: Test, ldb: LedgerDb, expect: BooksExpectation): Promise<void> {
  const db = ldb.db;
  const devices = [...new Set(expect.tills.map((s) => s.deviceId))];
  for (const deviceId of devices) {
    const snaps = expect.tills.filter((s) => s.deviceId === deviceId);
    const [cursors, inbox, sales, tenders, refunds, quarantine, exceptions] = await Promise.all([
      db.selectFrom('device_cursors').selectAll().where('device_id', '=', deviceId).execute(),
      db.selectFrom('inbox').select(['epoch', 'seq', 'outcome']).where('device_id', '=', deviceId).execute(),
      db
        .selectFrom('sales')
        .select(['sale_id', 'epoch', 'shift_id', 'total_minor', 'rounding_minor', 'change_minor'])
        .where('device_id', '=', deviceId)
        .execute(),
      db
        .selectFrom('tenders')
        .innerJoin('sales', 'sales.sale_id', 'tenders.sale_id')
        .select(['sales.shift_id', 'tenders.kind', 'tenders.amount_minor'])
        .where('sales.device_id', '=', deviceId)
        .execute(),
      db
        .selectFrom('refunds')
        .select(['refund_id', 'epoch', 'amount_minor'])
        .where('device_id', '=', deviceId)
        .execute(),
      db.selectFrom('quarantine').select(['seq', 'code']).where('device_id', '=', deviceId).execute(),
      db
        .selectFrom('exceptions')
        .select(['kind', 'seq', 'resolved_at'])
        .where('device_id', '=', deviceId)
        .execute(),
    ]);
    t.same(
      cursors.map((c) => ({ epoch: c.epoch, lastSeq: c.last_seq, gapFrom: c.gap_from })).sort(byEpoch),
      snaps.map((s) => ({ epoch: s.epoch, lastSeq: s.lastSeq, gapFrom: null })).sort(byEpoch),
      `${deviceId}: a cursor per epoch, at the register's last seq`,
    );
    for (const s of snaps) {
      const rows = inbox.filter((r) => r.epoch === s.epoch);
      const seqs = new Set(rows.map((r) => r.seq));
      t.ok(
        rows.length === s.lastSeq &&
          seqs.size === s.lastSeq &&
          [...seqs].every((q) => q >= 1 && q <= s.lastSeq),
        `${deviceId} epoch ${s.epoch}: seqs 1..${s.lastSeq} in the inbox once each (${rows.length} rows)`,
      );
      t.same(
        rows.filter((r) => r.outcome !== 'applied'),
        [],
        `${deviceId} epoch ${s.epoch}: every record applied`,
      );
      const epochSales = sales.filter((r) => r.epoch === s.epoch).map((r) => r.sale_id);
      t.same(epochSales.sort(), [...s.saleIds].sort(), `${deviceId} epoch ${s.epoch}: each sale once`);
      t.same(
        refunds
          .filter((r) => r.epoch === s.epoch)
          .map((r) => r.refund_id)
          .sort(),
        [...s.refundIds].sort(),
        `${deviceId} epoch ${s.epoch}: each refund once`,
      );
      const shiftSales = sales.filter((r) => r.shift_id === s.x.shiftId);
      const shiftTenders = tenders.filter((r) => r.shift_id === s.x.shiftId);
      const byTender = { cash: 0, card: 0 };
      for (const r of shiftTenders) byTender[r.kind] += r.amount_minor;
      t.same(
        {
          sales: shiftSales.length,
          totalMinor: sum(shiftSales.map((r) => r.total_minor + r.rounding_minor)),
          changeMinor: sum(shiftSales.map((r) => r.change_minor)),
          byTender,
          refundsMinor: sum(refunds.filter((r) => r.epoch === s.epoch).map((r) => r.amount_minor)),
        },
        {
          sales: s.x.totals.sales,
          totalMinor: s.x.totals.totalMinor,
          changeMinor: s.x.totals.changeMinor,
          byTender: s.x.totals.byTender,
          refundsMinor: s.x.totals.refunds.amountMinor,
        },
        `${deviceId} epoch ${s.epoch}: the books equal the register's X report`,
      );
    }
    t.equal(new Set(sales.map((r) => r.sale_id)).size, sales.length, `${deviceId}: no sale id twice`);
    t.same(quarantine, [], `${deviceId}: nothing quarantined`);
    t.same(
      exceptions.filter((e) => e.kind === 'chain_break' || e.kind === 'quarantine'),
      [],
      `${deviceId}: no chain break`,
    );
    t.same(
      exceptions.filter((e) => e.kind === 'gap' && e.resolved_at === null),
      [],
      `${deviceId}: no gap left open`,
    );
    t.equal(
      exceptions.filter((e) => e.kind === 'oversell').length,
      expect.oversells?.[deviceId] ?? 0,
      `${deviceId}: oversells as expected`,
    );
  }

  const [stock, moves] = await Promise.all([
    db.selectFrom('stock').select(['sku', 'on_hand']).execute(),
    db.selectFrom('stock_moves').select(['sku', 'qty']).execute(),
  ]);
  const onHand = new Map(stock.map((r) => [r.sku, r.on_hand]));
  t.same(
    stock.filter((r) => r.on_hand < 0),
    [],
    'on-hand never below zero',
  );
  const moved = new Map<string, number>();
  for (const m of moves) moved.set(m.sku, (moved.get(m.sku) ?? 0) + m.qty);
  t.same(
    stock.filter((r) => (moved.get(r.sku) ?? 0) !== r.on_hand),
    [],
    'on-hand is the sum of its moves',
  );
  const want = Object.fromEntries([...expect.stock.expected].sort());
  const got = Object.fromEntries(
    [...expect.stock.expected.keys()].sort().map((sku) => [sku, onHand.get(sku)]),
  );
  t.same(got, want, 'on-hand = received − sold + refunded − ordered');
}

function byEpoch(a: { epoch: number }, b: { epoch: number }): number {
  return a.epoch - b.epoch;
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** The ledger's cursor for a device (its latest epoch's last seq), 0 when none. */
export async function cursorOf(ldb: LedgerDb, deviceId: string, epoch?: number): Promise<number> {
  const row = await ldb.db
    .selectFrom('device_cursors')
    .select(['last_seq'])
    .where('device_id', '=', deviceId)
    .$if(epoch !== undefined, (q) => q.where('epoch', '=', epoch!))
    .orderBy('last_seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.last_seq ?? 0;
}
