#!/usr/bin/env node
// ledger: the cloud side in one process. The books in SQLite or PostgreSQL, MQTT consumers that apply
// the registers' journals and ack them, the HTTP API, and, for the single-machine default, an embedded
// aedes broker; and the fleet page for operators. Prints one JSON line when ready:
// {"event":"ready","mqtt":…,"http":…}.
//   ledger [--db sqlite:PATH|postgres://…] [--mqtt embedded[:PORT]|mqtt(s)://…] [--http PORT]
//          [--host H] [--shared] [--share-group NAME] [--consumers N] [--client-id PREFIX]
//          [--mqtt-ca FILE --mqtt-cert FILE --mqtt-key FILE] [--api-auth required|loopback]
//          [--forward-deadline-hours H] [--secure-cookies] [--https-cert FILE --https-key FILE]
//          [--enrol-ca-cert FILE --enrol-ca-key FILE] [--enrol-days D]
//   ledger operator add NAME --role admin|viewer [--replace] | list | remove NAME   [--db …]
//   ledger enrol add DEVICE --store STORE [--valid-hours H] [--replace] | list | remove DEVICE   [--db …]
import { mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { createSecureContext } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { topics } from '../cloud-bridge/protocol/wire.js';
import { jsonLogger, type Logger } from '../appliance/log.js';
import { EmbeddedBroker } from './broker.js';
import { LedgerConsumer } from './consumer.js';
import { LedgerHttpApi, type Middleware } from './http.js';
import { OperatorAuth, type ApiAuthMode, type ApiToken } from './auth/access.js';
import { runOperatorCli } from './auth/operator-cli.js';
import { CertificateAuthority, ENROL_DEFAULTS } from './enrol/authority.js';
import { runEnrolCli } from './enrol/cli.js';
import { enrolRoutes } from './enrol/routes.js';
import { FleetMonitor, FLEET_DEFAULTS } from './fleet/overview.js';
import { LiveHub } from './fleet/live.js';
import { fleetRoutes } from './fleet/routes.js';
import { openLedgerDb, type LedgerDb } from './db/open.js';
import { applyJournalMessage, CheckedJournalMessage } from './apply.js';
import { applyInSeqOrder } from './seq-order.js';
import { listStoreDocuments, recordDeviceStatus } from './queries.js';

/** Exit status for options that cannot be used (sysexits EX_CONFIG), as registerd's. */
export const EXIT_CONFIG = 78;

export const LEDGER_DEFAULTS = {
  /** The single-store default: a SQLite file beside where the ledger was started. */
  db: 'sqlite:./ledger-data/ledger.db',
  /**
   * Embedded broker port: 18830, clear of MQTT's 1883/8883 so a Mosquitto on the same machine (a
   * developer's, CI's) is left alone. Taken from the free ports when busy, and printed.
   */
  mqtt: 'embedded:18830',
  /** HTTP port: 18080, clear of the usual 8080. Taken from the free ports when busy, and printed. */
  http: 18080,
  /** Loopback: the single-machine default serves this machine; give --host 0.0.0.0 for a store LAN. */
  host: '127.0.0.1',
  /** Consumers in this process: one, unless a real broker spreads devices over a shared subscription. */
  consumers: 1,
  /** Consumers per process, at most: each holds a broker session and up to 16 applies in flight. */
  maxConsumers: 32,
  /**
   * `required`: every /api call needs a session or a token. `loopback` lets programs on this machine
   * use /api without logging in (the demo, tests); never with a reverse proxy on the same machine,
   * which makes every request look local.
   */
  apiAuth: 'required',
  /** Hours an offline card approval may wait to be forwarded: FLEET_DEFAULTS.cardForwardDeadlineMs. */
  forwardDeadlineHours: FLEET_DEFAULTS.cardForwardDeadlineMs / 3_600_000,
} as const;

const MqttTarget = z.union([
  z.string().regex(/^embedded(:\d{1,5})?$/, 'embedded or embedded:PORT'),
  z.string().regex(/^(mqtts?|wss?):\/\/.+/, 'a broker URL: mqtt://, mqtts://, ws:// or wss://'),
]);

/** The ledger's options, checked once at start-up: CLI flags over LEDGER_* environment over defaults. */
export const LedgerOptionsSchema = z
  .object({
    db: z.string().regex(/^(sqlite:.+|postgres(ql)?:\/\/.+)$/, 'sqlite:PATH or postgres://…'),
    mqtt: MqttTarget,
    http: z.number().int().min(0).max(65535),
    host: z.string().min(1).max(255).default(LEDGER_DEFAULTS.host),
    shared: z.boolean().default(false),
    /** The shared-subscription group: ledgers of one deployment share one; two deployments on one broker must not. */
    shareGroup: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,48}$/, '1 to 48 of A-Z a-z 0-9 . _ -')
      .default('ledger'),
    consumers: z.number().int().min(1).max(LEDGER_DEFAULTS.maxConsumers).default(LEDGER_DEFAULTS.consumers),
    /** Consumer i's MQTT client id is `${clientId}-${i}`: stable, so its broker session survives restarts. */
    clientId: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,48}$/, '1 to 48 of A-Z a-z 0-9 . _ -')
      .default(() => defaultClientId()),
    mqttCa: z.string().optional(),
    mqttCert: z.string().optional(),
    mqttKey: z.string().optional(),
    apiAuth: z.enum(['required', 'loopback']).default(LEDGER_DEFAULTS.apiAuth),
    /** A week at most: no card scheme forwards later than that. */
    forwardDeadlineHours: z.number().min(1).max(168).default(LEDGER_DEFAULTS.forwardDeadlineHours),
    /** Mark the session cookie Secure: the page is served over TLS (a proxy in front terminates it). */
    secureCookies: z.boolean().default(false),
    /** Serve HTTPS with this certificate and key (PEM files): both or neither. Cookies are Secure then. */
    httpsCert: z.string().optional(),
    httpsKey: z.string().optional(),
    /** Bearer token for programs with admin rights (LEDGER_API_TOKEN; never a flag, argv is public). */
    apiToken: z.string().min(32).max(256).optional(),
    /** Bearer token for the web shop: online orders only (LEDGER_SHOP_TOKEN). */
    shopToken: z.string().min(32).max(256).optional(),
    /** The fleet CA that signs registers' certificates at enrolment (ledger/enrol/): both or neither. */
    enrolCaCert: z.string().optional(),
    enrolCaKey: z.string().optional(),
    /** Days a certificate issued at enrolment is valid. */
    enrolDays: z.number().int().min(1).max(3650).default(ENROL_DEFAULTS.certificateDays),
    /** Whether each port came from the defaults (then a busy one is replaced by a free one). */
    defaultPorts: z.object({ mqtt: z.boolean(), http: z.boolean() }).default({ mqtt: false, http: false }),
  })
  .superRefine((o, ctx) => {
    const embedded = o.mqtt.startsWith('embedded');
    if (embedded && o.shared)
      ctx.addIssue({
        code: 'custom',
        path: ['shared'],
        message: 'aedes has no shared subscriptions: --shared needs an external broker (--mqtt mqtt://…)',
      });
    if (o.consumers > 1 && !o.shared)
      ctx.addIssue({
        code: 'custom',
        path: ['consumers'],
        message: 'several consumers need --shared, or each would take every message',
      });
    if ((o.mqttCert === undefined) !== (o.mqttKey === undefined))
      ctx.addIssue({ code: 'custom', path: ['mqttCert'], message: '--mqtt-cert and --mqtt-key go together' });
    if ((o.httpsCert === undefined) !== (o.httpsKey === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['httpsCert'],
        message: '--https-cert and --https-key go together',
      });
    if ((o.enrolCaCert === undefined) !== (o.enrolCaKey === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['enrolCaCert'],
        message: '--enrol-ca-cert and --enrol-ca-key go together',
      });
    if (embedded && (o.mqttCa || o.mqttCert))
      ctx.addIssue({ code: 'custom', path: ['mqttCa'], message: 'TLS files are for an external broker' });
  });
export type LedgerOptions = z.input<typeof LedgerOptionsSchema>;

export class LedgerUsageError extends Error {
  override name = 'LedgerUsageError';
}

const USAGE =
  'usage: ledger [--db sqlite:PATH|postgres://…] [--mqtt embedded[:PORT]|mqtt(s)://…] [--http PORT] ' +
  '[--host H] [--shared] [--share-group NAME] [--consumers N] [--client-id PREFIX] [--mqtt-ca FILE --mqtt-cert FILE --mqtt-key FILE] ' +
  '[--api-auth required|loopback] [--forward-deadline-hours H] [--secure-cookies] ' +
  '[--https-cert FILE --https-key FILE] [--enrol-ca-cert FILE --enrol-ca-key FILE] [--enrol-days D]\n' +
  '       ledger operator add NAME --role admin|viewer [--replace] | list | remove NAME  [--db …]\n' +
  '       ledger enrol add DEVICE --store STORE [--valid-hours H] [--replace] | list | remove DEVICE  [--db …]';

/** Flags and LEDGER_* variables into checked options; a bad value fails here, with what is wrong. */
export function parseLedgerArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = {},
): z.output<typeof LedgerOptionsSchema> {
  const flags = new Map<string, string | true>();
  const valued = [
    '--db',
    '--mqtt',
    '--http',
    '--host',
    '--consumers',
    '--client-id',
    '--share-group',
    '--mqtt-ca',
    '--mqtt-cert',
    '--mqtt-key',
    '--api-auth',
    '--forward-deadline-hours',
    '--enrol-ca-cert',
    '--enrol-ca-key',
    '--https-cert',
    '--https-key',
    '--enrol-days',
  ];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const [name, inline] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    if ((name === '--shared' || name === '--secure-cookies') && inline === undefined) flags.set(name, true);
    else if (name === '--help' || name === '-h') throw new LedgerUsageError(USAGE);
    else if (valued.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new LedgerUsageError(`${name} needs a value\n${USAGE}`);
      flags.set(name, value);
    } else throw new LedgerUsageError(`unknown argument ${arg}\n${USAGE}`);
  }
  const pick = (flag: string, envName: string): string | undefined => {
    const v = flags.get(flag);
    return typeof v === 'string' ? v : env[envName] || undefined;
  };
  const mqtt = pick('--mqtt', 'LEDGER_MQTT');
  const http = pick('--http', 'LEDGER_HTTP');
  const consumers = pick('--consumers', 'LEDGER_CONSUMERS');
  const number = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d{1,6}$/.test(v)) throw new LedgerUsageError(`${name} is a number, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  const raw = {
    db: pick('--db', 'LEDGER_DB') ?? LEDGER_DEFAULTS.db,
    mqtt: mqtt ?? LEDGER_DEFAULTS.mqtt,
    http: number(http, '--http') ?? LEDGER_DEFAULTS.http,
    host: pick('--host', 'LEDGER_HOST') ?? LEDGER_DEFAULTS.host,
    shared: flags.get('--shared') === true || env.LEDGER_SHARED === '1' || env.LEDGER_SHARED === 'true',
    consumers: number(consumers, '--consumers') ?? LEDGER_DEFAULTS.consumers,
    clientId: pick('--client-id', 'LEDGER_CLIENT_ID') ?? defaultClientId(),
    shareGroup: pick('--share-group', 'LEDGER_SHARE_GROUP') ?? 'ledger',
    mqttCa: pick('--mqtt-ca', 'LEDGER_MQTT_CA'),
    mqttCert: pick('--mqtt-cert', 'LEDGER_MQTT_CERT'),
    mqttKey: pick('--mqtt-key', 'LEDGER_MQTT_KEY'),
    apiAuth: pick('--api-auth', 'LEDGER_API_AUTH') ?? LEDGER_DEFAULTS.apiAuth,
    forwardDeadlineHours:
      number(pick('--forward-deadline-hours', 'LEDGER_FORWARD_DEADLINE_HOURS'), '--forward-deadline-hours') ??
      LEDGER_DEFAULTS.forwardDeadlineHours,
    secureCookies:
      flags.get('--secure-cookies') === true ||
      env.LEDGER_SECURE_COOKIES === '1' ||
      env.LEDGER_SECURE_COOKIES === 'true',
    httpsCert: pick('--https-cert', 'LEDGER_HTTPS_CERT'),
    httpsKey: pick('--https-key', 'LEDGER_HTTPS_KEY'),
    enrolCaCert: pick('--enrol-ca-cert', 'LEDGER_ENROL_CA_CERT'),
    enrolCaKey: pick('--enrol-ca-key', 'LEDGER_ENROL_CA_KEY'),
    enrolDays:
      number(pick('--enrol-days', 'LEDGER_ENROL_DAYS'), '--enrol-days') ?? ENROL_DEFAULTS.certificateDays,
    apiToken: env.LEDGER_API_TOKEN || undefined,
    shopToken: env.LEDGER_SHOP_TOKEN || undefined,
    defaultPorts: { mqtt: mqtt === undefined, http: http === undefined },
  };
  const parsed = LedgerOptionsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LedgerUsageError(`${issue.path.join('.') || 'options'}: ${issue.message}`);
  }
  return parsed.data;
}

/** `ledger-<host>`: the same on every start of this machine's ledger, different between machines. */
function defaultClientId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 40) || 'host';
  return `ledger-${host}`;
}

export interface RunningLedger {
  mqttUrl: string;
  httpUrl: string;
  ldb: LedgerDb;
  consumers: LedgerConsumer[];
  broker: EmbeddedBroker | undefined;
  http: LedgerHttpApi;
  /** The fleet page's computations, at the ledger's clock. */
  fleet: FleetMonitor;
  /** The fleet page's live feed. */
  live: LiveHub;
  /** Operator sessions and the access middleware. */
  auth: OperatorAuth;
  /** Stops HTTP, lets the consumers finish what they hold, then the broker and the database. */
  stop(): Promise<void>;
}

export interface StartLedgerExtras {
  log?: Logger;
  clock?: { nowMs(): number };
  /** HTTP middleware, run after the operator authentication. */
  middleware?: Middleware[];
  /** Security time (sessions, login throttling); default real time, whatever `clock` is. */
  authClock?: { nowMs(): number };
  /** ms between the live feed's checks of the cards' colours (tests shorten it). */
  liveTickMs?: number;
}

/** A URL fit for logs and the ready line: no password. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
}

/** The host to reach a listener on: loopback for one bound to every interface. */
function reachable(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

function isAddressInUse(err: unknown): boolean {
  return (err as { code?: unknown })?.code === 'EADDRINUSE';
}

export async function startLedger(
  options: LedgerOptions,
  extras: StartLedgerExtras = {},
): Promise<RunningLedger> {
  const parsed = LedgerOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LedgerUsageError(`${issue.path.join('.') || 'options'}: ${issue.message}`);
  }
  const o = parsed.data;
  const log = extras.log ?? jsonLogger('ledger');
  const clock = extras.clock ?? { nowMs: () => Date.now() };
  const cleanup: (() => Promise<void>)[] = [];
  const unwind = async () => {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
  };

  try {
    if (o.db.startsWith('sqlite:')) {
      const file = o.db.slice('sqlite:'.length);
      if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    }
    // The CA first: a wrong file is a configuration error, found before anything listens.
    let ca: CertificateAuthority | undefined;
    if (o.enrolCaCert && o.enrolCaKey) {
      try {
        ca = await CertificateAuthority.load(readFileSync(o.enrolCaCert), readFileSync(o.enrolCaKey));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new LedgerUsageError(
          `enrolment CA: ${e.code ? `cannot read ${e.path ?? 'a file'} (${e.code})` : e.message}`,
        );
      }
    }
    let httpsTls: { cert: Buffer; key: Buffer } | undefined;
    if (o.httpsCert && o.httpsKey) {
      try {
        httpsTls = { cert: readFileSync(o.httpsCert), key: readFileSync(o.httpsKey) };
        createSecureContext(httpsTls); // a certificate and key that do not belong together fail here
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new LedgerUsageError(
          e.path ? `HTTPS: cannot read ${e.path} (${e.code})` : `HTTPS: ${e.message}`,
        );
      }
    }
    const ldb = await openLedgerDb(o.db);
    cleanup.push(() => ldb.close());
    log.info({ db: redact(o.db), dialect: ldb.dialect }, 'books open');

    let broker: EmbeddedBroker | undefined;
    let mqttUrl = o.mqtt;
    if (o.mqtt.startsWith('embedded')) {
      const port = Number(o.mqtt.split(':')[1] ?? 0);
      const brokerLog = childLogger(log, 'broker');
      broker = new EmbeddedBroker({ host: o.host, port, log: brokerLog });
      try {
        await broker.start();
      } catch (err) {
        if (!(isAddressInUse(err) && o.defaultPorts.mqtt)) throw err;
        log.warn({ port }, 'default MQTT port busy: taking a free one');
        broker = new EmbeddedBroker({ host: o.host, port: 0, log: brokerLog });
        await broker.start();
      }
      const b = broker;
      cleanup.push(() => b.stop());
      mqttUrl = `mqtt://${reachable(o.host)}:${b.port}`;
    }

    const tls = {
      ...(o.mqttCa ? { ca: readFileSync(o.mqttCa) } : {}),
      ...(o.mqttCert ? { cert: readFileSync(o.mqttCert) } : {}),
      ...(o.mqttKey ? { key: readFileSync(o.mqttKey) } : {}),
    };
    const fleet = new FleetMonitor({
      ldb,
      clock,
      cardForwardDeadlineMs: Math.round(o.forwardDeadlineHours * 3_600_000),
    });
    // The lag chart starts from the queue depths the registers last reported.
    for (const d of await fleet.devices()) fleet.recordLag(d.deviceId, d.storeId, d.pending, d.lastSeen);
    const live = new LiveHub({
      fleet,
      log: childLogger(log, 'live'),
      ...(extras.liveTickMs ? { tickMs: extras.liveTickMs } : {}),
    });
    const apiTokens: ApiToken[] = [
      ...(o.apiToken ? [{ name: 'api', token: o.apiToken, role: 'admin' as const }] : []),
      ...(o.shopToken ? [{ name: 'shop', token: o.shopToken, role: 'shop' as const }] : []),
    ];
    const auth = new OperatorAuth({
      ldb,
      apiAuth: o.apiAuth as ApiAuthMode,
      apiTokens,
      secureCookies: o.secureCookies || httpsTls !== undefined,
      ...(extras.authClock ? { clock: extras.authClock } : {}),
    });

    const consumers: LedgerConsumer[] = [];
    let connectedOnce = false;
    const publishDocuments = async () => {
      const docs = await listStoreDocuments(ldb);
      for (const doc of docs) {
        const topic = doc.kind === 'catalog' ? topics.catalog(doc.storeId) : topics.cashiers(doc.storeId);
        await consumers[0]!.publish(topic, JSON.stringify(doc.body), { retain: true });
      }
      log.info({ documents: docs.length }, 'store documents published');
    };
    for (let i = 0; i < o.consumers; i++) {
      const consumer = new LedgerConsumer({
        url: mqttUrl,
        clientId: `${o.clientId}-${i}`,
        shared: o.shared,
        shareGroup: o.shareGroup,
        mqtt: tls,
        clock,
        log: childLogger(log, `consumer-${i}`),
        inbox: {
          // Alone, a consumer sees a device's batches in order; shared, it waits for the one before.
          check: (deviceId, payload) => CheckedJournalMessage.check(deviceId, payload),
          journal: async (deviceId, payload, nowMs, checked) => {
            const message = checked instanceof CheckedJournalMessage ? checked : payload;
            const outcome = await (o.shared
              ? applyInSeqOrder(ldb, deviceId, message, nowMs)
              : applyJournalMessage(ldb, deviceId, message, nowMs));
            live.notify('devices', 'sales', 'stock', 'exceptions');
            return outcome;
          },
          status: async (deviceId, payload, nowMs) => {
            const view = await recordDeviceStatus(ldb, deviceId, payload, nowMs);
            if (view) fleet.recordLag(deviceId, view.storeId, view.pending, nowMs);
            live.notify('devices');
            return view;
          },
        },
        // A broker that lost its retained messages (restarted without persistence) gets them again.
        ...(i === 0
          ? {
              onConnected: () => {
                if (!connectedOnce) return;
                publishDocuments().catch((err: Error) =>
                  log.warn({ err: err.message }, 'store documents not republished'),
                );
              },
            }
          : {}),
      });
      consumers.push(consumer);
      cleanup.push(() => consumer.stop());
      await consumer.start();
    }
    // Not fatal: the documents are in the books and go out again on the next (re)connect.
    await publishDocuments().catch((err: Error) =>
      log.warn({ err: err.message }, 'store documents not published at start'),
    );
    connectedOnce = true;

    const http = new LedgerHttpApi({
      ldb,
      publishRetained: (topic, payload) => consumers[0]!.publish(topic, payload, { retain: true }),
      mqttConnected: () => consumers.every((c) => c.connected),
      clock,
      log: childLogger(log, 'http'),
      middleware: [auth.middleware, ...(extras.middleware ?? [])],
      routes: [
        ...auth.routes(),
        ...fleetRoutes(fleet),
        live.route(),
        ...enrolRoutes({ ldb, ca, certificateDays: o.enrolDays, log: childLogger(log, 'enrol') }),
      ],
      onChange: () => live.notify('devices', 'sales', 'stock', 'exceptions'),
    });
    try {
      await http.start(o.http, o.host, httpsTls);
    } catch (err) {
      if (!(isAddressInUse(err) && o.defaultPorts.http)) throw err;
      log.warn({ port: o.http }, 'default HTTP port busy: taking a free one');
      await http.start(0, o.host, httpsTls);
    }
    cleanup.push(() => http.stop());
    live.start();
    cleanup.push(async () => live.stop());

    let stopped: Promise<void> | undefined;
    const ledger: RunningLedger = {
      mqttUrl: redact(mqttUrl),
      httpUrl: `${httpsTls ? 'https' : 'http'}://${reachable(o.host)}:${http.port}`,
      ldb,
      consumers,
      broker,
      http,
      fleet,
      live,
      auth,
      stop: () =>
        (stopped ??= (async () => {
          await unwind();
          log.info({}, 'ledger stopped');
        })()),
    };
    return ledger;
  } catch (err) {
    await unwind();
    throw err;
  }
}

/** A logger whose lines name a sub-component. */
function childLogger(log: Logger, sub: string): Logger {
  const tag =
    (fn: Logger['info']) =>
    (fields: Record<string, unknown>, msg: string): void =>
      fn({ part: sub, ...fields }, msg);
  return { info: tag(log.info), warn: tag(log.warn), error: tag(log.error) };
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (argv[0] === 'operator') {
    process.exit(await runOperatorCli(argv.slice(1), env));
  }
  if (argv[0] === 'enrol') {
    process.exit(await runEnrolCli(argv.slice(1), env));
  }
  const log = jsonLogger('ledger');
  let ledger: RunningLedger;
  try {
    ledger = await startLedger(parseLedgerArgs(argv, env), { log });
  } catch (err) {
    if (err instanceof LedgerUsageError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    const e = err as { code?: unknown; message?: unknown };
    log.error({ code: e?.code, err: String(e?.message ?? err) }, 'cannot start');
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ event: 'ready', mqtt: ledger.mqttUrl, http: ledger.httpUrl }) + '\n');
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    await ledger.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  void main(process.argv.slice(2));
}
