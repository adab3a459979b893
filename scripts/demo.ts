// `npm start`: a whole demo store on this machine, in this one process.
//
//   the ledger      SQLite in <state>/ledger.db, its embedded MQTT broker and HTTP API; stock for every
//                   catalog SKU on first start; the demo catalog and cashiers stored in it
//   the switch      a TCP proxy between the register and the broker, up or down as <state>/net says
//                   (`npm run net -- down|up|status`)
//   the devices     card terminal, printer and a serial scanner as simulators (scripts/demo/devices.ts)
//   registerd       the register, its journal and control socket in <state>, its link through the switch
//   the till UI     on this terminal; headless (`--no-ui`, or no terminal) it prints one ready line
//
// Logs go to <state>/demo.log; <state>/demo.json tells the other demo commands where everything is.
//   tsx scripts/demo.ts [--no-ui] [--state DIR] [--http PORT] [--mqtt PORT] [--keymap FILE]
//   (DEMO_STATE_DIR, DEMO_HTTP_PORT, DEMO_MQTT_PORT; a flag wins; DEMO_NO_SOCAT=1: in-process devices)
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseConfig } from '../appliance/config.js';
import { startRegisterd, type Daemon } from '../appliance/registerd.js';
import { CatalogSchema } from '../appliance/till/catalog.js';
import { CashierListSchema } from '../appliance/till/cashiers.js';
import type { RunningTillUi } from '../appliance/ui/main.js';
import { LEDGER_DEFAULTS, startLedger, type RunningLedger } from '../ledger/main.js';
import { hasSocat } from './sim/pty.js';
import { bannerLines, DEMO_OPERATOR } from './demo/banner.js';
import { ensureOperator } from '../ledger/auth/operators.js';
import { startDemoDevices, type DemoDevices } from './demo/devices.js';
import { seedLedger } from './demo/ledger-seed.js';
import { LogFile } from './demo/log-file.js';
import {
  DemoError,
  demoFiles,
  findRunningDemo,
  parsePort,
  readNetFile,
  resolveStateDir,
  userPath,
  writeFileAtomic,
  type DemoInfo,
} from './demo/state.js';
import { ConnectionSwitch } from './demo/switch.js';

const DEMO_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'demo');
/** A clean stop takes well under a second; past this the store is taken down hard (exit 1). */
const STOP_TIMEOUT_MS = 20_000;
/** The ledger's default ports (18080, 18830): clear of 8080 and MQTT's 1883. */
const DEFAULT_HTTP_PORT = LEDGER_DEFAULTS.http;
const DEFAULT_MQTT_PORT = Number(LEDGER_DEFAULTS.mqtt.split(':')[1]);
/** A Unix socket's path, at most (registerd refuses a longer one; checked here before anything starts). */
const MAX_SOCKET_PATH_BYTES = 107;

const USAGE = `usage: npm start -- [--no-ui] [--state DIR] [--http PORT] [--mqtt PORT] [--keymap FILE]
  --state DIR   where the demo keeps its journal, books, receipts and logs (DEMO_STATE_DIR; ./demo-state)
  --http PORT   the ledger's HTTP API (DEMO_HTTP_PORT; ${DEFAULT_HTTP_PORT}, a free one if that is busy; 0: any)
  --mqtt PORT   the ledger's embedded MQTT broker (DEMO_MQTT_PORT; ${DEFAULT_MQTT_PORT}, likewise)
  --keymap FILE the till's keymap (docs/till-ui.md)
  --no-ui       no till on this terminal: print one JSON line when ready, stop on SIGINT/SIGTERM`;

export interface DemoOptions {
  stateDir: string;
  http: number;
  mqtt: number;
  /** Which ports are the defaults (a busy default is replaced by a free one; a port asked for is not). */
  defaultPorts: { http: boolean; mqtt: boolean };
  ui: boolean;
  /** The till's keymap (docs/till-ui.md); its default without. */
  keymapFile?: string;
  /** Devices on socat pty pairs; false: in-process simulators (no socat, or DEMO_NO_SOCAT=1). */
  socat: boolean;
}

export function parseDemoArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): DemoOptions {
  let values: {
    state?: string;
    http?: string;
    mqtt?: string;
    keymap?: string;
    'no-ui'?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        state: { type: 'string' },
        http: { type: 'string' },
        mqtt: { type: 'string' },
        keymap: { type: 'string' },
        'no-ui': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new DemoError(`${(err as Error).message}\n${USAGE}`, 2);
  }
  if (values.help) throw new DemoError(USAGE, 0);
  const stateDir = resolveStateDir(values.state, env);
  if (Buffer.byteLength(path.join(stateDir, 'control.sock')) > MAX_SOCKET_PATH_BYTES)
    throw new DemoError(
      `--state: ${stateDir} is too long a path for the register's control socket in it ` +
        `(${MAX_SOCKET_PATH_BYTES} bytes at most for DIR/control.sock): use a shorter one`,
      2,
    );
  const http = values.http ?? (env.DEMO_HTTP_PORT || undefined);
  const mqtt = values.mqtt ?? (env.DEMO_MQTT_PORT || undefined);
  return {
    stateDir,
    http: http === undefined ? DEFAULT_HTTP_PORT : parsePort(http, values.http ? '--http' : 'DEMO_HTTP_PORT'),
    mqtt: mqtt === undefined ? DEFAULT_MQTT_PORT : parsePort(mqtt, values.mqtt ? '--mqtt' : 'DEMO_MQTT_PORT'),
    defaultPorts: { http: http === undefined, mqtt: mqtt === undefined },
    ui: !values['no-ui'] && process.stdout.isTTY === true,
    ...(values.keymap ? { keymapFile: userPath(values.keymap, env) } : {}),
    socat: env.DEMO_NO_SOCAT !== '1' && hasSocat(),
  };
}

function readJson(file: string): unknown {
  return JSON.parse(readFileSync(file, 'utf8'));
}

async function main(argv: string[]): Promise<void> {
  let opts: DemoOptions;
  try {
    opts = parseDemoArgs(argv);
  } catch (err) {
    if (!(err instanceof DemoError)) throw err;
    (err.exitCode === 0 ? process.stdout : process.stderr).write(`${err.message}\n`);
    process.exit(err.exitCode);
  }
  const files = demoFiles(opts.stateDir);
  const running = findRunningDemo(opts.stateDir);
  if (running && running.pid !== process.pid) {
    process.stderr.write(
      `a demo is already running in ${opts.stateDir} (pid ${running.pid}): stop it first ` +
        `(Ctrl-C in its terminal, or kill ${running.pid}), or give another --state DIR\n`,
    );
    process.exit(1);
  }
  mkdirSync(opts.stateDir, { recursive: true, mode: 0o750 });
  const logFile = new LogFile(files.log);
  const log = logFile.logger('demo');

  // Everything started is stopped in reverse order, once, whatever asked for it.
  const cleanup: { name: string; run: () => Promise<void> | void }[] = [];
  let devices: DemoDevices | null = null;
  let ui: RunningTillUi | null = null;
  let stopping: Promise<void> | null = null;
  const say = (line: string) => process.stderr.write(`${line}\n`);

  const shutdown = (reason: string, code: number): Promise<void> =>
    (stopping ??= (async () => {
      log.info({ reason }, 'stopping');
      const hard = setTimeout(() => {
        log.error({ ms: STOP_TIMEOUT_MS }, 'stop took too long: stopping hard');
        devices?.kill();
        process.exit(1);
      }, STOP_TIMEOUT_MS);
      await started.catch(() => {});
      if (ui) {
        try {
          ui.stop(); // gives the terminal back before anything else is said
        } catch (err) {
          log.error({ err: String(err) }, 'the till UI did not stop cleanly');
        }
      }
      for (const step of cleanup.reverse()) {
        try {
          await step.run();
        } catch (err) {
          log.error({ step: step.name, err: String((err as Error)?.message ?? err) }, 'stop step failed');
          code = code || 1;
        }
      }
      cleanup.length = 0;
      clearTimeout(hard);
      log.info({ code }, 'stopped');
      logFile.close();
      if (reason !== 'start failed') say(`demo store stopped (${reason}).`);
      process.exit(code);
    })());

  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));
  process.on('SIGHUP', () => void shutdown('SIGHUP: the terminal closed', 0));
  // Whatever ends the process, no socat is left holding ptys.
  process.on('exit', () => devices?.kill());
  process.on('uncaughtException', (err) => {
    log.error({ err: String(err?.stack ?? err) }, 'uncaught exception');
    void shutdown(`failed: ${err?.message ?? err}`, 1);
  });
  process.on('unhandledRejection', (err) => {
    log.error({ err: String((err as Error)?.stack ?? err) }, 'unhandled rejection');
    void shutdown(`failed: ${(err as Error)?.message ?? err}`, 1);
  });

  const started = (async () => {
    const catalog = CatalogSchema.parse(readJson(path.join(DEMO_DIR, 'catalog.json')));
    const cashiers = CashierListSchema.parse(readJson(path.join(DEMO_DIR, 'cashiers.json')));
    // The switch keeps its position across restarts; a first start (or a garbled file) is up.
    if (readNetFile(files.net) === null) writeFileAtomic(files.net, 'up\n');

    const ledger: RunningLedger = await startLedger(
      {
        db: `sqlite:${files.ledgerDb}`,
        mqtt: `embedded:${opts.mqtt}`,
        http: opts.http,
        host: '127.0.0.1',
        defaultPorts: opts.defaultPorts,
        // One machine, nothing in front: the demo's seeding and `npm run` tools call /api without a
        // login; the fleet page still asks for one (docs/fleet-page.md).
        apiAuth: 'loopback',
      },
      { log: logFile.logger('ledger') },
    );
    cleanup.push({ name: 'ledger', run: () => ledger.stop() });
    await seedLedger(ledger, { storeId: catalog.storeId, catalog, cashiers }, log);
    // The fleet page's demo operator (issue 9): an admin whose password the banner prints.
    await ensureOperator(ledger.ldb, { ...DEMO_OPERATOR, role: 'admin' });

    const broker = new URL(ledger.mqttUrl);
    const link = new ConnectionSwitch({
      upstream: { host: broker.hostname, port: Number(broker.port) },
      netFile: files.net,
      log: logFile.logger('switch'),
    });
    const proxyPort = await link.start();
    cleanup.push({ name: 'switch', run: () => link.stop() });

    devices = await startDemoDevices({
      stateDir: opts.stateDir,
      netFile: files.net,
      receiptsFile: files.receipts,
      log: (c) => logFile.logger(c),
      socat: opts.socat,
    });
    const d = devices;
    cleanup.push({ name: 'devices', run: () => d.stop() });

    const raw = readJson(path.join(DEMO_DIR, 'registerd.json')) as Record<string, unknown>;
    const config = parseConfig(
      {
        ...raw,
        stateDir: opts.stateDir,
        // A shop back online is seen within 3 s: the demo is worked by hand, right after npm run net -- up.
        cloud: {
          reconnectMaxMs: 3000,
          ...(raw.cloud as object | undefined),
          brokerUrl: `mqtt://127.0.0.1:${proxyPort}`,
        },
        devices: { ...(raw.devices as object | undefined), ...d.config },
      },
      {},
      DEMO_DIR,
    );
    const daemon: Daemon = await startRegisterd(config, {
      log: logFile.logger('registerd'),
      onFatal: (err) => {
        // As registerd itself: after an fsync error the journal is not touched again (docs/journal.md).
        log.error({ alarm: 'journal', code: err.code }, 'journal failed: the store stops at once');
        ui?.stop();
        say(`the register's journal failed (${err.code}): stopped at once; see ${files.log}`);
        process.exit(75);
      },
    });
    cleanup.push({ name: 'registerd', run: () => daemon.stop() });

    const info: DemoInfo = {
      pid: process.pid,
      stateDir: opts.stateDir,
      controlSocket: daemon.socketPath,
      ledgerHttp: ledger.httpUrl,
      brokerUrl: ledger.mqttUrl,
      proxyPort,
      scannerPeer: d.scannerPeer,
      receiptsFile: files.receipts,
      netFile: files.net,
      logFile: files.log,
      devices: d.kinds,
      startedAt: Date.now(),
    };
    writeFileAtomic(files.info, JSON.stringify(info, null, 2) + '\n');
    cleanup.push({
      name: 'demo.json',
      run: () => {
        // Only our own: a demo started meanwhile in the same directory keeps its file.
        if (findRunningDemo(opts.stateDir)?.pid === process.pid) rmSync(files.info, { force: true });
      },
    });
    const busy: string[] = [];
    const httpPort = Number(new URL(ledger.httpUrl).port);
    if (opts.defaultPorts.http && httpPort !== opts.http)
      busy.push(`port ${opts.http} was busy: HTTP on ${httpPort}`);
    if (opts.defaultPorts.mqtt && Number(broker.port) !== opts.mqtt)
      busy.push(`port ${opts.mqtt} was busy: MQTT on ${broker.port}`);
    const banner = bannerLines({
      info,
      catalog,
      cashiers,
      deviceId: config.deviceId,
      journal: daemon.journal.recovery,
      net: link.up ? 'up' : 'down',
      busy,
    });
    log.info({ ...info }, 'demo store open');
    return { info, banner, daemon };
  })();

  let open: Awaited<typeof started>;
  try {
    open = await started;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    log.error({ code: e?.code, err: String(e?.message ?? err) }, 'cannot start');
    say(`the demo store cannot start: ${e?.code ? `${e.code}: ` : ''}${e?.message ?? String(err)}`);
    say(`(its log: ${files.log})`);
    await shutdown('start failed', 1);
    return;
  }
  if (stopping) return; // a signal came during the start

  if (opts.ui) {
    // Loaded only when shown: a headless store (CI, the smoke test, a pipe) never loads blessed.
    const { runTillUi } = await import('../appliance/ui/main.js');
    if (stopping) return;
    process.stdout.write(open.banner.join('\n') + '\n');
    try {
      ui = await runTillUi({
        socketPath: open.daemon.socketPath,
        // The banner scrolls away under the till: the PINs stay on the login screen.
        loginHint: 'Demo PINs: Ana 1111, Ben 2222, Mia 9999. F1: keys. Ctrl-C: stop the store.',
        ...(opts.keymapFile ? { keymapFile: opts.keymapFile } : {}),
      });
    } catch (err) {
      say(`the till cannot start: ${(err as Error)?.message ?? err}`);
      await shutdown('the till could not start', 1);
      return;
    }
    if (stopping) {
      ui.stop(); // a signal came while the till was starting: shutdown has passed the UI already
      return;
    }
    ui.done.then(
      () => void shutdown('the till was closed', 0),
      (err: unknown) => {
        log.error({ err: String((err as Error)?.stack ?? err) }, 'the till UI failed');
        void shutdown(`the till UI failed: ${(err as Error)?.message ?? err}`, 1);
      },
    );
    return;
  }
  // Headless: people read stderr, programs read the one line on stdout.
  say(open.banner.join('\n'));
  process.stdout.write(JSON.stringify({ event: 'ready', ...open.info }) + '\n');
}

void main(process.argv.slice(2));
