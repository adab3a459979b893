// Sync benchmark (issue 5): how fast a register's queued journal drains into the ledger, against what
// the broker itself carries, all measured in one run:
//   - sqlite_aedes: 10,000 records (1,000 cash sales rung up by the real till into a journal on disk)
//     through a CloudBridge with its defaults into startLedger's default (a SQLite file, the embedded
//     aedes), timed from bridge.start() until its status() shows nothing pending (every record covered
//     by the ledger's ack). The register has synced before (its login and shift are in the books and
//     acked), as a till coming back online has: the retained ack is there, so the bridge starts sending
//     at once. A register new to the ledger first waits ackWaitMs (1 s) for an ack that never comes;
//     the untimed warm-up drain, from such a register, shows it on stderr;
//   - raw_aedes: mqtt.js QoS 1 publishes of one record each, pipelined, into a fresh embedded aedes with
//     a subscriber taking them, until the last PUBACK; ratio = drained records/s ÷ raw messages/s;
//   - postgres_mosquitto, raw_mosquitto: the same on PostgreSQL and the shared Mosquitto;
//   - hot_sku_postgres: 50 registers draining at once into PostgreSQL through two consumers behind a
//     shared subscription, every sale taking one unit of the same SKU, stocked short so oversells happen.
//   npm run bench:sync -- [--dir DIR] [--pg URL] [--mosquitto URL]
// --pg and --mosquitto default to what the test suites use (LEDGER_TEST_PG_URL, LEDGER_TEST_MOSQUITTO_URL).
// The Mosquitto is shared: this run's device, store and client ids are its own, and the sessions and
// retained messages it made are removed at the end (see sync-ledger.ts for the ledger there).
// Prints exactly one JSON line on stdout; progress goes to stderr.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { connectAsync, type MqttClient } from 'mqtt';
import { jsonLogger, type Logger } from '../../appliance/log.js';
import { CloudBridge, type BridgeStatus, type JournalSource } from '../../cloud-bridge/bridge.js';
import { topics } from '../../cloud-bridge/protocol/wire.js';
import { EmbeddedBroker } from '../../ledger/broker.js';
import type { LedgerDb } from '../../ledger/db/open.js';
import { receiveStock } from '../../ledger/stock.js';
import {
  BENCH_EPOCH,
  BenchRegister,
  SCANNABLE,
  openJournal,
  recordPayloads,
  type BuiltJournal,
  type RegisterSpec,
} from './sync-workload.js';
import {
  clearBrokerTraces,
  freshPgSchema,
  startEmbeddedLedger,
  startSharedBrokerLedger,
  within,
  type BenchLedger,
} from './sync-ledger.js';
import { median, round } from '../lib/stats.js';

/** Records of the timed drain: issue 5's figure, about 1,000 sales of ten records. */
const DRAIN_RECORDS = 10_000;
/** Records drained untimed into each ledger first, so the timed drain meets warm code and connections. */
const WARMUP_RECORDS = 500;
/** The registers' records carry times from a day back: queued while the link was down. */
const RECORDS_AGO_MS = 86_400_000;
/** Raw publishes timed per broker, and publishes before them that are not. */
const RAW_MESSAGES = 10_000;
const RAW_WARMUP_MESSAGES = 1_000;
/** Distinct records the raw publishes cycle through (their JSON, as the bridge would send them). */
const RAW_PAYLOAD_SAMPLE = 1_000;
/** The fleet of the hot-SKU figure: registers, and records each has queued (20 ten-record sales). */
const FLEET_DEVICES = 50;
const FLEET_RECORDS = 200;
/** Every fleet sale's first line. */
const HOT_SKU = 'COF-250';
/** Units of the hot SKU received, as a share of what the fleet sells: short, so oversells happen. */
const HOT_STOCK_SHARE = 0.8;
/** Units of every other SKU received: more than any run sells, so only the hot SKU comes up short. */
const SHELF_STOCK_UNITS = 1_000_000;
/** Fleet segments, bytes: a segment is preallocated whole, and 200 records need ~100 KiB, not 8 MiB. */
const FLEET_SEGMENT_BYTES = 512 * 1024;
/** Ledger consumers of the fleet, behind one shared subscription (issue 5: two at once). */
const FLEET_CONSUMERS = 2;

/** Bounds on each phase, ms: far above what they take here, so only a stuck phase hits them. */
const DRAIN_TIMEOUT_MS = 120_000;
const FLEET_TIMEOUT_MS = 180_000;
const RAW_TIMEOUT_MS = 60_000;
/** How long the raw subscriber may trail the last PUBACK before its count is reported as it stands. */
const RAW_DELIVERY_WAIT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;

/** Issue 5's targets. */
const TARGET_DRAIN_S = 10;
const TARGET_RATIO = 0.5;

const DEFAULT_PG_URL = process.env.LEDGER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_MOSQUITTO_URL = process.env.LEDGER_TEST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883';

function log(msg: string): void {
  process.stderr.write(`bench:sync ${msg}\n`);
}

/** Warnings and errors of a component on stderr; its per-message info lines would drown the progress. */
function quietLogger(component: string): Logger {
  const json = jsonLogger(component);
  return { info() {}, warn: json.warn, error: json.error };
}

function parseOptions(): { baseDir: string; pgUrl: string; mosquittoUrl: string } {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      pg: { type: 'string', default: DEFAULT_PG_URL },
      mosquitto: { type: 'string', default: DEFAULT_MOSQUITTO_URL },
    },
    strict: true,
  });
  if (!/^postgres(ql)?:\/\//.test(values.pg)) throw new Error('--pg must be a postgres:// URL');
  if (!/^mqtt:\/\//.test(values.mosquitto)) throw new Error('--mosquitto must be an mqtt:// URL');
  return { baseDir: values.dir ?? os.tmpdir(), pgUrl: values.pg, mosquittoUrl: values.mosquitto };
}

/** This run's names: unique on the shared broker and database, recognisable as the benchmark's. */
interface RunIds {
  /** Prefix of every device id and client id of the run. */
  prefix: string;
  storeId: string;
  device(name: string): string;
  ours(deviceId: string): boolean;
}

function runIds(): RunIds {
  const prefix = `bs-${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  return {
    prefix,
    storeId: `${prefix}-store`,
    device: (name) => `${prefix}-${name}`,
    ours: (deviceId) => deviceId.startsWith(`${prefix}-`),
  };
}

/** What this run leaves on the shared broker until the end: persistent sessions, retained topics. */
interface BrokerTraces {
  clientIds: string[];
  retainedTopics: string[];
}

/** A bridge's persistent session (its default client id) and its retained status and ack. */
function traceBridge(traces: BrokerTraces, deviceId: string): void {
  traces.clientIds.push(`register-${deviceId}`);
  traces.retainedTopics.push(topics.status(deviceId), topics.ack(deviceId));
}

// ---- the bridge under test ----

interface BenchBridge {
  start(): Promise<void>;
  /** performance.now() of the first change that showed nothing pending. */
  readonly drained: Promise<number>;
  /** performance.now() of the first batch sent, once one was. */
  firstSendAt(): number | undefined;
  status(): BridgeStatus;
  stop(): Promise<void>;
}

/** A CloudBridge with its defaults, reporting when the ledger's ack covers the journal's last record. */
function benchBridge(
  journal: JournalSource,
  brokerUrl: string,
  storeId: string,
  stateDir: string,
): BenchBridge {
  const lastSeq = journal.lastSeq;
  let drainedAt!: (atMs: number) => void;
  const drained = new Promise<number>((resolve) => (drainedAt = resolve));
  let firstSend: number | undefined;
  const bridge = new CloudBridge({
    brokerUrl,
    deviceId: journal.deviceId,
    storeId,
    journal,
    stateDir,
    // A benchmark register keeps its demo catalog: what the ledger publishes is not installed.
    installCatalog: () => undefined,
    installCashiers: () => undefined,
    currentCatalogVersion: () => undefined,
    currentCashiersVersion: () => undefined,
    log: quietLogger(`bridge:${journal.deviceId}`),
    onChange: (s) => {
      const now = performance.now();
      if (firstSend === undefined && s.inFlightBatches > 0) firstSend = now;
      if (s.pending === 0 && s.lastSeq === lastSeq) drainedAt(now);
    },
  });
  return {
    start: () => bridge.start(),
    drained,
    firstSendAt: () => firstSend,
    status: () => bridge.status(),
    stop: () => bridge.stop(),
  };
}

/** Wait for a started bridge to drain, or fail naming where it stands. */
async function untilDrained(
  bridge: { drained: Promise<number>; status(): BridgeStatus },
  timeoutMs: number,
  what: string,
): Promise<number> {
  return within(bridge.drained, timeoutMs, what).catch((err: Error) => {
    throw new Error(`${err.message}; bridge status ${JSON.stringify(bridge.status())}`);
  });
}

/**
 * A register that has synced before: logged in, shift opened, both records in the books, the ledger's
 * retained ack and the bridge's sync.json saying so. Records rung up after this are the queue.
 */
async function syncedRegister(
  ledger: BenchLedger,
  spec: RegisterSpec,
  storeId: string,
  stateDir: string,
): Promise<BenchRegister> {
  const register = await BenchRegister.open(spec);
  try {
    const bridge = benchBridge(register.journal, ledger.mqttUrl, storeId, stateDir);
    try {
      await bridge.start();
      await untilDrained(bridge, DRAIN_TIMEOUT_MS, `${spec.deviceId}: first sync`);
    } finally {
      await bridge.stop();
    }
  } catch (err) {
    register.close();
    throw err;
  }
  return register;
}

/** Nothing the ledger refused, and its cursor at the journal's end: the drain booked every record. */
async function checkBooked(ldb: LedgerDb, built: BuiltJournal, status: BridgeStatus): Promise<void> {
  const cursor = await ldb.db
    .selectFrom('device_cursors')
    .select('last_seq')
    .where('device_id', '=', built.deviceId)
    .where('epoch', '=', BENCH_EPOCH)
    .executeTakeFirst();
  // Behind while the bridge saw everything acked: another ledger on the shared broker acked for us.
  if (cursor?.last_seq !== built.lastSeq)
    throw new Error(`${built.deviceId}: the books stop at seq ${cursor?.last_seq ?? 0} of ${built.lastSeq}`);
  const quarantined = await ldb.db
    .selectFrom('quarantine')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('device_id', '=', built.deviceId)
    .executeTakeFirstOrThrow();
  if (Number(quarantined.n) > 0 || status.rejected.length > 0)
    throw new Error(`${built.deviceId}: the ledger rejected records: ${JSON.stringify(status.rejected)}`);
}

/** Goods in before the registers' sales land: every scannable SKU plenty, the hot one `hotUnits`. */
async function stockShelves(ldb: LedgerDb, hotUnits?: number): Promise<void> {
  for (const p of SCANNABLE) {
    const qty = p.sku === HOT_SKU && hotUnits !== undefined ? hotUnits : SHELF_STOCK_UNITS;
    await receiveStock(ldb, p.sku, qty, 'bench-delivery');
  }
}

interface DrainFigures {
  /** Records queued: in the journal and not yet acked when the bridge started. */
  records: number;
  seconds: number;
  records_per_s: number;
  /** From start() to the first batch sent: connecting, and waiting for the retained ack. */
  first_send_s: number;
  /** CPU this process (bridge and ledger) used from start() to the drain, s: where the time went. */
  process_cpu_s: number;
}

/** A started bridge on a journal reopened from disk, until the ledger's ack covers its last record. */
class Drain {
  private readonly journal: ReturnType<typeof openJournal>;
  private readonly bridge: BenchBridge;
  /** performance.now() of start(). */
  startedAt = 0;
  private cpuAtStart: NodeJS.CpuUsage | undefined;
  private cpuUsed: NodeJS.CpuUsage | undefined;

  constructor(
    readonly built: BuiltJournal,
    /** What the bridge's sync.json (and the ledger's retained ack) already cover. */
    private readonly syncedThrough: number,
    brokerUrl: string,
    storeId: string,
    stateDir: string,
  ) {
    this.journal = openJournal(built);
    this.bridge = benchBridge(this.journal, brokerUrl, storeId, stateDir);
  }

  get records(): number {
    return this.built.lastSeq - this.syncedThrough;
  }

  async start(): Promise<void> {
    this.startedAt = performance.now();
    this.cpuAtStart = process.cpuUsage();
    void this.bridge.drained.then(() => (this.cpuUsed = process.cpuUsage(this.cpuAtStart)));
    await this.bridge.start();
    const acked = this.bridge.status().ackedThrough;
    if (acked !== this.syncedThrough)
      throw new Error(
        `${this.built.deviceId}: the bridge starts from seq ${acked}, not ${this.syncedThrough}`,
      );
  }

  get drained(): Promise<number> {
    return this.bridge.drained;
  }

  status(): BridgeStatus {
    return this.bridge.status();
  }

  /** After drained: the books checked, and the figures from start() to the ack of the last record. */
  async figures(ldb: LedgerDb): Promise<DrainFigures> {
    const t1 = await this.drained;
    await checkBooked(ldb, this.built, this.bridge.status());
    const seconds = (t1 - this.startedAt) / 1000;
    return {
      records: this.records,
      seconds: round(seconds, 3),
      records_per_s: round(this.records / seconds, 1),
      first_send_s: round(((this.bridge.firstSendAt() ?? t1) - this.startedAt) / 1000, 3),
      process_cpu_s: round(((this.cpuUsed?.user ?? 0) + (this.cpuUsed?.system ?? 0)) / 1e6, 3),
    };
  }

  async stop(): Promise<void> {
    try {
      await this.bridge.stop();
    } finally {
      this.journal.close();
    }
  }
}

async function drainOne(
  ledger: BenchLedger,
  built: BuiltJournal,
  syncedThrough: number,
  storeId: string,
  stateDir: string,
): Promise<DrainFigures> {
  const drain = new Drain(built, syncedThrough, ledger.mqttUrl, storeId, stateDir);
  try {
    await drain.start();
    await untilDrained(drain, DRAIN_TIMEOUT_MS, `${built.deviceId} draining ${drain.records} records`);
    return await drain.figures(ledger.ldb);
  } finally {
    await drain.stop();
  }
}

/**
 * Into a ledger with stocked shelves: an untimed warm-up drain from a new register, then the timed one,
 * DRAIN_RECORDS queued by a register that had synced before (the case of a till back online).
 */
async function drainInto(
  ledger: BenchLedger,
  ids: RunIds,
  work: string,
  target: { key: 'sqlite' | 'pg'; label: string; traces?: BrokerTraces },
): Promise<DrainFigures> {
  const { key, label, traces } = target;
  const startMs = Date.now() - RECORDS_AGO_MS;
  const dir = path.join(work, key);
  const device = (name: string) => {
    const deviceId = ids.device(`${key}-${name}`);
    if (traces) traceBridge(traces, deviceId);
    return deviceId;
  };
  await stockShelves(ledger.ldb);

  const warmRegister = await BenchRegister.open({
    dir: path.join(dir, 'warm', 'journal'),
    deviceId: device('warm'),
    startMs,
    seed: 2,
  });
  await warmRegister.sellUntil(WARMUP_RECORDS);
  const warm = await drainOne(ledger, warmRegister.close(), 0, ids.storeId, path.join(dir, 'warm'));
  log(
    `${label}: warm-up drain of ${warm.records} records from a new register in ${warm.seconds} s ` +
      `(first batch after ${warm.first_send_s} s: no retained ack to wait for)`,
  );

  const tillDir = path.join(dir, 'till');
  const spec = { dir: path.join(tillDir, 'journal'), deviceId: device('till'), startMs, seed: 1 };
  const till = await syncedRegister(ledger, spec, ids.storeId, tillDir);
  const syncedThrough = till.journal.lastSeq;
  await till.sellUntil(syncedThrough + DRAIN_RECORDS);
  const built = till.close();
  log(`${label}: ${DRAIN_RECORDS} records queued (${built.sales} sales) behind seq ${syncedThrough}, acked`);
  const figures = await drainOne(ledger, built, syncedThrough, ids.storeId, tillDir);
  log(
    `${label}: ${figures.records} records drained in ${figures.seconds} s (${figures.records_per_s}/s), ` +
      `first batch after ${figures.first_send_s} s`,
  );
  return figures;
}

// ---- raw MQTT ----

interface RawFigures {
  messages: number;
  /** The median payload: one journal record's JSON. */
  message_bytes: number;
  seconds: number;
  messages_per_s: number;
  /** Whether the subscriber got every publish (a broker may drop QoS 1 beyond a slow client's queue). */
  subscriber_got_all: boolean;
}

/** `count` QoS 1 publishes without waiting for any; resolves on the last PUBACK. */
function publishPipelined(
  client: MqttClient,
  topic: string,
  payloads: Buffer[],
  count: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = count;
    let failed = false;
    for (let i = 0; i < count; i++) {
      client.publish(topic, payloads[i % payloads.length]!, { qos: 1 }, (err) => {
        if (failed) return;
        if (err) {
          failed = true;
          reject(err);
        } else if (--left === 0) resolve();
      });
    }
  });
}

/** The broker's own pace: pipelined QoS 1 publishes of one record each, a QoS 1 subscriber taking them. */
async function rawThroughput(
  url: string,
  topic: string,
  clientPrefix: string,
  payloads: Buffer[],
  label: string,
): Promise<RawFigures> {
  const opts = { clean: true, reconnectPeriod: 0, connectTimeout: CONNECT_TIMEOUT_MS };
  const sub = await connectAsync(url, { ...opts, clientId: `${clientPrefix}-rawsub` });
  let pub: MqttClient | undefined;
  try {
    let received = 0;
    let onReceived: (() => void) | undefined;
    sub.on('message', () => {
      received++;
      onReceived?.();
    });
    await within(sub.subscribeAsync(topic, { qos: 1 }), CONNECT_TIMEOUT_MS, `${label}: subscribing`);
    pub = await connectAsync(url, { ...opts, clientId: `${clientPrefix}-rawpub` });
    await within(
      publishPipelined(pub, topic, payloads, RAW_WARMUP_MESSAGES),
      RAW_TIMEOUT_MS,
      `${label}: warm-up publishes`,
    );
    const t0 = performance.now();
    await within(
      publishPipelined(pub, topic, payloads, RAW_MESSAGES),
      RAW_TIMEOUT_MS,
      `${label}: PUBACKs of ${RAW_MESSAGES} publishes`,
    );
    const seconds = (performance.now() - t0) / 1000;
    const total = RAW_WARMUP_MESSAGES + RAW_MESSAGES;
    const all = new Promise<void>((resolve) => {
      onReceived = () => received >= total && resolve();
      onReceived();
    });
    const gotAll = await within(all, RAW_DELIVERY_WAIT_MS, 'raw deliveries').then(
      () => true,
      () => false,
    );
    const figures: RawFigures = {
      messages: RAW_MESSAGES,
      message_bytes: median(payloads.map((p) => p.length)),
      seconds: round(seconds, 3),
      messages_per_s: round(RAW_MESSAGES / seconds, 1),
      subscriber_got_all: gotAll,
    };
    log(
      `${label}: ${RAW_MESSAGES} QoS 1 publishes of ~${figures.message_bytes} bytes PUBACKed in ` +
        `${figures.seconds} s (${figures.messages_per_s}/s); subscriber got ${received}/${total}`,
    );
    return figures;
  } finally {
    await pub?.endAsync(true);
    await sub.endAsync(true);
  }
}

/** Raw throughput into a fresh embedded aedes, as the ledger's default runs it. */
async function rawOnEmbedded(clientPrefix: string, payloads: Buffer[]): Promise<RawFigures> {
  const broker = new EmbeddedBroker({ port: 0, log: quietLogger('broker') });
  const { url } = await broker.start();
  try {
    return await rawThroughput(url, 'bench/raw', clientPrefix, payloads, 'raw aedes');
  } finally {
    await broker.stop();
  }
}

// ---- the parts ----

async function drainSqliteAedes(work: string, ids: RunIds): Promise<DrainFigures> {
  const ledger = await startEmbeddedLedger(
    path.join(work, 'ledger-sqlite'),
    `${ids.prefix}-sqlite`,
    quietLogger('ledger'),
  );
  log(`sqlite+aedes: ledger up, broker ${ledger.mqttUrl}`);
  try {
    return await drainInto(ledger, ids, work, { key: 'sqlite', label: 'sqlite+aedes' });
  } finally {
    await ledger.stop();
  }
}

interface SharedServices {
  pgUrl: string;
  mosquittoUrl: string;
  traces: BrokerTraces;
}

async function drainPostgresMosquitto(work: string, ids: RunIds, svc: SharedServices): Promise<DrainFigures> {
  const schema = await freshPgSchema(svc.pgUrl, 'drain');
  try {
    const ledger = await startSharedBrokerLedger({
      brokerUrl: svc.mosquittoUrl,
      dbUrl: schema.url,
      clientId: `${ids.prefix}-pg`,
      consumers: 1,
      ours: ids.ours,
      log: quietLogger('ledger'),
    });
    svc.traces.clientIds.push(...ledger.clientIds);
    log(`postgres+mosquitto: ledger up on schema ${schema.schema}, broker ${svc.mosquittoUrl}`);
    try {
      return await drainInto(ledger, ids, work, {
        key: 'pg',
        label: 'postgres+mosquitto',
        traces: svc.traces,
      });
    } finally {
      await ledger.stop();
    }
  } finally {
    await schema.drop();
  }
}

interface FleetFigures {
  devices: number;
  records: number;
  seconds: number;
  records_per_s: number;
  /** The hot SKU: units the fleet's sales wanted, units received, and where stock ended. */
  units_wanted: number;
  units_received: number;
  on_hand: number;
  /** Oversell exceptions raised, and the units they found short. */
  oversells: number;
  short_units: number;
  /** on_hand ≥ 0, and received − (wanted − short) = on_hand: no unit lost or invented. */
  stock_honest: boolean;
}

async function hotSkuFleet(work: string, ids: RunIds, svc: SharedServices): Promise<FleetFigures> {
  const startMs = Date.now() - RECORDS_AGO_MS;
  const schema = await freshPgSchema(svc.pgUrl, 'fleet');
  try {
    const ledger = await startSharedBrokerLedger({
      brokerUrl: svc.mosquittoUrl,
      dbUrl: schema.url,
      clientId: `${ids.prefix}-fleet`,
      consumers: FLEET_CONSUMERS,
      ours: ids.ours,
      log: quietLogger('ledger'),
    });
    svc.traces.clientIds.push(...ledger.clientIds);
    log(`hot sku: ${FLEET_CONSUMERS} consumers up (shared) on schema ${schema.schema}`);
    const drains: Drain[] = [];
    try {
      // The fleet's first sync, all at once; then each register queues its sales while "offline".
      const specs = Array.from({ length: FLEET_DEVICES }, (_, i) => {
        const deviceId = ids.device(`fleet-d${String(i).padStart(2, '0')}`);
        traceBridge(svc.traces, deviceId);
        const dir = path.join(work, 'fleet', deviceId);
        const spec: RegisterSpec = {
          dir: path.join(dir, 'journal'),
          deviceId,
          hotSku: HOT_SKU,
          startMs,
          seed: 100 + i,
          segmentMaxBytes: FLEET_SEGMENT_BYTES,
        };
        return { spec, stateDir: dir };
      });
      const opened = await Promise.allSettled(
        specs.map(({ spec, stateDir }) => syncedRegister(ledger, spec, ids.storeId, stateDir)),
      );
      const failed = opened.find((o) => o.status === 'rejected');
      if (failed) {
        for (const o of opened) if (o.status === 'fulfilled') o.value.close();
        throw failed.reason;
      }
      const registers = opened.map((o) => (o as PromiseFulfilledResult<BenchRegister>).value);
      const queued: { built: BuiltJournal; syncedThrough: number }[] = [];
      for (const register of registers) {
        const syncedThrough = register.journal.lastSeq;
        await register.sellUntil(syncedThrough + FLEET_RECORDS);
        queued.push({ built: register.close(), syncedThrough });
      }
      const unitsWanted = queued.reduce((sum, q) => sum + q.built.hotUnits, 0);
      const unitsReceived = Math.floor(unitsWanted * HOT_STOCK_SHARE);
      await stockShelves(ledger.ldb, unitsReceived);
      log(
        `hot sku: ${queued.length} registers each queued ${FLEET_RECORDS} records, ${unitsWanted} ${HOT_SKU}`,
      );

      for (const [i, q] of queued.entries())
        drains.push(new Drain(q.built, q.syncedThrough, ledger.mqttUrl, ids.storeId, specs[i]!.stateDir));
      const records = drains.reduce((sum, d) => sum + d.records, 0);
      const t0 = performance.now();
      for (const d of drains) await d.start();
      const ends = await within(
        Promise.all(drains.map((d) => d.drained)),
        FLEET_TIMEOUT_MS,
        `${drains.length} registers draining ${records} records`,
      ).catch((err: Error) => {
        const behind = drains.map((d) => d.status()).filter((s) => s.pending > 0);
        throw new Error(`${err.message}; ${behind.length} still pending, first ${JSON.stringify(behind[0])}`);
      });
      const seconds = (Math.max(...ends) - t0) / 1000;
      for (const d of drains) await d.figures(ledger.ldb); // checks each register's books

      const stock = await ledger.ldb.db
        .selectFrom('stock')
        .select('on_hand')
        .where('sku', '=', HOT_SKU)
        .executeTakeFirstOrThrow();
      const oversells = await ledger.ldb.db
        .selectFrom('exceptions')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('kind', '=', 'oversell')
        .executeTakeFirstOrThrow();
      const short = await ledger.ldb.db
        .selectFrom('stock_moves')
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('short_qty'), eb.lit(0)).as('n'))
        .where('sku', '=', HOT_SKU)
        .executeTakeFirstOrThrow();
      const onHand = Number(stock.on_hand);
      const shortUnits = Number(short.n);
      const figures: FleetFigures = {
        devices: drains.length,
        records,
        seconds: round(seconds, 3),
        records_per_s: round(records / seconds, 1),
        units_wanted: unitsWanted,
        units_received: unitsReceived,
        on_hand: onHand,
        oversells: Number(oversells.n),
        short_units: shortUnits,
        stock_honest: onHand >= 0 && unitsReceived - (unitsWanted - shortUnits) === onHand,
      };
      log(
        `hot sku: ${records} records from ${drains.length} registers in ${figures.seconds} s ` +
          `(${figures.records_per_s}/s); ${HOT_SKU} on hand ${onHand}, ${figures.oversells} oversells ` +
          `short ${shortUnits} of ${unitsWanted} wanted, ${unitsReceived} received`,
      );
      return figures;
    } finally {
      await Promise.all(drains.map((d) => d.stop()));
      await ledger.stop();
    }
  } finally {
    await schema.drop();
  }
}

// ---- the run ----

async function main(): Promise<void> {
  const { baseDir, pgUrl, mosquittoUrl } = parseOptions();
  const ids = runIds();
  const work = fs.mkdtempSync(path.join(baseDir, 'bench-sync-'));
  const svc: SharedServices = { pgUrl, mosquittoUrl, traces: { clientIds: [], retainedTopics: [] } };
  log(`working in ${work}, run ${ids.prefix}`);
  try {
    // Raw payloads: real records, as the bridge serialises them.
    const sampler = await BenchRegister.open({
      dir: path.join(work, 'sample', 'journal'),
      deviceId: ids.device('sample'),
      startMs: Date.now() - RECORDS_AGO_MS,
      seed: 3,
    });
    await sampler.sellUntil(RAW_PAYLOAD_SAMPLE);
    const sample = openJournal(sampler.close());
    const payloads = recordPayloads(sample, RAW_PAYLOAD_SAMPLE);
    sample.close();

    const sqliteAedes = await drainSqliteAedes(work, ids);
    const rawAedes = await rawOnEmbedded(ids.prefix, payloads);
    const postgresMosquitto = await drainPostgresMosquitto(work, ids, svc);
    const rawMosquitto = await rawThroughput(
      mosquittoUrl,
      `bench-sync/${ids.prefix}/raw`,
      ids.prefix,
      payloads,
      'raw mosquitto',
    );
    const hotSku = await hotSkuFleet(work, ids, svc);

    const ratioSqlite = round(sqliteAedes.records_per_s / rawAedes.messages_per_s, 3);
    const ratioPostgres = round(postgresMosquitto.records_per_s / rawMosquitto.messages_per_s, 3);
    const drained = (d: DrainFigures) => d.records >= DRAIN_RECORDS && d.seconds < TARGET_DRAIN_S;
    const result = {
      // ratio: this drain's records/s over the raw messages/s of the same broker kind, in this run.
      sqlite_aedes: { ...sqliteAedes, ratio: ratioSqlite },
      raw_aedes: rawAedes,
      postgres_mosquitto: { ...postgresMosquitto, ratio: ratioPostgres },
      raw_mosquitto: rawMosquitto,
      hot_sku_postgres: hotSku,
      targets_met: {
        drain_10k_under_10s_sqlite: drained(sqliteAedes),
        drain_10k_under_10s_postgres: drained(postgresMosquitto),
        ratio_at_least_0_5_sqlite: ratioSqlite >= TARGET_RATIO,
        ratio_at_least_0_5_postgres: ratioPostgres >= TARGET_RATIO,
      },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    if (svc.traces.clientIds.length || svc.traces.retainedTopics.length) {
      await clearBrokerTraces(
        mosquittoUrl,
        { ...svc.traces, clearClientId: `${ids.prefix}-clear` },
        log,
      ).catch((err: unknown) => log(`broker traces not cleared: ${String((err as Error)?.message ?? err)}`));
    }
    fs.rmSync(work, { recursive: true, force: true });
    log(`removed ${work}`);
  }
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
