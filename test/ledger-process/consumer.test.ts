// The ledger's consumer against the embedded broker, with a scripted inbox standing in for the books:
// the PUBACK follows the commit and the ack, one device in order, devices side by side within a bound,
// a failed apply redelivered, a killed consumer's message redelivered to its successor.
import t, { type Test } from 'tap';
import { connectAsync, type MqttClient } from 'mqtt';
import { EmbeddedBroker } from '../../ledger/broker.js';
import {
  LedgerConsumer,
  reconnectDelayMs,
  subscriptionTopics,
  type LedgerInbox,
} from '../../ledger/consumer.js';
import { topics, type Ack } from '../../cloud-bridge/protocol/wire.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openLedgerDb, type LedgerDb } from '../../ledger/db/open.js';
import { applyJournalMessage } from '../../ledger/apply.js';
import { recordDeviceStatus } from '../../ledger/queries.js';
import {
  count,
  journalOf,
  message,
  randomSales,
  rechain,
  snapshotBooks,
  split,
} from '../support/ledger-fixtures.js';

interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
}
function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** The next value a condition-checked list receives, without polling. */
function waitUntil<T>(list: T[], onPush: Set<() => void>, match: (items: T[]) => boolean): Promise<void> {
  if (match(list)) return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (match(list)) {
        onPush.delete(check);
        resolve();
      }
    };
    onPush.add(check);
  });
}

/** A journal message as a test writes it: its body names the device and a tag to tell messages apart. */
function body(tag: string): string {
  return JSON.stringify({ tag });
}

function ackFor(through: number): Ack {
  return { v: 1, epoch: 1, ackedThrough: through, rejected: [], exceptions: [] };
}

interface Harness {
  broker: EmbeddedBroker;
  url: string;
  /** Tags in the order the inbox started them (`start:`) and finished them (`commit:`). */
  events: string[];
  /** Tags of journal messages whose PUBACK the broker received, in order. */
  pubacks: string[];
  /** Per tag: resolve to let its apply commit; unset tags commit at once. */
  gates: Map<string, Deferred>;
  /** Tags whose apply throws (once per entry). */
  failOnce: Set<string>;
  inbox: LedgerInbox;
  statuses: { deviceId: string; body: string }[];
  changed: Set<() => void>;
  device(id: string): Promise<MqttClient>;
}

async function harness(t: Test): Promise<Harness> {
  const broker = new EmbeddedBroker({ port: 0 });
  const { url } = await broker.start();
  t.teardown(() => broker.stop());
  const changed = new Set<() => void>();
  const notify = () => [...changed].forEach((f) => f());
  const h: Harness = {
    broker,
    url,
    events: [],
    pubacks: [],
    gates: new Map(),
    failOnce: new Set(),
    statuses: [],
    changed,
    inbox: {
      async journal(deviceId, payload) {
        const { tag } = JSON.parse(payload.toString()) as { tag: string };
        h.events.push(`start:${tag}`);
        notify();
        await h.gates.get(tag)?.promise;
        if (h.failOnce.delete(tag)) {
          h.events.push(`fail:${tag}`);
          notify();
          throw Object.assign(new Error('database away'), { code: 'DB_DOWN' });
        }
        h.events.push(`commit:${tag}`);
        notify();
        return { ack: ackFor(Number(tag.replace(/\D/g, '')) || 1), applied: 1, deviceId };
      },
      async status(deviceId, payload) {
        h.statuses.push({ deviceId, body: payload.toString() });
        notify();
      },
    },
    async device(id) {
      const c = await connectAsync(url, { clientId: `dev-${id}`, clean: true, reconnectPeriod: 0 });
      t.teardown(() => c.endAsync(true));
      return c;
    },
  };
  broker.instance!.on('ack', (packet) => {
    if (packet && 'topic' in packet && packet.topic.endsWith('/journal')) {
      h.pubacks.push((JSON.parse(packet.payload.toString()) as { tag: string }).tag);
      notify();
    }
  });
  return h;
}

async function consumer(
  t: Test,
  h: Harness,
  extra: Partial<ConstructorParameters<typeof LedgerConsumer>[0]> = {},
) {
  const c = new LedgerConsumer({
    url: h.url,
    clientId: 'ledger-test-0',
    inbox: h.inbox,
    reconnectInitialMs: 5,
    reconnectMaxMs: 20,
    ...extra,
  });
  await c.start();
  t.teardown(() => c.stop());
  return c;
}

t.test('the PUBACK follows the commit, and the ack is published retained before it', async (t) => {
  const h = await harness(t);
  const c = await consumer(t, h);
  const sent: string[] = [];
  (c as unknown as { client: MqttClient }).client.on('packetsend', (p) => {
    if (p.cmd === 'publish') sent.push(`publish ${p.topic}`);
    if (p.cmd === 'puback') sent.push('puback');
  });
  h.gates.set('m1', deferred());
  const till = await h.device('till-1');
  await till.publishAsync(topics.journal('till-1'), body('m1'), { qos: 1 });
  await waitUntil(h.events, h.changed, (e) => e.includes('start:m1'));
  t.same(h.pubacks, [], 'no PUBACK while the apply has not committed');
  h.gates.get('m1')!.resolve();
  await waitUntil(h.pubacks, h.changed, (p) => p.includes('m1'));
  t.same(h.events, ['start:m1', 'commit:m1']);
  t.same(sent, ['publish pos/v1/d/till-1/ack', 'puback'], 'the ack goes out on the socket before the PUBACK');

  const watcher = await h.device('watcher');
  const got = deferred<{ ack: Ack; retain: boolean }>();
  watcher.on('message', (_topic, payload, packet) =>
    got.resolve({ ack: JSON.parse(payload.toString()) as Ack, retain: packet.retain }),
  );
  await watcher.subscribeAsync(topics.ack('till-1'), { qos: 1 });
  const { ack, retain } = await got.promise;
  t.equal(retain, true, 'the ack is retained: a device that connects later still gets it');
  t.same(ack, ackFor(1));
});

t.test("one device's messages apply one at a time in arrival order; other devices do not wait", async (t) => {
  const h = await harness(t);
  await consumer(t, h);
  h.gates.set('a1', deferred());
  const a = await h.device('till-a');
  const b = await h.device('till-b');
  await a.publishAsync(topics.journal('till-a'), body('a1'), { qos: 1 });
  await a.publishAsync(topics.journal('till-a'), body('a2'), { qos: 1 });
  await b.publishAsync(topics.journal('till-b'), body('b1'), { qos: 1 });
  await waitUntil(h.events, h.changed, (e) => e.includes('commit:b1'));
  t.notOk(h.events.includes('start:a2'), 'a2 waits for a1');
  t.same(h.pubacks, [], "b1 committed, but its PUBACK waits for a1's: PUBACKs go out in arrival order");
  h.gates.get('a1')!.resolve();
  await waitUntil(h.pubacks, h.changed, (p) => p.length === 3);
  t.same(h.pubacks, ['a1', 'a2', 'b1']);
  t.ok(h.events.indexOf('commit:a1') < h.events.indexOf('start:a2'));
});

t.test(
  "a message is checked as it arrives, while the device's message before it still applies",
  async (t) => {
    const h = await harness(t);
    const journal = h.inbox.journal.bind(h.inbox);
    const handed: unknown[] = [];
    await consumer(t, h, {
      inbox: {
        ...h.inbox,
        check: (_deviceId, payload) => {
          const { tag } = JSON.parse(payload.toString()) as { tag: string };
          h.events.push(`check:${tag}`);
          h.changed.forEach((f) => f());
          return { checkedTag: tag };
        },
        journal: (deviceId, payload, nowMs, checked) => {
          handed.push(checked);
          return journal(deviceId, payload, nowMs);
        },
      },
    });
    h.gates.set('c1', deferred());
    const till = await h.device('till-c');
    await till.publishAsync(topics.journal('till-c'), body('c1'), { qos: 1 });
    await till.publishAsync(topics.journal('till-c'), body('c2'), { qos: 1 });
    await waitUntil(h.events, h.changed, (e) => e.includes('check:c2'));
    t.same(h.events, ['check:c1', 'start:c1', 'check:c2'], 'c2 is checked while c1 is still applying');
    h.gates.get('c1')!.resolve();
    await waitUntil(h.pubacks, h.changed, (p) => p.length === 2);
    t.same(handed, [{ checkedTag: 'c1' }, { checkedTag: 'c2' }], "each apply gets its own message's check");
    t.same(h.pubacks, ['c1', 'c2']);
  },
);

t.test('at most maxInFlight messages are taken in at once', async (t) => {
  const h = await harness(t);
  await consumer(t, h, { maxInFlight: 2 });
  for (const tag of ['x1', 'y1', 'z1']) h.gates.set(tag, deferred());
  for (const id of ['x', 'y', 'z']) {
    const c = await h.device(id);
    await c.publishAsync(topics.journal(id), body(`${id}1`), { qos: 1 });
  }
  await waitUntil(h.events, h.changed, (e) => e.length === 2);
  t.same(h.events, ['start:x1', 'start:y1'], 'the third waits with the broker');
  h.gates.get('x1')!.resolve();
  await waitUntil(h.events, h.changed, (e) => e.includes('start:z1'));
  h.gates.get('y1')!.resolve();
  h.gates.get('z1')!.resolve();
  await waitUntil(h.pubacks, h.changed, (p) => p.length === 3);
  t.same(h.pubacks, ['x1', 'y1', 'z1']);
});

t.test('a failed apply is not acked: the consumer reconnects and the broker redelivers it', async (t) => {
  const h = await harness(t);
  await consumer(t, h);
  h.failOnce.add('f1');
  const till = await h.device('till-f');
  await till.publishAsync(topics.journal('till-f'), body('f1'), { qos: 1 });
  await waitUntil(h.pubacks, h.changed, (p) => p.includes('f1'));
  t.same(h.events, ['start:f1', 'fail:f1', 'start:f1', 'commit:f1']);
  t.same(h.pubacks, ['f1'], 'one PUBACK, after the commit');
});

t.test(
  'a message that keeps failing is let go after maxApplyAttempts so the rest keeps flowing',
  async (t) => {
    const h = await harness(t);
    const failing = { ...h.inbox, journal: () => Promise.reject(new Error('always')) };
    let attempts = 0;
    await consumer(t, h, {
      maxApplyAttempts: 3,
      inbox: {
        ...failing,
        journal: (d, p, n) =>
          JSON.parse(p.toString()).tag === 'p1' ? (attempts++, failing.journal()) : h.inbox.journal(d, p, n),
      },
    });
    const till = await h.device('till-p');
    await till.publishAsync(topics.journal('till-p'), body('p1'), { qos: 1 });
    await till.publishAsync(topics.journal('till-p'), body('p2'), { qos: 1 });
    await waitUntil(h.pubacks, h.changed, (p) => p.includes('p2'));
    t.equal(attempts, 3);
    t.same(h.pubacks, ['p1', 'p2']);
  },
);

t.test(
  'a consumer killed before its commit: the message goes to the next one with the same client id',
  async (t) => {
    const h = await harness(t);
    const first = new LedgerConsumer({ url: h.url, clientId: 'ledger-kill', inbox: h.inbox });
    await first.start();
    h.gates.set('k1', deferred());
    const till = await h.device('till-k');
    await till.publishAsync(topics.journal('till-k'), body('k1'), { qos: 1 });
    await waitUntil(h.events, h.changed, (e) => e.includes('start:k1'));
    // Killed: the connection goes without a PUBACK (stop() would wait for the commit).
    (first as unknown as { client: MqttClient }).client.end(true);
    h.gates.set('k1', deferred());
    h.gates.get('k1')!.resolve();
    await consumer(t, h, { clientId: 'ledger-kill' });
    await waitUntil(h.pubacks, h.changed, (p) => p.includes('k1'));
    t.same(
      h.events.filter((e) => e === 'start:k1').length,
      2,
      'redelivered: the books see it twice and count the second as a duplicate',
    );
  },
);

t.test('stop() lets an apply in flight commit and PUBACKs it before disconnecting', async (t) => {
  const h = await harness(t);
  const c = new LedgerConsumer({ url: h.url, clientId: 'ledger-stop', inbox: h.inbox });
  await c.start();
  h.gates.set('s1', deferred());
  const till = await h.device('till-s');
  await till.publishAsync(topics.journal('till-s'), body('s1'), { qos: 1 });
  await waitUntil(h.events, h.changed, (e) => e.includes('start:s1'));
  const stopped = c.stop();
  h.gates.get('s1')!.resolve();
  await stopped;
  t.same(h.pubacks, ['s1']);
});

t.test('status messages reach the inbox with the device id from the topic', async (t) => {
  const h = await harness(t);
  await consumer(t, h);
  const till = await h.device('till-st');
  await till.publishAsync(topics.status('till-st'), JSON.stringify({ v: 1, online: true }), {
    qos: 1,
    retain: true,
  });
  await waitUntil(h.statuses, h.changed, (s) => s.length === 1);
  t.same(h.statuses, [{ deviceId: 'till-st', body: '{"v":1,"online":true}' }]);
});

t.test('subscription topics and reconnect delays', async (t) => {
  t.same(subscriptionTopics(false), ['pos/v1/d/+/journal', 'pos/v1/d/+/status']);
  t.same(subscriptionTopics(true), ['$share/ledger/pos/v1/d/+/journal', '$share/ledger/pos/v1/d/+/status']);
  const table: [attempt: number, random: number, ms: number][] = [
    [0, 0.5, 500],
    [1, 0.5, 1000],
    [3, 0, 3000],
    [3, 1, 5000],
    [10, 0.5, 30_000],
    [1000, 0.5, 30_000],
  ];
  for (const [attempt, random, ms] of table) t.equal(reconnectDelayMs(attempt, 500, 30_000, random), ms);
});

// ---- with the books: embedded broker + SQLite ----

async function books(t: Test): Promise<LedgerDb> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ledger-consumer-'));
  const ldb = await openLedgerDb(`sqlite:${path.join(dir, 'ledger.db')}`);
  t.teardown(async () => {
    await ldb.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return ldb;
}

const booksInbox = (ldb: LedgerDb): LedgerInbox => ({
  journal: (deviceId, payload, nowMs) => applyJournalMessage(ldb, deviceId, payload, nowMs),
  status: (deviceId, payload, nowMs) => recordDeviceStatus(ldb, deviceId, payload, nowMs),
});

/** The ack on `deviceId`'s topic once it covers `through`. */
function ackThrough(c: MqttClient, deviceId: string, through: number, epoch = 1): Promise<Ack> {
  return new Promise((resolve) =>
    c.on('message', (topic, payload) => {
      if (topic !== topics.ack(deviceId)) return;
      const ack = JSON.parse(payload.toString()) as Ack;
      if (ack.epoch === epoch && ack.ackedThrough >= through) resolve(ack);
    }),
  );
}

t.test(
  'with the books: a batch is applied, acked retained, and PUBACKed only after the commit',
  async (t) => {
    const h = await harness(t);
    const ldb = await books(t);
    await consumer(t, h, { inbox: booksInbox(ldb) });
    const records = journalOf(await randomSales(11, 8));
    // When the broker gets the PUBACK, the records are in the books already.
    const atPuback: number[] = [];
    const pubackSeen = deferred();
    h.broker.instance!.on('ack', (packet) => {
      if (packet && 'topic' in packet && packet.topic === topics.journal('till-1'))
        void count(ldb, 'inbox').then((n) => {
          atPuback.push(n);
          pubackSeen.resolve();
        });
    });
    const till = await h.device('till-1');
    await till.subscribeAsync(topics.ack('till-1'), { qos: 1 });
    const acked = ackThrough(till, 'till-1', records.length);
    await till.publishAsync(topics.journal('till-1'), message(records), { qos: 1 });
    const ack = await acked;
    await pubackSeen.promise;
    t.same(atPuback, [records.length], 'every record was committed when the PUBACK arrived');
    t.same(ack, { v: 1, epoch: 1, ackedThrough: records.length, rejected: [], exceptions: ack.exceptions });

    // The whole queue again (a device that lost its acks): books unchanged, the same ack.
    const before = await snapshotBooks(ldb);
    const reacked = ackThrough(till, 'till-1', records.length);
    await till.publishAsync(topics.journal('till-1'), message(records), { qos: 1 });
    t.equal((await reacked).ackedThrough, records.length);
    t.same(await snapshotBooks(ldb), before, 'exactly once: a resend changes nothing');

    // Retained: a device that connects after gets the ack.
    const late = await h.device('till-1-late');
    const retained = ackThrough(late, 'till-1', records.length);
    await late.subscribeAsync(topics.ack('till-1'), { qos: 1 });
    t.equal((await retained).ackedThrough, records.length);
  },
);

t.test('with the books: batches out of order, and a payload naming another device', async (t) => {
  const h = await harness(t);
  const ldb = await books(t);
  await consumer(t, h, { inbox: booksInbox(ldb) });
  const records = rechain(journalOf(await randomSales(12, 6)), 'till-2', 1);
  const [first, ...rest] = split(records, 3);
  const till = await h.device('till-2');
  await till.subscribeAsync(topics.ack('till-2'), { qos: 1 });
  // The later batches first: held at the gap, applied once the first arrives and they come again.
  for (const batch of rest)
    await till.publishAsync(topics.journal('till-2'), message(batch, 'till-2'), { qos: 1 });
  const acked = ackThrough(till, 'till-2', records.length);
  await till.publishAsync(topics.journal('till-2'), message(first!, 'till-2'), { qos: 1 });
  for (const batch of rest)
    await till.publishAsync(topics.journal('till-2'), message(batch, 'till-2'), { qos: 1 });
  t.equal((await acked).ackedThrough, records.length);
  t.equal(await count(ldb, 'inbox'), records.length);

  // till-2's topic, a payload saying till-1: quarantined with a code, nothing booked for till-1, and
  // till-2 is acked as before (the next ack on its topic answers this message).
  const answered = new Promise<Ack>((resolve) =>
    till.on(
      'message',
      (topic, payload) => topic === topics.ack('till-2') && resolve(JSON.parse(payload.toString())),
    ),
  );
  await till.publishAsync(topics.journal('till-2'), message(journalOf(await randomSales(13, 1)), 'till-1'), {
    qos: 1,
  });
  t.equal((await answered).ackedThrough, records.length, "till-2's own records stay acked");
  const kept = await ldb.db.selectFrom('quarantine').select(['device_id', 'code']).execute();
  t.same(
    kept,
    [{ device_id: 'till-2', code: 'DEVICE_MISMATCH' }],
    "kept in quarantine under the topic's device",
  );
  t.equal(await count(ldb, 'inbox'), records.length, 'nothing of the impostor booked');
});

t.test(
  'two consumers behind a shared subscription on Mosquitto split the devices, each message once',
  async (t) => {
    // The Mosquitto every suite shares (127.0.0.1:1883): our own group and device ids, so other traffic
    // there passes through untouched (the inbox answers it with no ack) and ours stays ours.
    const url = process.env.LEDGER_TEST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883';
    const run = `${process.pid}-${Date.now().toString(36)}`;
    const ours = (deviceId: string) => deviceId.endsWith(run);
    const applied: { consumer: number; deviceId: string; tag: string }[] = [];
    const changed = new Set<() => void>();
    const inbox = (consumer: number): LedgerInbox => ({
      async journal(deviceId, payload) {
        if (!ours(deviceId)) return { ack: null };
        applied.push({ consumer, deviceId, tag: (JSON.parse(payload.toString()) as { tag: string }).tag });
        [...changed].forEach((f) => f());
        return { ack: null };
      },
      async status() {},
    });
    const clientIds = [0, 1].map((i) => `ledger-share-${run}-${i}`);
    const consumers = clientIds.map(
      (clientId, i) =>
        new LedgerConsumer({ url, clientId, inbox: inbox(i), shared: true, shareGroup: `t${run}` }),
    );
    t.teardown(async () => {
      for (const c of consumers) await c.stop();
      // Drop the persistent sessions we made on the shared broker.
      for (const clientId of clientIds) await (await connectAsync(url, { clientId, clean: true })).endAsync();
    });
    for (const c of consumers) await c.start();

    const devices = [0, 1, 2, 3].map((i) => `till-${i}-${run}`);
    const till = await connectAsync(url, { clientId: `pub-${run}`, clean: true, reconnectPeriod: 0 });
    t.teardown(() => till.endAsync(true));
    for (let n = 0; n < 5; n++)
      for (const d of devices) await till.publishAsync(topics.journal(d), body(`${d}#${n}`), { qos: 1 });
    await waitUntil(applied, changed, (a) => a.length >= 20);
    t.equal(applied.length, 20);
    t.equal(new Set(applied.map((a) => a.tag)).size, 20, 'every message applied once, by one consumer');
    t.same(new Set(applied.map((a) => a.consumer)), new Set([0, 1]), 'both consumers took a share');
  },
);
