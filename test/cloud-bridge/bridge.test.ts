// The cloud bridge (device side) against a real in-process aedes broker on a TCP port, the test playing
// the ledger: it subscribes to the journal topic, books records by the seq cursor (so a duplicate is
// never booked twice and a gap never booked), checks the hash chain, and publishes retained acks.
// Timers (backoff, ack timeout, ack wait, status throttle) are injected and moved by hand; the only
// waits are for events, each with a bounded timeout.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { Aedes, type Client } from 'aedes';
import { connect } from 'mqtt';
import { manualClock } from '../../appliance/clock.js';
import { Journal } from '../../appliance/journal/journal.js';
import { backoffDelayMs, type Timers } from '../../appliance/devices/device.js';
import type { Logger } from '../../appliance/log.js';
import type { Catalog } from '../../appliance/till/catalog.js';
import type { CashierList } from '../../appliance/till/cashiers.js';
import {
  CloudBridge,
  judgeAck,
  nextLinkState,
  type AckVerdict,
  type BridgeStatus,
  type CloudBridgeOptions,
  type JournalSource,
  type LinkInput,
  type LinkState,
} from '../../cloud-bridge/bridge.js';
import { genesisHash, recordHash, type JournalRecord } from '../../cloud-bridge/protocol/record.js';
import {
  DeviceStatusSchema,
  JournalBatchSchema,
  topics,
  type Ack,
  type DeviceStatus,
} from '../../cloud-bridge/protocol/wire.js';
import { sale } from '../support/journal-fixtures.js';
import { code, demoCashiers, demoCatalog, readyRegister } from '../support/till-fixtures.js';
import { Rng } from '../support/rng.js';
import { waitFor } from '../support/wait.js';

const DEVICE = 'till-1';
const STORE = 'demo-store';
const CLIENT_ID = `register-${DEVICE}`;

// ---- test doubles and helpers ----

/** Timers that fire only when the test advances them; nowMs is the same hand-moved clock. */
class ManualTimers implements Timers {
  now = Date.UTC(2026, 0, 1);
  private seq = 0;
  private readonly due = new Map<number, { at: number; ms: number; fn: () => void }>();
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.due.set(id, { at: this.now + ms, ms, fn });
    return id;
  };
  clearTimeout = (handle: unknown): void => {
    this.due.delete(handle as number);
  };
  nowMs = (): number => this.now;
  /** The delays of the timers now waiting. */
  pending(): number[] {
    return [...this.due.values()].map((d) => d.ms);
  }
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.due)
        if (entry[1].at <= target && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.due.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = target;
  }
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  await waitFor(what, cond, { timeoutMs, intervalMs: 5 });
}

interface Broker {
  aedes: Aedes;
  port: number;
  url: string;
  clients: Map<string, Client>;
  close(): Promise<void>;
}

async function startBroker(port = 0, secure?: { key: string; cert: string; ca: string }): Promise<Broker> {
  const aedes = await Aedes.createBroker();
  const clients = new Map<string, Client>();
  aedes.on('client', (c) => clients.set(c.id, c));
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const server = secure
    ? tls.createServer({ ...secure, requestCert: true, rejectUnauthorized: true }, (s) => {
        track(s);
        aedes.handle(s);
      })
    : net.createServer((s) => {
        track(s);
        aedes.handle(s);
      });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as net.AddressInfo).port;
  let closed = false;
  return {
    aedes,
    port: actual,
    url: `${secure ? 'mqtts' : 'mqtt'}://${secure ? 'localhost' : '127.0.0.1'}:${actual}`,
    clients,
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => aedes.close(() => r()));
    },
  };
}

function brokerPublish(
  broker: Broker,
  topic: string,
  payload: string | Buffer,
  retain = true,
): Promise<void> {
  return new Promise((resolve, reject) =>
    broker.aedes.publish(
      { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain, dup: false },
      (err) => (err ? reject(err) : resolve()),
    ),
  );
}

function brokerSubscribe(broker: Broker, topic: string, onMessage: (payload: Buffer) => void): Promise<void> {
  return new Promise((resolve) =>
    broker.aedes.subscribe(
      topic,
      (packet, cb) => {
        onMessage(packet.payload as Buffer);
        cb();
      },
      () => resolve(),
    ),
  );
}

interface SeenBatch {
  firstSeq: number;
  lastSeq: number;
  epoch: number;
  count: number;
  bytes: number;
}

/**
 * The ledger as the bridge sees it: books a record only when it is the next by seq (a duplicate or a
 * record after a gap is not booked), checks the chain, and acks cumulatively as its policy says.
 */
class FakeLedger {
  readonly batches: SeenBatch[] = [];
  readonly books: JournalRecord[] = [];
  readonly statuses: DeviceStatus[] = [];
  chainBreaks = 0;
  cursor = 0;
  private lastHash: string;
  private broker: Broker | undefined;
  /** Called after each batch; may ack, cut the link, stop the broker. */
  onBatch: (ledger: FakeLedger, batch: SeenBatch) => void;

  constructor(
    readonly epoch = 1,
    policy: 'each' | 'none' = 'each',
  ) {
    this.lastHash = genesisHash(DEVICE, epoch);
    this.onBatch = policy === 'each' ? (l) => void l.ack() : () => {};
  }

  async attach(broker: Broker, republishAck = false): Promise<void> {
    this.broker = broker;
    await brokerSubscribe(broker, topics.journal(DEVICE), (p) => this.receive(p));
    await brokerSubscribe(broker, topics.status(DEVICE), (p) => {
      this.statuses.push(DeviceStatusSchema.parse(JSON.parse(p.toString())));
    });
    if (republishAck && this.cursor > 0) await this.ack();
  }

  ack(through = this.cursor, extra: Partial<Ack> = {}): Promise<void> {
    const ack: Ack = {
      v: 1,
      epoch: this.epoch,
      ackedThrough: through,
      rejected: [],
      exceptions: [],
      ...extra,
    };
    return brokerPublish(this.broker!, topics.ack(DEVICE), JSON.stringify(ack));
  }

  get lastStatus(): DeviceStatus | undefined {
    return this.statuses[this.statuses.length - 1];
  }

  firstSeqs(): number[] {
    return this.batches.map((b) => b.firstSeq);
  }

  private receive(payload: Buffer): void {
    const batch = JournalBatchSchema.parse(JSON.parse(payload.toString('utf8')));
    const records = batch.records as JournalRecord[];
    for (let i = 1; i < records.length; i++) {
      if (records[i]!.seq !== records[i - 1]!.seq + 1) throw new Error('a batch with a gap inside');
    }
    const seen: SeenBatch = {
      firstSeq: records[0]!.seq,
      lastSeq: records[records.length - 1]!.seq,
      epoch: batch.epoch,
      count: records.length,
      bytes: payload.length,
    };
    this.batches.push(seen);
    if (batch.deviceId !== DEVICE) throw new Error('device mismatch');
    if (batch.epoch === this.epoch) {
      for (const r of records) {
        if (r.seq !== this.cursor + 1) continue;
        if (r.prevHash !== this.lastHash || recordHash(r.prevHash, r) !== r.hash) {
          this.chainBreaks++;
          continue;
        }
        this.books.push(r);
        this.cursor = r.seq;
        this.lastHash = r.hash;
      }
    }
    this.onBatch(this, seen);
  }
}

interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function captureLog(): { log: Logger; lines: LogLine[]; count(msg: string | RegExp): number } {
  const lines: LogLine[] = [];
  const emit = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    void lines.push({ level, msg, fields });
  return {
    log: { info: emit('info'), warn: emit('warn'), error: emit('error') },
    lines,
    count: (m) => lines.filter((l) => (typeof m === 'string' ? l.msg === m : m.test(l.msg))).length,
  };
}

function openJournal(dir: string, epoch = 1): { journal: Journal; clock: ReturnType<typeof manualClock> } {
  const clock = manualClock();
  const journal = Journal.open({
    dir: path.join(dir, 'journal'),
    deviceId: DEVICE,
    epoch,
    clock,
    segmentMaxBytes: 64 * 1024,
  });
  return { journal, clock };
}

function appendSales(j: { journal: Journal; clock: ReturnType<typeof manualClock> }, n: number, pad = 0) {
  for (let i = 0; i < n; i++) {
    j.clock.advance(1000);
    j.journal.append(sale(j.journal.lastSeq + 1, pad));
  }
}

function recordAt(journal: JournalSource, seq: number): JournalRecord {
  for (const r of journal.read(seq)) return r;
  throw new Error(`no record ${seq}`);
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const SEED = 7;
const randomFrom = (rng: Rng) => () => rng.int(0, 999_999) / 1_000_000;

function makeBridge(
  t: Test,
  opts: Pick<CloudBridgeOptions, 'brokerUrl' | 'journal' | 'stateDir'> & Partial<CloudBridgeOptions>,
) {
  const timers = new ManualTimers();
  const logs = captureLog();
  const installed = { catalog: [] as Catalog[], cashiers: [] as CashierList[] };
  const versions = { catalog: 0, cashiers: 0 };
  const changes: BridgeStatus[] = [];
  const bridge = new CloudBridge({
    deviceId: DEVICE,
    storeId: STORE,
    ackWaitMs: 0,
    statusMinIntervalMs: 0,
    syncSaveIntervalMs: 0, // so the only timers waiting are the ones a test is about
    backoff: { initialMs: 1000, maxMs: 8000 },
    random: randomFrom(new Rng(SEED)),
    timers,
    nowMs: timers.nowMs,
    log: logs.log,
    version: '0.1.0-test',
    clockTrusted: () => true,
    installCatalog: (doc) => {
      installed.catalog.push(doc);
      versions.catalog = doc.version;
    },
    installCashiers: (doc) => {
      installed.cashiers.push(doc);
      versions.cashiers = doc.version;
    },
    currentCatalogVersion: () => versions.catalog,
    currentCashiersVersion: () => versions.cashiers,
    onChange: (s) => changes.push(s),
    ...opts,
  });
  t.teardown(() => bridge.stop());
  return { bridge, timers, logs, installed, versions, changes };
}

/** The retained message on a topic, as a fresh subscriber gets it. */
async function retained(url: string, topic: string): Promise<unknown> {
  const client = connect(url, { clean: true, reconnectPeriod: 0, clientId: `observer-${Math.random()}` });
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no retained message on ${topic}`)), 5000);
      client.on('message', (_topic, payload, packet) => {
        if (!packet.retain) return;
        clearTimeout(timer);
        resolve(JSON.parse(payload.toString()));
      });
      client.on('error', reject);
      client.subscribe(topic, { qos: 1 });
    });
  } finally {
    client.end(true);
  }
}

// ---- pure parts ----

t.test('the link state machine, as a table', async (t) => {
  const cases: [LinkState, LinkInput, LinkState][] = [
    ['idle', 'start', 'connecting'],
    ['idle', 'connack', 'idle'],
    ['idle', 'stop', 'stopped'],
    ['connecting', 'connack', 'connected'],
    ['connecting', 'closed', 'offline'],
    ['connecting', 'retry', 'connecting'],
    ['connecting', 'stop', 'stopped'],
    ['connected', 'closed', 'offline'],
    ['connected', 'connack', 'connected'],
    ['connected', 'stop', 'stopped'],
    ['offline', 'retry', 'connecting'],
    ['offline', 'closed', 'offline'],
    ['offline', 'stop', 'stopped'],
    ['stopped', 'start', 'stopped'],
    ['stopped', 'retry', 'stopped'],
  ];
  for (const [from, input, to] of cases)
    t.equal(nextLinkState(from, input), to, `${from} --${input}--> ${to}`);
});

t.test('what an ack means, as a table', async (t) => {
  const ours = { epoch: 3, ackedThrough: 10, lastSeq: 20 };
  const cases: [{ epoch: number; ackedThrough: number }, AckVerdict][] = [
    [{ epoch: 2, ackedThrough: 15 }, 'other-epoch'],
    [{ epoch: 4, ackedThrough: 0 }, 'other-epoch'],
    [{ epoch: 3, ackedThrough: 9 }, 'behind'],
    [{ epoch: 3, ackedThrough: 0 }, 'behind'],
    [{ epoch: 3, ackedThrough: 10 }, 'same'],
    [{ epoch: 3, ackedThrough: 11 }, 'advance'],
    [{ epoch: 3, ackedThrough: 20 }, 'advance'],
    [{ epoch: 3, ackedThrough: 21 }, 'beyond'],
  ];
  for (const [ack, verdict] of cases)
    t.equal(judgeAck(ours, ack), verdict, `${JSON.stringify(ack)}: ${verdict}`);
});

t.test('bad options are refused at start', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  const base = { brokerUrl: 'mqtt://127.0.0.1:1', journal: j.journal, stateDir: dir };
  for (const [extra, why] of [
    [{ brokerUrl: 'http://x:1' }, /scheme/],
    [{ brokerUrl: 'not a url' }, /not a URL/],
    [{ deviceId: 'till+1' }, /device id/],
    [{ deviceId: 'till-2' }, /belongs to till-1/],
    [{ storeId: 'a/b' }, /store id/],
    [{ batchMaxRecords: 501 }, /batchMaxRecords/],
    [{ maxInFlightBatches: 0 }, /maxInFlightBatches/],
  ] as [Partial<CloudBridgeOptions>, RegExp][]) {
    const { bridge } = makeBridge(t, { ...base, ...extra });
    await t.rejects(bridge.start(), { code: 'CONFIG_INVALID', message: why });
  }
});

t.test('certificate files that cannot be read are a failed attempt, retried, not a crash', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  let reads = 0;
  const { bridge, timers } = makeBridge(t, {
    brokerUrl: `mqtts://127.0.0.1:${await deadPort()}`,
    journal: j.journal,
    stateDir: dir,
    tls: () => {
      reads++;
      throw new Error('ENOENT: /etc/register/device.crt');
    },
  });
  await bridge.start();
  t.match(bridge.status(), { state: 'offline', lastError: /cannot connect: ENOENT/ });
  t.equal(timers.pending().length, 1, 'a retry is scheduled');
  timers.advance(timers.pending()[0]!);
  t.equal(reads, 2, 'the files are read again at the next attempt');
  t.equal(bridge.status().state, 'offline');
});

// ---- draining ----

t.test('drains a queue in seq order in bounded batches, the in-flight bound respected', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 97, 300); // ~550 bytes a record
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge, changes } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    batchMaxRecords: 10,
    batchMaxBytes: 4096, // ~7 records: the byte bound, not the count, ends these batches
    maxInFlightBatches: 4,
  });
  await bridge.start();

  // The window: four batches go out, then nothing until the ledger acks.
  await until('four batches', () => ledger.batches.length === 4);
  t.same(bridge.status().inFlightBatches, 4);
  bridge.notify(); // would send more if the window let it
  const firstFour = ledger.batches.map((b) => [b.firstSeq, b.lastSeq]);
  await ledger.ack(ledger.batches[0]!.lastSeq);
  // The status this ack causes is published after whatever the ack let out: a barrier.
  await until(
    'status after the first ack',
    () => ledger.lastStatus?.lastAckedSeq === ledger.batches[0]!.lastSeq,
  );
  t.equal(ledger.batches.length, 5, 'one ack of one batch lets exactly one more out');
  t.same(
    ledger.batches.slice(0, 4).map((b) => [b.firstSeq, b.lastSeq]),
    firstFour,
  );

  // Now ack as batches land: the whole queue drains.
  ledger.onBatch = (l) => void l.ack();
  await ledger.ack();
  await until('everything booked', () => bridge.status().pending === 0 && ledger.cursor === 97);
  t.equal(ledger.books.length, 97, 'every record booked once');
  t.same(
    ledger.books.map((r) => r.seq),
    Array.from({ length: 97 }, (_, i) => i + 1),
    'in seq order',
  );
  t.equal(ledger.chainBreaks, 0, 'the chain verifies');
  for (const b of ledger.batches) {
    t.ok(
      b.count <= 10 && b.bytes <= 4096,
      `batch ${b.firstSeq}-${b.lastSeq}: ${b.count} records, ${b.bytes} bytes`,
    );
  }
  t.ok(
    ledger.batches.every((b, i) => i === 0 || b.firstSeq === ledger.batches[i - 1]!.lastSeq + 1),
    'no resend, no gap: each batch starts where the last ended',
  );
  t.ok(
    changes.every((s) => s.inFlightBatches <= 4),
    'never more than 4 batches in flight',
  );
  const s = bridge.status();
  t.match(s, {
    state: 'connected',
    ackedThrough: 97,
    pending: 0,
    oldestPendingTs: null,
    inFlightBatches: 0,
    lastSeq: 97,
  });
  t.equal(bridge.syncedThroughSeq(), 97);
  await until('status with nothing pending', () => ledger.lastStatus?.pending === 0);
  t.match(ledger.lastStatus, { online: true, lastAckedSeq: 97, lastSeq: 97, version: '0.1.0-test' });

  // New records after the drain go out on notify().
  appendSales(j, 3);
  bridge.notify();
  await until('the new records booked', () => ledger.cursor === 100 && bridge.status().pending === 0);
  await bridge.stop();
});

t.test(
  'a PUBACK alone does not sync: pending stays, and after ackTimeoutMs the bridge resends',
  async (t) => {
    const dir = t.testdir();
    const j = openJournal(dir);
    appendSales(j, 10);
    const broker = await startBroker();
    t.teardown(() => broker.close());
    const ledger = new FakeLedger(1, 'none');
    await ledger.attach(broker);
    const { bridge, timers, logs } = makeBridge(t, {
      brokerUrl: broker.url,
      journal: j.journal,
      stateDir: dir,
      batchMaxRecords: 2,
      maxInFlightBatches: 4,
      ackTimeoutMs: 10_000,
    });
    await bridge.start();
    await until('four batches', () => ledger.batches.length === 4);
    await until('the broker PUBACKed them', () => bridge.status().awaitingPuback === 0);
    t.same(ledger.firstSeqs(), [1, 3, 5, 7]);
    t.match(bridge.status(), { ackedThrough: 0, pending: 10, inFlightBatches: 4, awaitingPuback: 0 });
    t.equal(bridge.status().oldestPendingTs, recordAt(j.journal, 1).ts);
    t.equal(ledger.cursor, 8, 'the ledger has them; it just has not said so');

    t.ok(timers.pending().includes(10_000), 'an ack timeout is armed');
    timers.advance(9_999);
    t.equal(logs.count(/resending/), 0);
    timers.advance(1);
    t.equal(logs.count(/resending/), 1);
    await until('the window resent', () => ledger.batches.length === 8);
    t.same(ledger.firstSeqs(), [1, 3, 5, 7, 1, 3, 5, 7], 'resent from the last ack (none): seq 1');
    t.equal(ledger.books.length, 8, 'the resend booked nothing twice');
    t.ok(timers.pending().includes(20_000), 'the next ack timeout waits twice as long');

    await ledger.ack(8);
    await until('ack applied', () => bridge.status().ackedThrough === 8);
    await until('the rest sent', () => ledger.cursor === 10);
    await ledger.ack();
    await until('all synced', () => bridge.status().pending === 0);
    t.ok(
      timers.pending().every((ms) => ms !== 20_000),
      'no ack timeout armed with nothing in flight',
    );
  },
);

t.test("records go out as the journal's own JCS text, not parsed and written again", async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 2);
  j.clock.advance(1000);
  // Integer-like keys: JavaScript lists them numerically, so a parsed and re-written record would not
  // keep JCS order ("1000" before "200").
  j.journal.append([{ type: 'shift.opened', floatCounts: { '1000': 5, '200': 10 } }]);
  const payloads = [...j.journal.readPayloads(1)].map((p) => p.payload);
  t.match(payloads[2], /"floatCounts":\{"1000":5,"200":10\}/);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const sent: string[] = [];
  await brokerSubscribe(broker, topics.journal(DEVICE), (p) => sent.push(p.toString('utf8')));
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge } = makeBridge(t, { brokerUrl: broker.url, journal: j.journal, stateDir: dir });
  await bridge.start();
  await until('the batch', () => sent.length === 1);
  t.equal(sent[0], `{"v":1,"deviceId":"${DEVICE}","epoch":1,"records":[${payloads.join(',')}]}`);
  t.equal(ledger.chainBreaks, 0);
  t.same(
    ledger.books.map((r) => r.seq),
    [1, 2, 3],
  );
  t.equal(bridge.status().oldestPendingTs, recordAt(j.journal, 1).ts, "the batch's first record's time");
});

t.test('an ack covering part of a batch: sending resumes right after it', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 10);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge, timers } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    batchMaxRecords: 2,
    maxInFlightBatches: 4,
    ackTimeoutMs: 5000,
  });
  await bridge.start();
  await until('four batches', () => ledger.batches.length === 4);
  await ledger.ack(3); // all of batch 1-2, half of 3-4
  await until('one more batch', () => ledger.batches.length === 5);
  t.same(ledger.firstSeqs(), [1, 3, 5, 7, 9], 'batch 1-2 left the window; 3-4 is still in it');
  t.match(bridge.status(), { ackedThrough: 3, pending: 7, inFlightBatches: 4 });
  t.equal(bridge.status().oldestPendingTs, recordAt(j.journal, 4).ts, 'oldest pending is record 4');

  await until('PUBACKs', () => bridge.status().awaitingPuback === 0);
  timers.advance(5000);
  await until('resent', () => ledger.batches.length === 9);
  t.same(ledger.firstSeqs().slice(5), [4, 6, 8, 10], 'the resend starts at 4, right after the ack');
  await ledger.ack(10);
  await until('all synced', () => bridge.status().pending === 0);
  t.equal(ledger.books.length, 10);
});

// ---- connection faults ----

t.test(
  'broker restart mid-drain: reconnects with its own backoff and finishes, nothing skipped',
  async (t) => {
    const dir = t.testdir();
    const j = openJournal(dir);
    appendSales(j, 60);
    let broker = await startBroker();
    const port = broker.port;
    t.teardown(() => broker.close());
    const ledger = new FakeLedger(1, 'each');
    let stopped = false;
    ledger.onBatch = (l, b) => {
      // The third batch lands and is booked, then the broker goes away before its ack.
      if (b.firstSeq === 11 && !stopped) {
        stopped = true;
        void broker.close();
        return;
      }
      void l.ack();
    };
    await ledger.attach(broker);
    const { bridge, timers, logs } = makeBridge(t, {
      brokerUrl: broker.url,
      journal: j.journal,
      stateDir: dir,
      batchMaxRecords: 5,
      maxInFlightBatches: 2,
      backoff: { initialMs: 1000, maxMs: 8000 },
    });
    const expected = randomFrom(new Rng(SEED));
    const delay = (attempt: number) =>
      backoffDelayMs(attempt, { initialMs: 1000, maxMs: 8000, random: expected });

    await bridge.start();
    await until('offline', () => bridge.status().state === 'offline');
    const acked = bridge.status().ackedThrough;
    t.ok(acked >= 5 && acked < 15, `stopped mid-drain, acked through ${acked}`);
    const d0 = delay(0);
    t.same(timers.pending(), [d0], `first retry after ${d0} ms (between 500 and 1000)`);
    t.ok(d0 >= 500 && d0 <= 1000);

    // The broker is still down: the next try fails and waits longer.
    timers.advance(d0);
    t.equal(bridge.status().state, 'connecting');
    await until('offline again', () => bridge.status().state === 'offline');
    const d1 = delay(1);
    t.same(timers.pending(), [d1], `second retry after ${d1} ms (between 1000 and 2000)`);
    t.match(bridge.status().lastError, /ECONNREFUSED/);

    // A new broker on the same port; the ledger republishes its retained ack as it would on start.
    broker = await startBroker(port);
    await ledger.attach(broker, true);
    timers.advance(d1);
    await until('drained', () => bridge.status().pending === 0, 10_000);
    t.equal(ledger.books.length, 60, 'every record booked');
    t.same(
      ledger.books.map((r) => r.seq),
      Array.from({ length: 60 }, (_, i) => i + 1),
      'once each, in order',
    );
    t.equal(ledger.chainBreaks, 0);
    t.equal(bridge.status().lastError, undefined, 'the error cleared on connect');
    t.equal(logs.count(/connection lost/), 1, 'the lost connection logged once');
    t.equal(logs.count('reconnecting after a pause'), 2);
  },
);

t.test('connection cut mid-publish: the batch is resent after the reconnect and booked once', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 30);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'each');
  let cut = false;
  ledger.onBatch = (l, b) => {
    if (b.firstSeq === 11 && !cut) {
      // Booked by the ledger, then the device's socket dies before the PUBACK and the ack; the
      // ledger acks nothing more until the device is back (a batch already read off the socket
      // may still land and be booked).
      cut = true;
      broker.clients.get(CLIENT_ID)!.conn.destroy();
      l.onBatch = () => {};
      return;
    }
    void l.ack();
  };
  await ledger.attach(broker);
  const { bridge, timers } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    batchMaxRecords: 5,
    maxInFlightBatches: 2,
  });
  await bridge.start();
  await until('offline', () => bridge.status().state === 'offline');
  t.equal(timers.pending().length, 1, 'one reconnect timer');
  const ackedAtCut = bridge.status().ackedThrough;
  t.ok(ackedAtCut <= 10, `acked through ${ackedAtCut} when the link went`);
  const sentBeforeReconnect = ledger.batches.length;
  ledger.onBatch = (l) => void l.ack();
  timers.advance(timers.pending()[0]!);
  await until('drained', () => bridge.status().pending === 0);
  t.equal(ledger.books.length, 30);
  t.same(
    ledger.books.map((r) => r.seq),
    Array.from({ length: 30 }, (_, i) => i + 1),
  );
  t.equal(
    ledger.batches[sentBeforeReconnect]!.firstSeq,
    ackedAtCut + 1,
    'after the reconnect sending starts again right after the last ack',
  );
  t.ok(ledger.firstSeqs().filter((s) => s === 11).length >= 2, 'the cut batch was sent again');
  t.equal(ledger.chainBreaks, 0);
});

t.test('a broker that takes batches without PUBACK: after the ack timeout, a fresh connection', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 6);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  let hold = true;
  // Publishes on the journal topic are held before routing: no PUBACK, nothing for the ledger.
  broker.aedes.authorizePublish = (_client, packet, cb) => {
    if (hold && packet.topic === topics.journal(DEVICE)) return;
    cb(null);
  };
  const ledger = new FakeLedger(1, 'each');
  await ledger.attach(broker);
  const { bridge, timers, logs } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    batchMaxRecords: 2,
    maxInFlightBatches: 4,
    ackTimeoutMs: 5000,
  });
  await bridge.start();
  await until('batches out', () => bridge.status().inFlightBatches === 3);
  t.equal(bridge.status().awaitingPuback, 3);
  timers.advance(5000);
  t.equal(logs.count('no ack and no PUBACK: reconnecting'), 1);
  t.match(bridge.status(), { state: 'offline', lastError: /no PUBACK/, inFlightBatches: 0 });
  hold = false;
  timers.advance(timers.pending()[0]!);
  await until('synced', () => bridge.status().pending === 0);
  t.equal(ledger.books.length, 6);
});

t.test('a gap in what the journal returns is reported and the rest still goes', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 8);
  // A journal that lost seqs 3 and 4 (never expected: registerd prunes only what is acked).
  const holed: JournalSource = {
    deviceId: DEVICE,
    epoch: 1,
    get lastSeq() {
      return j.journal.lastSeq;
    },
    *read(fromSeq = 1) {
      for (const r of j.journal.read(fromSeq)) if (r.seq !== 3 && r.seq !== 4) yield r;
    },
  };
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge, logs } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: holed,
    stateDir: dir,
    batchMaxRecords: 10,
  });
  await bridge.start();
  await until('two batches', () => ledger.batches.length === 2);
  t.same(
    ledger.batches.map((b) => [b.firstSeq, b.lastSeq]),
    [
      [1, 2],
      [5, 8],
    ],
    'each batch consecutive; the gap between them',
  );
  t.match(bridge.status().lastError, /no longer holds seqs 3 to 4/);
  t.equal(logs.lines.filter((l) => l.level === 'error' && /seqs 3 to 4/.test(l.msg)).length, 1);
  t.equal(ledger.cursor, 2, 'the ledger books up to the gap and no further');
});

// ---- acks ----

t.test('acks never move backwards; malformed acks are logged and ignored', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 10);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge, logs } = makeBridge(t, { brokerUrl: broker.url, journal: j.journal, stateDir: dir });
  await bridge.start();
  await until('sent', () => ledger.cursor === 10);
  await ledger.ack(6, { rejected: [{ seq: 4, code: 'CANNOT_APPLY' }] });
  await until('ack 6', () => bridge.status().ackedThrough === 6);
  t.same(bridge.status().rejected, [{ seq: 4, code: 'CANNOT_APPLY' }]);
  t.equal(logs.count(/rejected a record/), 1);

  await ledger.ack(3);
  await until('logged', () => logs.count('ack behind the last one ignored') === 1);
  t.equal(bridge.status().ackedThrough, 6, 'still 6');
  for (const bad of [
    'not json',
    '{"v":1}',
    JSON.stringify({ v: 1, epoch: 1, ackedThrough: -1, rejected: [], exceptions: [] }),
    '',
  ]) {
    await brokerPublish(broker, topics.ack(DEVICE), bad);
  }
  await until('malformed acks logged', () => logs.count('malformed ack ignored') === 4);
  t.equal(bridge.status().ackedThrough, 6);
  t.equal(bridge.status().state, 'connected', 'still connected');
  await ledger.ack(10);
  await until('ack 10', () => bridge.status().pending === 0);
});

t.test('an ack for another epoch is ignored; a new epoch starts from seq 1', async (t) => {
  const stateDir = t.testdir();
  const broker = await startBroker();
  t.teardown(() => broker.close());

  // Epoch 1: seven records, all acked, sync.json written on stop.
  const j1 = openJournal(path.join(stateDir, 'old'), 1);
  appendSales(j1, 7);
  const ledger1 = new FakeLedger(1, 'each');
  await ledger1.attach(broker);
  const first = makeBridge(t, { brokerUrl: broker.url, journal: j1.journal, stateDir });
  await first.bridge.start();
  await until('epoch 1 synced', () => first.bridge.status().pending === 0);
  await first.bridge.stop();
  j1.journal.close();
  t.match(JSON.parse(fs.readFileSync(path.join(stateDir, 'sync.json'), 'utf8')), {
    epoch: 1,
    ackedThrough: 7,
  });

  // The card is replaced: a new journal, epoch 2, three records. The broker still holds epoch 1's ack.
  const j2 = openJournal(path.join(stateDir, 'new'), 2);
  appendSales(j2, 3);
  const timers2 = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j2.journal,
    stateDir,
    ackWaitMs: 1000,
  });
  t.match(timers2.bridge.status(), { epoch: 2, ackedThrough: 0 });
  const seen: SeenBatch[] = [];
  await brokerSubscribe(broker, topics.journal(DEVICE), (p) => {
    const b = JournalBatchSchema.parse(JSON.parse(p.toString()));
    seen.push({
      firstSeq: b.records[0]!.seq,
      lastSeq: b.records.at(-1)!.seq,
      epoch: b.epoch,
      count: 0,
      bytes: 0,
    });
  });
  await timers2.bridge.start();
  t.match(
    timers2.bridge.status(),
    { epoch: 2, ackedThrough: 0, pending: 3 },
    'the saved epoch-1 ack is not ours',
  );
  // The retained epoch-1 ack arrives, is ignored, and ends the wait: no timer needs to fire.
  await until('epoch 2 sent', () => seen.some((b) => b.epoch === 2));
  t.equal(timers2.logs.count('ack for another epoch ignored'), 1);
  t.same(seen.filter((b) => b.epoch === 2)[0], { firstSeq: 1, lastSeq: 3, epoch: 2, count: 0, bytes: 0 });
  t.equal(timers2.bridge.status().ackedThrough, 0, 'the old ack counted nothing');

  const ledger2 = new FakeLedger(2, 'each');
  ledger2.cursor = 3;
  await ledger2.attach(broker, true);
  await until('epoch 2 synced', () => timers2.bridge.status().pending === 0);
  t.equal(timers2.bridge.syncedThroughSeq(), 3);
});

t.test('a retained ack on connect: nothing it covers is resent', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 20);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  // The ledger booked 1..12 while this register was away (its sync.json knows nothing of it).
  const ledger = new FakeLedger(1, 'each');
  await ledger.attach(broker);
  await ledger.ack(12);
  const { bridge, timers } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    ackWaitMs: 1000,
    batchMaxRecords: 4,
  });
  await bridge.start();
  await until('acked through 12', () => bridge.status().ackedThrough === 12);
  await until('the rest sent', () => ledger.batches.some((b) => b.lastSeq === 20));
  t.equal(ledger.batches[0]!.firstSeq, 13, 'the first batch starts after the retained ack');
  t.ok(
    ledger.batches.every((b) => b.firstSeq > 12),
    'nothing the ack covers was sent',
  );
  t.notOk(timers.pending().includes(1000), 'the wait ended when the ack arrived');
});

t.test('with no retained ack, sending starts after ackWaitMs', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 3);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'each');
  await ledger.attach(broker);
  const { bridge, timers } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    ackWaitMs: 1000,
  });
  await bridge.start();
  await until('waiting for the retained ack', () => timers.pending().includes(1000));
  t.equal(ledger.batches.length, 0, 'nothing sent while waiting');
  timers.advance(1000);
  await until('synced', () => bridge.status().pending === 0);
  t.equal(ledger.batches[0]!.firstSeq, 1);
});

// ---- catalog and cashiers ----

t.test(
  'catalog and cashiers: a newer retained version is installed once; older, equal and invalid are ignored',
  async (t) => {
    const dir = t.testdir();
    const j = openJournal(dir);
    const broker = await startBroker();
    t.teardown(() => broker.close());
    const catalog = (version: number, extra: Partial<Catalog> = {}) =>
      JSON.stringify({ ...demoCatalog, version, storeId: STORE, ...extra });
    await brokerPublish(broker, topics.catalog(STORE), catalog(5));
    await brokerPublish(broker, topics.cashiers(STORE), JSON.stringify({ ...demoCashiers, version: 2 }));
    const { bridge, installed, versions, logs, timers } = makeBridge(t, {
      brokerUrl: broker.url,
      journal: j.journal,
      stateDir: dir,
    });
    versions.catalog = 3;
    await bridge.start();
    await until('retained catalog installed', () => installed.catalog.length === 1);
    await until('retained cashiers installed', () => installed.cashiers.length === 1);
    t.equal(installed.catalog[0]!.version, 5);
    t.equal(installed.catalog[0]!.products.length, demoCatalog.products.length);
    t.equal(installed.cashiers[0]!.version, 2);

    const ignoredBefore = logs.count('catalog not newer; ignored');
    await brokerPublish(broker, topics.catalog(STORE), catalog(5));
    await brokerPublish(broker, topics.catalog(STORE), catalog(4));
    await until(
      'equal and older ignored',
      () => logs.count('catalog not newer; ignored') === ignoredBefore + 2,
    );
    await brokerPublish(broker, topics.catalog(STORE), '{"version": 9');
    await brokerPublish(broker, topics.catalog(STORE), JSON.stringify({ version: 9, storeId: STORE }));
    await brokerPublish(broker, topics.catalog(STORE), catalog(9, { currency: 'euro' }));
    await until('invalid ones logged', () => logs.count('invalid catalog ignored') === 3);
    t.match(logs.lines.filter((l) => l.msg === 'invalid catalog ignored')[2]!.fields, { reason: /currency/ });
    await brokerPublish(broker, topics.catalog(STORE), catalog(9, { storeId: 'other-store' }));
    await until('another store ignored', () => logs.count('catalog for another store ignored') === 1);
    t.equal(installed.catalog.length, 1, 'nothing else installed');

    await brokerPublish(broker, topics.catalog(STORE), catalog(6));
    await until('v6 installed', () => installed.catalog.length === 2);
    t.equal(versions.catalog, 6);

    // A reconnect delivers the retained v6 again: not installed twice.
    const notNewer = logs.count('catalog not newer; ignored');
    broker.clients.get(CLIENT_ID)!.conn.destroy();
    await until('offline', () => bridge.status().state === 'offline');
    timers.advance(timers.pending()[0]!);
    await until('retained v6 seen again', () => logs.count('catalog not newer; ignored') === notNewer + 1);
    t.equal(installed.catalog.length, 2);
    t.equal(installed.cashiers.length, 1);
  },
);

t.test('an install that throws is logged and the next version still installs', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  let fail = true;
  const got: number[] = [];
  const { bridge, logs } = makeBridge(t, {
    brokerUrl: broker.url,
    journal: j.journal,
    stateDir: dir,
    installCashiers: async (doc) => {
      if (fail) throw new Error('disk full');
      got.push(doc.version);
    },
    currentCashiersVersion: () => got.at(-1),
  });
  await bridge.start();
  await until('connected', () => bridge.status().state === 'connected');
  await brokerPublish(
    broker,
    topics.cashiers(STORE),
    JSON.stringify({ ...demoCashiers, storeId: STORE, version: 2 }),
  );
  await until('failure logged', () => logs.count('cashiers not installed') === 1);
  fail = false;
  await brokerPublish(
    broker,
    topics.cashiers(STORE),
    JSON.stringify({ ...demoCashiers, storeId: STORE, version: 3 }),
  );
  await until('v3 installed', () => got.length === 1);
  t.same(got, [3]);
});

// ---- status and the last will ----

t.test('last will: an unclean drop leaves the retained status online:false', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 2);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge } = makeBridge(t, { brokerUrl: broker.url, journal: j.journal, stateDir: dir });
  await bridge.start();
  await until('online status', () => ledger.lastStatus?.online === true);
  t.match(await retained(broker.url, topics.status(DEVICE)), { v: 1, online: true, pending: 2 });

  broker.clients.get(CLIENT_ID)!.conn.destroy(); // no DISCONNECT: the broker sends the will
  await until('the will', () => ledger.lastStatus?.online === false);
  const will = DeviceStatusSchema.parse(await retained(broker.url, topics.status(DEVICE)));
  t.match(will, { v: 1, online: false, epoch: 1, version: '0.1.0-test' });
  t.equal(bridge.status().state, 'offline');
});

t.test('a clean stop publishes online:false with the figures, retained, and no will', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 4);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge } = makeBridge(t, { brokerUrl: broker.url, journal: j.journal, stateDir: dir });
  await bridge.start();
  await until('sent', () => ledger.cursor === 4);
  await ledger.ack(1);
  await until('ack', () => bridge.status().ackedThrough === 1);
  await bridge.stop();
  const last = DeviceStatusSchema.parse(await retained(broker.url, topics.status(DEVICE)));
  t.match(last, { online: false, pending: 3, lastAckedSeq: 1, lastSeq: 4 });
  t.equal(bridge.status().state, 'offline');
});

t.test(
  'status figures: online, throttled, offline from sync.json, broker URL without credentials',
  async (t) => {
    const dir = t.testdir();
    const j = openJournal(dir);
    appendSales(j, 5);
    const broker = await startBroker();
    t.teardown(() => broker.close());
    const ledger = new FakeLedger(1, 'none');
    await ledger.attach(broker);
    const { bridge, timers, changes } = makeBridge(t, {
      brokerUrl: broker.url,
      journal: j.journal,
      stateDir: dir,
      statusMinIntervalMs: 1000,
    });
    t.match(bridge.status(), {
      state: 'offline',
      pending: 5,
      ackedThrough: 0,
      lastAckAt: null,
      rejected: [],
    });
    await bridge.start();
    await until('sent', () => ledger.cursor === 5);
    await until('online status', () => ledger.statuses.length >= 1);
    t.match(ledger.statuses[0], {
      v: 1,
      online: true,
      epoch: 1,
      lastSeq: 5,
      lastAckedSeq: 0,
      pending: 5,
      oldestPendingTs: recordAt(j.journal, 1).ts,
      clockTrusted: true,
      version: '0.1.0-test',
    });
    const published = ledger.statuses.length;
    timers.advance(10);
    await ledger.ack(5);
    await until('acked', () => bridge.status().pending === 0);
    t.equal(bridge.status().lastAckAt, timers.now);
    t.ok(changes.some((c) => c.state === 'connecting') && changes.some((c) => c.state === 'connected'));
    t.match(changes.at(-1), { pending: 0, ackedThrough: 5 });
    t.equal(ledger.statuses.length, published, 'not yet: at most one status a second');
    t.ok(timers.pending().includes(990), 'the next status is due 1 s after the last');
    timers.advance(990);
    await until('throttled status', () => ledger.lastStatus?.pending === 0);
    t.match(ledger.lastStatus, { lastAckedSeq: 5, oldestPendingTs: null });
    await bridge.stop();
    const lastAckAt = bridge.status().lastAckAt;

    // Restarted with no broker to reach: the figures come from sync.json and the journal.
    appendSales(j, 2);
    const port = await deadPort();
    const offline = makeBridge(t, {
      brokerUrl: `mqtt://device:s3cret@127.0.0.1:${port}`,
      journal: j.journal,
      stateDir: dir,
    });
    await offline.bridge.start();
    await until('offline', () => offline.bridge.status().state === 'offline');
    const s = offline.bridge.status();
    t.match(s, {
      state: 'offline',
      ackedThrough: 5,
      pending: 2,
      oldestPendingTs: recordAt(j.journal, 6).ts,
      lastAckAt,
      lastError: /ECONNREFUSED/,
    });
    t.equal(s.brokerUrl, `mqtt://127.0.0.1:${port}`, 'no credentials shown');
    t.notMatch(JSON.stringify(offline.changes), /s3cret/);
    offline.bridge.notify();
    t.equal(offline.bridge.status().pending, 2);
  },
);

t.test('an ack beyond the journal is an alarm and counts only what the journal holds', async (t) => {
  const dir = t.testdir();
  const j = openJournal(dir);
  appendSales(j, 3);
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'none');
  await ledger.attach(broker);
  const { bridge, logs } = makeBridge(t, { brokerUrl: broker.url, journal: j.journal, stateDir: dir });
  await bridge.start();
  await until('sent', () => ledger.cursor === 3);
  await ledger.ack(50);
  await until('applied', () => bridge.status().ackedThrough === 3);
  t.equal(logs.lines.filter((l) => l.level === 'error' && l.fields.alarm === 'sync').length, 1);
  appendSales(j, 1);
  bridge.notify();
  await until('record 4 sent', () => ledger.cursor === 4);
  t.equal(bridge.status().pending, 1, 'record 4 is pending: the bogus ack did not cover it');
});

// ---- the register's own records ----

t.test("a register's sales drain to the ledger with their chain intact", async (t) => {
  const dir = t.testdir();
  const r = await readyRegister();
  for (let i = 0; i < 3; i++) {
    await r.call('sale.scan', { code: code('COF-250') });
    await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 });
  }
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const ledger = new FakeLedger(1, 'each');
  await ledger.attach(broker);
  const { bridge } = makeBridge(t, { brokerUrl: broker.url, journal: r.journal, stateDir: dir });
  await bridge.start();
  await until('drained', () => bridge.status().pending === 0 && ledger.cursor === r.journal.lastSeq);
  t.equal(ledger.chainBreaks, 0);
  const events = ledger.books.flatMap((rec) => rec.events.map((e) => e.type));
  t.equal(events.filter((e) => e === 'sale.completed').length, 3);
  await r.call('sale.scan', { code: code('COF-250') });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 });
  bridge.notify();
  await until(
    'the new sale synced',
    () => bridge.status().pending === 0 && ledger.cursor === r.journal.lastSeq,
  );
});

// ---- TLS ----

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
})();

t.test(
  'mqtts with a client certificate: the tls options reach mqtt.js',
  { skip: hasOpenssl ? false : 'openssl is not available' },
  async (t) => {
    const dir = t.testdir();
    const pki = path.join(dir, 'pki');
    fs.mkdirSync(pki);
    const ssl = (args: string) => execFileSync('openssl', args.split(' '), { cwd: pki, stdio: 'pipe' });
    ssl('req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca');
    const issue = (name: string, cn: string, ext: string) => {
      ssl(`req -newkey rsa:2048 -nodes -keyout ${name}.key -out ${name}.csr -subj /CN=${cn}`);
      fs.writeFileSync(path.join(pki, `${name}.ext`), ext);
      const sign = '-CA ca.crt -CAkey ca.key -CAcreateserial -days 1';
      ssl(`x509 -req -in ${name}.csr ${sign} -out ${name}.crt -extfile ${name}.ext`);
    };
    issue('server', 'localhost', 'subjectAltName=DNS:localhost\n');
    issue('device', DEVICE, 'extendedKeyUsage=clientAuth\n');
    const read = (f: string) => fs.readFileSync(path.join(pki, f), 'utf8');
    const broker = await startBroker(0, {
      key: read('server.key'),
      cert: read('server.crt'),
      ca: read('ca.crt'),
    });
    t.teardown(() => broker.close());
    const j = openJournal(dir);
    appendSales(j, 3);
    const ledger = new FakeLedger(1, 'each');
    await ledger.attach(broker);

    // Without a client certificate the broker refuses the handshake.
    const refused = makeBridge(t, {
      brokerUrl: broker.url,
      journal: j.journal,
      stateDir: path.join(dir, 'refused'),
      tls: { ca: read('ca.crt') },
    });
    await refused.bridge.start();
    await until('refused', () => refused.bridge.status().state === 'offline');
    t.ok(refused.bridge.status().lastError, `refused: ${refused.bridge.status().lastError}`);
    await refused.bridge.stop();

    const { bridge } = makeBridge(t, {
      brokerUrl: broker.url,
      journal: j.journal,
      stateDir: dir,
      tls: () => ({ ca: read('ca.crt'), cert: read('device.crt'), key: read('device.key') }),
    });
    await bridge.start();
    await until('synced over TLS', () => bridge.status().pending === 0 && ledger.cursor === 3);
    t.equal(bridge.status().state, 'connected');
  },
);
