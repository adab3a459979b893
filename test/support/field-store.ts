// A store of real processes for the end-to-end field tests: the ledger (SQLite, embedded aedes broker,
// HTTP API) as a child process, and per store a register (registerd, bundled), the card terminal
// simulator on a socat pty following the store's net file, the printer simulator on TCP writing its
// receipts to a file, and the connection switch (scripts/demo/switch.ts) in the test process, which the
// test flips as the operator does (`npm run net -- down|up`).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../appliance/log.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { ConnectionSwitch } from '../../scripts/demo/switch.js';
import { ptyPair, type PtyPair } from '../../scripts/sim/pty.js';
import { controlCaller, kill9, startDaemon, type DaemonProcess } from './registerd-process.js';
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

export async function startLedgerProcess(bins: Bins, dir: string): Promise<LedgerProcess> {
  const { child, line } = await spawnUntil(
    bins.ledger,
    [
      '--db',
      `sqlite:${path.join(dir, 'ledger.db')}`,
      '--mqtt',
      'embedded:0',
      '--http',
      '0',
      '--host',
      '127.0.0.1',
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

export interface Store {
  deviceId: string;
  dir: string;
  receiptsFile: string;
  call: ReturnType<typeof controlCaller>;
  status(): Promise<RegisterStatus>;
  /** The operator's switch: writes the net file and waits for the switch and the terminal to follow. */
  net(to: 'up' | 'down'): Promise<void>;
  daemon(): DaemonProcess;
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
): Promise<Store> {
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
    const broker = new URL(ledger.mqtt);
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
        storeId: 'demo-store',
        stateDir,
        clock: { assumeTrusted: true },
        seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
        cloud: { brokerUrl: `mqtt://127.0.0.1:${proxyPort}`, reconnectMaxMs: 1000 },
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
