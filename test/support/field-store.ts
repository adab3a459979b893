// A store of real processes for the end-to-end field tests: the ledger (SQLite, embedded aedes broker,
// HTTP API) as a child process, and per store a register (registerd, bundled), the card terminal
// simulator on a socat pty following the store's net file, the printer simulator on TCP writing its
// receipts to a file, and the connection switch (scripts/demo/switch.ts) in the test process, which the
// test flips as the operator does (`npm run net -- down|up`).
//
// The same store runs on two backends (`startFieldBackend`): the single-machine default above, or the
// scale path, the ledger on the machine's shared Mosquitto (two consumers on a shared subscription of
// this run's own group) and PostgreSQL (a fresh schema). On the shared broker every name is this run's
// own (device, store and client ids), the ledger reaches the broker through a proxy that hands it only
// this run's registers' messages, and at the end the retained messages and persistent sessions the run
// made are removed, as the sync suite does (test/support/sync-fixtures.ts).
// `privateMosquitto` is a broker of the test's own, on a port it chose, to stop and start at will.
import Database from 'better-sqlite3';
import pg from 'pg';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { userInfo } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../appliance/log.js';
import { parseDeviceTopic, topics } from '../../cloud-bridge/protocol/wire.js';
import { freshPgSchema } from '../../scripts/bench/sync-ledger.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { ConnectionSwitch } from '../../scripts/demo/switch.js';
import { ptyPair, type PtyPair } from '../../scripts/sim/pty.js';
import { controlCaller, kill9, startDaemon, type DaemonProcess } from './registerd-process.js';
import { MOSQUITTO_URL, MqttProxy, PG_URL, RUN, clearRetained, dropSessions } from './sync-fixtures.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE } from './till-fixtures.js';
import { waitFor } from './wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** A bound on starting one process; each normally starts in well under a second. */
const START_TIMEOUT_MS = 20_000;

export interface Child {
  proc: ChildProcess;
  exited: Promise<void>;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not gone within 5 s; resolves when it has exited. */
  stop(): Promise<void>;
}

function gone(proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null;
}

/** Spawns `node BIN ARGS` and resolves once a stdout line passes `ready` (with that line's JSON). */
export function spawnUntil(
  bin: string,
  args: string[],
  ready: ((line: Record<string, unknown>) => boolean) | null,
): Promise<{ child: Child; line: Record<string, unknown> | null }> {
  const proc = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const child: Child = {
    proc,
    exited,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      if (gone(proc)) return;
      proc.kill('SIGTERM');
      const hard = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(hard);
    },
  };
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err = (err + d).slice(-1_000_000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${path.basename(bin)} not ready within ${START_TIMEOUT_MS} ms:\n${out}\n${err}`));
    }, START_TIMEOUT_MS);
    if (!ready) {
      clearTimeout(timer);
      resolve({ child, line: null });
    }
    let pending = '';
    proc.stdout!.on('data', (d: string) => {
      out = (out + d).slice(-1_000_000);
      pending += d;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const text = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (ready?.(line)) {
          clearTimeout(timer);
          resolve({ child, line });
        }
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(bin)} exited (${code ?? signal}) before ready:\n${out}\n${err}`));
    });
  });
}

export interface Bins {
  registerd: string;
  ledger: string;
  terminalSim: string;
  printerSim: string;
}

/** Every process the field tests start, bundled once (plain node starts far faster than tsx). */
export async function bundleAll(dir: string): Promise<Bins> {
  const [registerd, ledger, terminalSim, printerSim] = await Promise.all(
    [
      'appliance/registerd.ts',
      'ledger/main.ts',
      'scripts/sim/terminal-sim.ts',
      'scripts/sim/printer-sim.ts',
    ].map((entry) => bundle(path.join(root, entry), dir)),
  );
  return { registerd: registerd!, ledger: ledger!, terminalSim: terminalSim!, printerSim: printerSim! };
}

export interface LedgerProcess {
  child: Child;
  http: string;
  mqtt: string;
  /** GET/POST/PUT against the ledger's HTTP API: status and JSON body. */
  api<T = Record<string, unknown>>(
    method: string,
    url: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
}

export interface LedgerProcessOptions {
  /** `--db`: default a SQLite file `ledger.db` in the directory. */
  db?: string;
  /** `--mqtt`: default `embedded:0` (the embedded aedes on a free port). */
  mqtt?: string;
  /** More flags (`--shared`, `--share-group`, `--client-id` …). */
  args?: string[];
}

export async function startLedgerProcess(
  bins: Bins,
  dir: string,
  opts: LedgerProcessOptions = {},
): Promise<LedgerProcess> {
  const { child, line } = await spawnUntil(
    bins.ledger,
    [
      '--db',
      opts.db ?? `sqlite:${path.join(dir, 'ledger.db')}`,
      '--mqtt',
      opts.mqtt ?? 'embedded:0',
      '--http',
      '0',
      '--host',
      '127.0.0.1',
      // The tests stand in for the back office's own tools: /api without a login.
      '--api-auth',
      'loopback',
      ...(opts.args ?? []),
    ],
    (l) => l.event === 'ready',
  );
  const http = String(line!.http);
  return {
    child,
    http,
    mqtt: String(line!.mqtt),
    async api<T>(method: string, url: string, body?: unknown) {
      const res = await fetch(`${http}${url}`, {
        method,
        ...(body === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(10_000),
      });
      return { status: res.status, body: (await res.json()) as T };
    },
  };
}

/** The parts of registerd's `status` the field tests read. */
export interface RegisterStatus {
  deviceId: string;
  lastSeq: number;
  sale: { saleId: string; lines: { sku: string }[] } | null;
  receiptNo: number;
  sync: {
    state: 'connected' | 'connecting' | 'offline';
    lastSeq: number;
    ackedThrough: number;
    pending: number;
    lastError?: unknown;
  } | null;
  offlineCard: { count: number; totalMinor: number };
  devices: Record<string, { state: string }>;
}

export interface StoreOptions {
  /** The register's store id (default `demo-store`): one of the run's own on a shared broker. */
  storeId?: string;
  /** The broker the switch leads to; default the ledger's (its embedded broker). */
  brokerUrl?: string;
  /** More of the register's `cloud` settings (batch sizes, ack timeout …). */
  cloud?: Record<string, unknown>;
}

export interface Store {
  deviceId: string;
  storeId: string;
  dir: string;
  receiptsFile: string;
  call: ReturnType<typeof controlCaller>;
  status(): Promise<RegisterStatus>;
  /** The operator's switch: writes the net file and waits for the switch and the terminal to follow. */
  net(to: 'up' | 'down'): Promise<void>;
  daemon(): DaemonProcess;
  /** The connection switch between the register and the broker (for `slow()`). */
  link: ConnectionSwitch;
  /** kill -9 the register (a power cut). */
  kill9(): Promise<void>;
  /** Starts the register again on the same config and state. */
  restart(): Promise<void>;
  /** Everything this store started, stopped; safe to call twice. */
  stop(): Promise<void>;
}

export async function startStore(
  bins: Bins,
  ledger: LedgerProcess,
  dir: string,
  deviceId: string,
  waitMs: number,
  opts: StoreOptions = {},
): Promise<Store> {
  const storeId = opts.storeId ?? 'demo-store';
  const netFile = path.join(dir, 'net');
  const receiptsFile = path.join(dir, 'receipts.txt');
  writeFileSync(netFile, 'up\n');
  const stops: (() => Promise<void>)[] = [];
  let daemon: DaemonProcess | null = null;
  const stop = async () => {
    if (daemon && !gone(daemon.proc)) await kill9(daemon);
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  };
  try {
    const broker = new URL(opts.brokerUrl ?? ledger.mqtt);
    const link = new ConnectionSwitch({
      upstream: { host: broker.hostname, port: Number(broker.port) },
      netFile,
      log: silentLogger,
      pollMs: 50,
    });
    const proxyPort = await link.start();
    stops.push(() => link.stop());

    const term: PtyPair = await ptyPair(dir, 'terminal');
    stops.push(() => term.close());
    const terminal = (await spawnUntil(bins.terminalSim, ['--port', term.peer, '--follow', netFile], null))
      .child;
    stops.push(() => terminal.stop());
    const terminalOnline = () => {
      // Its log says each change: `terminal offline` / `terminal online`; it starts online.
      const lines = terminal.stderr().match(/"msg":"terminal (online|offline)"/g) ?? [];
      return !(lines.at(-1) ?? '').includes('offline');
    };
    await waitFor(
      'the terminal simulator to run',
      () => terminal.stderr().includes('terminal simulator running'),
      {
        timeoutMs: waitMs,
      },
    );

    const printer = await spawnUntil(
      bins.printerSim,
      ['--tcp', '0', '--host', '127.0.0.1', '--out', receiptsFile, '--columns', '42'],
      (l) => l.event === 'listening',
    );
    stops.push(() => printer.child.stop());
    const printerPort = (printer.line!.tcp as { port: number }).port;

    const stateDir = path.join(dir, 'state');
    const config = path.join(dir, 'registerd.json');
    writeFileSync(
      config,
      JSON.stringify({
        deviceId,
        storeId,
        stateDir,
        clock: { assumeTrusted: true },
        seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
        cloud: { brokerUrl: `mqtt://127.0.0.1:${proxyPort}`, reconnectMaxMs: 1000, ...opts.cloud },
        devices: {
          terminal: { kind: 'ecr', path: term.device },
          printer: { kind: 'tcp', host: '127.0.0.1', port: printerPort },
        },
      }),
    );
    const call = controlCaller(path.join(stateDir, 'control.sock'), 30_000);
    const status = async () => (await call('status')) as unknown as RegisterStatus;
    const ready = async () => {
      daemon = await startDaemon(bins.registerd, config);
      await waitFor(
        'the register with its terminal and printer',
        async () => {
          const s = await status();
          return s.devices.terminal?.state === 'ok' && s.devices.printer?.state === 'ok' && s;
        },
        { timeoutMs: waitMs },
      );
    };
    await ready();
    return {
      deviceId,
      storeId,
      dir,
      receiptsFile,
      call,
      status,
      async net(to) {
        writeFileSync(netFile, `${to}\n`);
        const up = to === 'up';
        await waitFor(`the switch ${to}`, () => link.up === up, { timeoutMs: waitMs });
        await waitFor(`the terminal ${up ? 'online' : 'offline'}`, () => terminalOnline() === up, {
          timeoutMs: waitMs,
        });
        if (!up)
          await waitFor(
            'the register to see the link gone',
            async () => (await status()).sync?.state !== 'connected',
            {
              timeoutMs: waitMs,
            },
          );
      },
      daemon: () => daemon!,
      link,
      async kill9() {
        await kill9(daemon!);
      },
      restart: ready,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---- backends ----

export type FieldBackendKind = 'aedes-sqlite' | 'mosquitto-postgres';

export interface FieldBackend {
  kind: FieldBackendKind;
  ledger: LedgerProcess;
  /** The registers' store (and the online orders'). */
  storeId: string;
  /** What `startStore` needs besides the ledger. */
  storeOptions: StoreOptions;
  /** The n-th device id of this run (remembered, to clear its traces on the shared broker). */
  deviceId(n: number): string;
  /**
   * The device's cash movements (payouts, paid-ins) as the ledger booked them, read straight from its
   * database, read-only: the ledger's HTTP API has no route for them.
   */
  cashMovements(deviceId: string): Promise<CashMovement[]>;
  /** Stops the ledger; on the shared services also removes what this run left there. Call once the stores have stopped. */
  dispose(): Promise<void>;
}

/** A row of the ledger's `cash_movements`, as the tests compare it. */
export interface CashMovement {
  kind: string;
  amountMinor: number;
  reason: string | null;
  approvedBy: string | null;
  seq: number;
}

const CASH_MOVEMENTS_SQL =
  'select kind, amount_minor, reason, approved_by, seq from cash_movements where device_id = $1 order by seq';

type CashMovementRow = {
  kind: string;
  amount_minor: number | string;
  reason: string | null;
  approved_by: string | null;
  seq: number | string;
};

const toCashMovement = (r: CashMovementRow): CashMovement => ({
  kind: r.kind,
  amountMinor: Number(r.amount_minor),
  reason: r.reason,
  approvedBy: r.approved_by,
  seq: Number(r.seq),
});

/** Reads a SQLite ledger's cash movements with a read-only connection of its own. */
function sqliteCashMovements(file: string, deviceId: string): CashMovement[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000'); // the ledger may be writing: wait for its lock, briefly
    return (db.prepare(CASH_MOVEMENTS_SQL.replace('$1', '?')).all(deviceId) as CashMovementRow[]).map(
      toCashMovement,
    );
  } finally {
    db.close();
  }
}

/** Reads a PostgreSQL ledger's cash movements (its schema is in the URL's search_path). */
async function pgCashMovements(url: string, deviceId: string): Promise<CashMovement[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<CashMovementRow>(CASH_MOVEMENTS_SQL, [deviceId])).rows.map(toCashMovement);
  } finally {
    await client.end();
  }
}

/** The ledger as a child process on one backend; see the header for what the shared one takes care of. */
export async function startFieldBackend(
  kind: FieldBackendKind,
  bins: Bins,
  dir: string,
): Promise<FieldBackend> {
  if (kind === 'aedes-sqlite') {
    const ledger = await startLedgerProcess(bins, dir);
    return {
      kind,
      ledger,
      storeId: 'demo-store',
      storeOptions: {},
      deviceId: (n) => `field-till-${n}`,
      cashMovements: (deviceId) =>
        Promise.resolve(sqliteCashMovements(path.join(dir, 'ledger.db'), deviceId)),
      dispose: () => ledger.child.stop(),
    };
  }
  // Ids of this run only: `field-<run>-<n>` devices, `field-<run>` consumers and share group.
  const prefix = `field-${RUN}`;
  const devices = new Set<string>();
  const broker = new URL(MOSQUITTO_URL);
  const target = { host: broker.hostname, port: Number(broker.port || 1883) };
  const schema = await freshPgSchema(PG_URL, `field_${RUN}`);
  const steps: { what: string; run: () => Promise<unknown> }[] = [
    { what: 'drop the schema', run: () => schema.drop() },
  ];
  const dispose = async () => {
    for (const { what, run } of steps.splice(0).reverse()) {
      try {
        await run();
      } catch (err) {
        process.stderr.write(`field backend cleanup (${what}): ${String((err as Error)?.message ?? err)}\n`);
      }
    }
  };
  try {
    const link = await new MqttProxy(() => target, {
      deliverOnly: (topic) => devices.has(parseDeviceTopic(topic)?.deviceId ?? ''),
    }).start();
    steps.push({ what: 'stop the ledger link', run: () => link.stop() });
    const consumers = 2;
    steps.push({
      what: 'drop the sessions',
      run: () =>
        dropSessions(MOSQUITTO_URL, [
          ...Array.from({ length: consumers }, (_, i) => `${prefix}-${i}`),
          ...[...devices].map((d) => `register-${d}`),
        ]),
    });
    steps.push({
      what: 'clear the retained messages',
      run: () =>
        clearRetained(MOSQUITTO_URL, [
          ...[...devices].flatMap((d) => [topics.ack(d), topics.status(d)]),
          topics.catalog(`${prefix}-store`),
          topics.cashiers(`${prefix}-store`),
        ]),
    });
    const ledger = await startLedgerProcess(bins, dir, {
      db: schema.url,
      mqtt: link.url,
      args: ['--shared', '--share-group', prefix, '--consumers', String(consumers), '--client-id', prefix],
    });
    steps.push({ what: 'stop the ledger', run: () => ledger.child.stop() });
    return {
      kind,
      ledger,
      storeId: `${prefix}-store`,
      storeOptions: { storeId: `${prefix}-store`, brokerUrl: MOSQUITTO_URL },
      deviceId: (n) => {
        const id = `${prefix}-${n}`;
        devices.add(id);
        return id;
      },
      cashMovements: (deviceId) => pgCashMovements(schema.url, deviceId),
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

// ---- a broker of the test's own ----

export interface PrivateBroker {
  /** The port it was given once and listens on at every start. */
  port: number;
  url: string;
  running(): boolean;
  start(): Promise<void>;
  /** SIGTERM (a clean stop) or SIGKILL (a crash); resolves once it has exited. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** What it logged (the last 1 MB). */
  log(): string;
}

/** A port nobody listens on now: the kernel's pick for port 0, released for the broker to take. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

const MOSQUITTO_BIN = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';

/**
 * A mosquitto of our own on 127.0.0.1, in memory (no persistence: a restart loses every session and
 * retained message, the harder case for the registers and the ledger), on one port across restarts.
 */
export async function privateMosquitto(dir: string): Promise<PrivateBroker> {
  const port = await freePort();
  const conf = path.join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'log_dest stderr',
      // As root it would switch to the mosquitto user; stay who we are.
      `user ${userInfo().username}`,
    ].join('\n') + '\n',
  );
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let log = '';
  const alive = () => proc !== null && !gone(proc);
  const broker: PrivateBroker = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    running: alive,
    log: () => log,
    async start() {
      if (alive()) return;
      const p = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      exited = new Promise<void>((r) => p.once('exit', () => r()));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          p.kill('SIGKILL');
          reject(new Error(`mosquitto not running within ${START_TIMEOUT_MS} ms:\n${log}`));
        }, START_TIMEOUT_MS);
        let mine = '';
        const onData = (d: Buffer) => {
          log = (log + d.toString()).slice(-1_000_000);
          mine = (mine + d.toString()).slice(-4096);
          if (/ running\s*$/m.test(mine)) {
            clearTimeout(timer);
            resolve();
          }
        };
        p.stdout!.on('data', onData);
        p.stderr!.on('data', onData);
        p.once('exit', (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`mosquitto exited (${code ?? signal}) before running:\n${log}`));
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (!alive()) return;
      proc!.kill(signal);
      const hard = setTimeout(() => proc?.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(hard);
    },
  };
  await broker.start();
  return broker;
}
