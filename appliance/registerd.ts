#!/usr/bin/env node
// registerd: the register daemon. Recovers the journal, loads the cached catalog and cashier list,
// answers the control socket, and settles any card payment a crash left open before taking new work.
//   registerd --config FILE      (or REGISTER_CONFIG=FILE)
import { randomInt } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { LowSync } from 'lowdb';
import { loadConfig, type Config } from './config.js';
import { RegisterError, isRegisterError } from './errors.js';
import { jsonLogger, type Logger } from './log.js';
import { systemClock, type Clock } from './clock.js';
import { Journal } from './journal/journal.js';
import type { JournalFs } from './journal/fs.js';
import { openDurableJson } from './store/durable-json.js';
import { ControlServer } from './control/server.js';
import { CatalogSchema, type Catalog } from './till/catalog.js';
import { CashierListSchema, type CashierList } from './till/cashiers.js';
import type { CardTerminal } from './till/card.js';
import { openDevices, type DeviceSet } from './devices/open-devices.js';
import { Register } from './till/register.js';
import { CloudBridge } from '../cloud-bridge/bridge.js';
import { Enroller, isEnrolled } from '../cloud-bridge/enrol.js';
import { VERSION } from './version.js';
import { registerReducer, type RegisterState } from './till/state.js';
import { SystemdNotifier } from './systemd/notify.js';
import { HealthWatchdog, journalWritable, watchdogTimeoutMs } from './systemd/watchdog.js';

/** Exit status after an fsync error: the unit reboots the appliance on it (docs/journal.md). */
export const EXIT_JOURNAL_FATAL = 75;
/** Exit status for a configuration that cannot be used (sysexits EX_CONFIG). */
export const EXIT_CONFIG = 78;

export interface Daemon {
  register: Register;
  journal: Journal<RegisterState>;
  server: ControlServer;
  devices: DeviceSet;
  bridge: CloudBridge | null;
  socketPath: string;
  stop(): Promise<void>;
}

export interface DaemonOptions {
  clock?: Clock;
  terminal?: CardTerminal;
  log?: Logger;
  /** Called when the journal hits an unrecoverable error (the process should exit). */
  onFatal?: (err: RegisterError) => void;
  /** The file system under the state dir's durable files: the real one unless the soak's simulated power. */
  fs?: JournalFs;
}

function openStore<T>(
  file: string,
  validate: (d: unknown) => T,
  log: Logger,
  fs: JournalFs | undefined,
): LowSync<T | null> {
  return openDurableJson<T | null>(file, {
    ...(fs ? { fs } : {}),
    validate: (d) => validate(d),
    defaultData: null,
    onFallback: (reason) => log.warn({ file, reason }, 'using the previous copy'),
  });
}

/** Install a seed document when nothing newer is cached (first boot, the demo). */
function seed<T extends { version: number }>(
  db: LowSync<T | null>,
  file: string | undefined,
  validate: (d: unknown) => T,
  log: Logger,
): void {
  if (!file) return;
  let doc: T | null;
  try {
    doc = openDurableJson<T | null>(file, { validate, defaultData: null }).data;
  } catch (err) {
    throw new RegisterError(
      'CONFIG_INVALID',
      `config: seed file ${file} cannot be used: ${(err as Error).message}`,
    );
  }
  if (!doc) throw new RegisterError('CONFIG_INVALID', `config: seed file ${file} is missing`);
  if (db.data && db.data.version >= doc.version) return;
  db.data = doc;
  db.write();
  log.info({ file, version: doc.version }, 'installed seed document');
}

export async function startRegisterd(config: Config, opts: DaemonOptions = {}): Promise<Daemon> {
  const log = opts.log ?? jsonLogger('registerd');
  const clock = opts.clock ?? systemClock({ assumeTrusted: config.clock.assumeTrusted });
  const started = performance.now();
  // The state dir holds the control socket: only registerd's user and group may reach into it.
  mkdirSync(config.stateDir, { recursive: true, mode: 0o750 });
  const journal = Journal.open<RegisterState>({
    dir: path.join(config.stateDir, 'journal'),
    deviceId: config.deviceId,
    epoch: config.epoch,
    newEpoch: () => randomInt(1, 2 ** 32 - 1),
    clock,
    reducer: registerReducer,
    segmentMaxBytes: config.journal.segmentMaxBytes,
    checkpointEveryRecords: config.journal.checkpointEveryRecords,
    log,
    ...(opts.fs ? { fs: opts.fs } : {}),
  });
  log.info(
    { ...journal.recovery, epoch: journal.epoch, ms: Math.round(performance.now() - started) },
    journal.recovery.created ? 'journal created' : 'journal recovered',
  );

  const catalog = openStore<Catalog>(
    path.join(config.stateDir, 'catalog.json'),
    (d) => CatalogSchema.parse(d),
    log,
    opts.fs,
  );
  const cashiers = openStore<CashierList>(
    path.join(config.stateDir, 'cashiers.json'),
    (d) => CashierListSchema.parse(d),
    log,
    opts.fs,
  );
  seed(catalog, config.seed.catalogFile, (d) => CatalogSchema.parse(d), log);
  seed(cashiers, config.seed.cashiersFile, (d) => CashierListSchema.parse(d), log);

  let publish: (state: () => unknown) => void = () => {};
  const devices = openDevices(config.devices, {
    stateDir: config.stateDir,
    clock,
    log,
    ...(opts.terminal ? { terminal: opts.terminal } : {}),
    ...(opts.fs ? { fs: opts.fs } : {}),
    onChange: () => publish(() => register.status()),
  });
  const bridge = openBridge(config, journal, { catalog, cashiers }, clock, log, opts.fs, () =>
    publish(() => register.status()),
  );
  const enroller = openEnroller(config, log, () => publish(() => register.status()));
  const register = new Register({
    journal,
    catalog: () => catalog.data ?? undefined,
    cashiers: () => cashiers.data ?? undefined,
    devices: devices.devices,
    clock,
    limits: config.till,
    log,
    onChange: () => {
      bridge?.notify(); // a new record may be waiting to go
      publish(() => register.status());
    },
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    ...(bridge
      ? {
          syncedThroughSeq: () => bridge.syncedThroughSeq(),
          syncStatus: () =>
            enroller ? { ...bridge.status(), enrolment: enroller.status() } : bridge.status(),
        }
      : {}),
  });
  const socketPath = path.join(config.stateDir, 'control.sock');
  const server = new ControlServer({
    socketPath,
    log,
    stateSnapshot: () => register.status(),
    dispatch: (method, params) => register.execute(method, params),
  });
  publish = (state) => server.publish(state);
  // The terminal must be reachable (or known not to be) before an open card request is asked about.
  await devices.start(register);
  await register.recover();
  await server.start();
  // The link starts after the till answers: selling never waits for the network.
  await bridge?.start();
  enroller?.start();
  log.info({ socket: socketPath, deviceId: config.deviceId, lastSeq: journal.lastSeq }, 'ready');
  return {
    register,
    journal,
    server,
    devices,
    bridge,
    socketPath,
    async stop() {
      await server.stop();
      await enroller?.stop();
      await bridge?.stop();
      await register.drain(); // a command already running finishes and is journaled before the close
      await devices.stop();
      journal.close();
      log.info({}, 'stopped');
    },
  };
}

/** The register's link to the ledger, when the config names a broker. */
function openBridge(
  config: Config,
  journal: Journal<RegisterState>,
  stores: { catalog: LowSync<Catalog | null>; cashiers: LowSync<CashierList | null> },
  clock: Clock,
  log: Logger,
  fs: JournalFs | undefined,
  onChange: () => void,
): CloudBridge | null {
  const { brokerUrl, tls } = config.cloud;
  if (!brokerUrl) return null;
  const install =
    <T>(db: LowSync<T | null>, what: string) =>
    (doc: T & { version: number }) => {
      db.data = doc;
      db.write(); // power-safe: temp file, fsync, rename, fsync dir
      log.info({ version: doc.version }, `installed ${what} from the ledger`);
      onChange();
    };
  return new CloudBridge({
    brokerUrl,
    deviceId: config.deviceId,
    storeId: config.storeId,
    journal,
    stateDir: config.stateDir,
    ...(fs ? { fs } : {}),
    installCatalog: install(stores.catalog, 'catalog'),
    installCashiers: install(stores.cashiers, 'cashier list'),
    currentCatalogVersion: () => stores.catalog.data?.version,
    currentCashiersVersion: () => stores.cashiers.data?.version,
    // Read at each connection attempt, so renewed certificates are picked up without a restart, and
    // an enrolment's as soon as it is done.
    ...(tls
      ? {
          tls: () => {
            if (config.cloud.enrol && !isEnrolled(tls))
              throw new Error('no certificate yet: the register is enrolling (status: sync.enrolment)');
            return {
              ca: readFileSync(tls.caFile),
              cert: readFileSync(tls.certFile),
              key: readFileSync(tls.keyFile),
            };
          },
        }
      : {}),
    batchMaxRecords: config.cloud.batchMaxRecords,
    maxInFlightBatches: config.cloud.maxInFlightBatches,
    ackTimeoutMs: config.cloud.ackTimeoutMs,
    backoff: { maxMs: config.cloud.reconnectMaxMs },
    nowMs: () => clock.nowMs(),
    clockTrusted: () => clock.trusted(),
    version: VERSION,
    log,
    onChange,
  });
}

/** The background enrolment of a register provisioned with a token, while it has no certificate. */
function openEnroller(config: Config, log: Logger, onChange: () => void): Enroller | null {
  const { brokerUrl, tls, enrol } = config.cloud;
  if (!brokerUrl || !tls || !enrol) return null;
  return new Enroller({
    url: enrol.url,
    deviceId: config.deviceId,
    ...tls,
    tokenFile: enrol.tokenFile,
    log,
    onChange,
  });
}

function usage(): never {
  throw new RegisterError('USAGE', 'usage: registerd --config FILE (or REGISTER_CONFIG=FILE)');
}

export async function main(
  argv: string[],
  env = process.env,
  extra: Pick<DaemonOptions, 'fs'> = {},
): Promise<void> {
  const log = jsonLogger('registerd');
  let daemon: Daemon;
  try {
    let file = env.REGISTER_CONFIG;
    if (argv[0] === '--config') file = argv[1] ?? usage();
    else if (argv.length) usage();
    if (!file) usage();
    daemon = await startRegisterd(loadConfig(file, env), {
      ...extra,
      log,
      onFatal: (err) => {
        log.error({ alarm: 'journal', code: err.code }, 'journal failed: exiting for a reboot');
        process.exit(EXIT_JOURNAL_FATAL);
      },
    });
  } catch (err) {
    log.error(
      { code: (err as RegisterError).code, err: String((err as Error)?.message ?? err) },
      'cannot start',
    );
    process.exit(isRegisterError(err, 'CONFIG_INVALID') || isRegisterError(err, 'USAGE') ? EXIT_CONFIG : 1);
  }
  // systemd (docs/operators.md): READY once the journal is recovered and the socket listens, watchdog
  // pings only while healthy, STOPPING at shutdown. Every one a no-op outside a Type=notify unit.
  const notifier = new SystemdNotifier({ env, log });
  notifier.ready();
  const watchdogMs = watchdogTimeoutMs(env, process.pid);
  const watchdog =
    watchdogMs === undefined
      ? undefined
      : new HealthWatchdog({
          notifier,
          timeoutMs: watchdogMs,
          checks: [journalWritable(daemon.journal.dir)],
          log,
        });
  watchdog?.start();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    notifier.stopping();
    watchdog?.stop();
    await daemon.stop();
    await notifier.idle(); // STOPPING=1 delivered (bounded by the notifier's child timeout)
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// Started as registerd itself; not when bundled into another program that calls main() (the soak's).
const entry = process.argv[1] ? realpathSync(process.argv[1]) : '';
if (import.meta.url === pathToFileURL(entry).href && /^registerd\.[cm]?[jt]s$/.test(path.basename(entry))) {
  void main(process.argv.slice(2));
}
