// The documented Mosquitto setup (docs/mosquitto/) against a real mosquitto: a CA and certificates made
// with openssl, per-device TLS client certificates whose CN is the MQTT username, and the ACL. A device
// publishes on its own journal; on another device's it is silently dropped (MQTT 3.1.1 has no way to
// say no to a PUBLISH); a client without a certificate does not get a session.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { connectAsync, type MqttClient } from 'mqtt';
import { LedgerConsumer } from '../../ledger/consumer.js';
import { topics, type Ack } from '../../cloud-bridge/protocol/wire.js';
import { startTlsMosquitto } from '../support/mosquitto-tls.js';

const broker = await startTlsMosquitto(t);
const { url, file, openssl, tlsAs } = broker;
broker.issue('till-a', 'till-a');
broker.issue('till-b', 'till-b');
broker.issue('ledger', 'ledger');

async function device(name: string): Promise<MqttClient> {
  const c = await connectAsync(url, { ...tlsAs(name), clientId: name, reconnectPeriod: 0, clean: true });
  t.teardown(() => c.endAsync(true));
  return c;
}

/** What the ledger consumer took in, and a way to wait for a tag without sleeping. */
const received: { deviceId: string; tag: string }[] = [];
const waiters = new Map<string, () => void>();
const arrived = (tag: string) =>
  received.some((r) => r.tag === tag)
    ? Promise.resolve()
    : new Promise<void>((resolve) => waiters.set(tag, resolve));
const ledger = new LedgerConsumer({
  url,
  clientId: 'ledger-sec-0',
  shared: true,
  mqtt: tlsAs('ledger'),
  inbox: {
    async journal(deviceId, payload) {
      const { tag } = JSON.parse(payload.toString()) as { tag: string };
      received.push({ deviceId, tag });
      waiters.get(tag)?.();
      const ack: Ack = { v: 1, epoch: 1, ackedThrough: received.length, rejected: [], exceptions: [] };
      return { ack };
    },
    async status() {},
  },
});
t.teardown(() => ledger.stop());

t.test("the ledger's certificate subscribes to every journal through the shared subscription", async (t) => {
  await ledger.start();
  t.pass('subscribed to $share/ledger/pos/v1/d/+/journal and …/status');
});

t.test('a device publishes on its own journal and reads its own ack', async (t) => {
  const tillA = await device('till-a');
  const acks: Ack[] = [];
  const gotAck = new Promise<void>((resolve) =>
    tillA.on('message', (_topic, payload) => {
      acks.push(JSON.parse(payload.toString()) as Ack);
      resolve();
    }),
  );
  const granted = await tillA.subscribeAsync(topics.ack('till-a'), { qos: 1 });
  t.equal(granted[0]?.qos, 1, 'its own ack topic');
  await tillA.publishAsync(topics.journal('till-a'), JSON.stringify({ tag: 'a-own' }), { qos: 1 });
  await arrived('a-own');
  t.same(received, [{ deviceId: 'till-a', tag: 'a-own' }]);
  await gotAck;
  t.equal(acks[0]?.ackedThrough, 1, 'the ledger may write acks; the device reads its own');
});

t.test("a device publishing on another device's journal is dropped by the broker", async (t) => {
  const tillA = await device('till-a');
  // PUBACKed all the same: MQTT 3.1.1 cannot refuse a PUBLISH, mosquitto drops it.
  await tillA.publishAsync(topics.journal('till-b'), JSON.stringify({ tag: 'forged' }), { qos: 1 });
  // Sent after the broker has handled the forged one, on the same connection: once the ledger has
  // this, it would have had the forged one before it.
  await tillA.publishAsync(topics.journal('till-a'), JSON.stringify({ tag: 'control' }), { qos: 1 });
  await arrived('control');
  t.notOk(
    received.some((r) => r.tag === 'forged'),
    'the forged batch never reached the ledger',
  );
  t.ok(
    broker.log.some((l) => /Denied PUBLISH from till-a .*pos\/v1\/d\/till-b\/journal/.test(l)),
    'mosquitto logs the denial',
  );

  const tillB = await device('till-b');
  await tillB.publishAsync(topics.journal('till-b'), JSON.stringify({ tag: 'b-own' }), { qos: 1 });
  await arrived('b-own');
  t.same(received.at(-1), { deviceId: 'till-b', tag: 'b-own' }, 'till-b on its own topic still flows');
});

t.test("a device cannot read another device's ack, nor write an ack or a catalog", async (t) => {
  const tillA = await device('till-a');
  const tillB = await device('till-b');
  const seenByA: string[] = [];
  const seenByB: string[] = [];
  /** The ledger's ack acking `tag`'s message (ackedThrough counts the messages the ledger took in). */
  const ackFor = (client: MqttClient, topic: string, tag: string) =>
    new Promise<void>((resolve) =>
      client.on('message', (tp, payload) => {
        const n = received.findIndex((r) => r.tag === tag) + 1;
        if (tp === topic && n > 0 && (JSON.parse(payload.toString()) as Ack).ackedThrough === n) resolve();
      }),
    );
  tillA.on('message', (topic, payload) => seenByA.push(`${topic} ${payload.toString()}`));
  tillB.on('message', (topic, payload) => seenByB.push(`${topic} ${payload.toString()}`));
  // mosquitto grants the SUBSCRIBE (its ACL is checked per message delivered, with "read")…
  await tillA.subscribeAsync([topics.ack('till-b'), topics.ack('till-a')], { qos: 1 });
  await tillB.subscribeAsync([topics.ack('till-b'), topics.catalog('store-1')], { qos: 1 });

  // …but till-b's ack never reaches till-a: the ledger acks till-b, then till-a; till-a gets only its own.
  const bAck = ackFor(tillB, topics.ack('till-b'), 'b-3');
  await tillB.publishAsync(topics.journal('till-b'), JSON.stringify({ tag: 'b-3' }), { qos: 1 });
  await bAck;
  const aAck = ackFor(tillA, topics.ack('till-a'), 'a-3');
  await tillA.publishAsync(topics.journal('till-a'), JSON.stringify({ tag: 'a-3' }), { qos: 1 });
  await aAck;
  t.ok(seenByA.length > 0, 'till-a got acks');
  t.ok(
    seenByA.every((m) => m.startsWith(topics.ack('till-a'))),
    "till-a reads its own ack (retained and new), never till-b's",
  );

  // till-a forges till-b's ack and a store catalog: both dropped. The ledger's next ack to till-b is
  // published after mosquitto handled the forgeries, so they would have reached till-b first.
  await tillA.publishAsync(topics.ack('till-b'), JSON.stringify({ forged: true }), { qos: 1, retain: true });
  await tillA.publishAsync(topics.catalog('store-1'), JSON.stringify({ version: 999 }), {
    qos: 1,
    retain: true,
  });
  const bAck2 = ackFor(tillB, topics.ack('till-b'), 'b-4');
  await tillB.publishAsync(topics.journal('till-b'), JSON.stringify({ tag: 'b-4' }), { qos: 1 });
  await bAck2;
  t.notOk(
    seenByB.some((m) => m.includes('forged') || m.startsWith(topics.catalog('store-1'))),
    "only the ledger's acks reached till-b: the forged ack and catalog did not",
  );
  t.ok(broker.log.some((l) => /Denied PUBLISH from till-a .*pos\/v1\/s\/store-1\/catalog/.test(l)));
});

t.test('a client without a certificate gets no session', async (t) => {
  const err = await connectAsync(url, {
    ca: readFileSync(file('ca.crt')),
    clientId: 'no-cert',
    reconnectPeriod: 0,
    connectTimeout: 5000,
  }).then(
    (c) => (c.end(true), new Error('connected')),
    (e: Error) => e,
  );
  t.match(err.message, /alert certificate required/, 'refused in the TLS handshake');
});

t.test('a certificate from another CA gets no session', async (t) => {
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'rogue-ca.key');
  openssl(
    'req', '-x509', '-new', '-key', 'rogue-ca.key', '-days', '2', '-subj', '/CN=Rogue CA', '-out', 'rogue-ca.crt',
  ); // prettier-ignore
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'rogue.key');
  openssl('req', '-new', '-key', 'rogue.key', '-subj', '/CN=till-b', '-out', 'rogue.csr');
  openssl(
    'x509', '-req', '-in', 'rogue.csr', '-CA', 'rogue-ca.crt', '-CAkey', 'rogue-ca.key', '-CAcreateserial',
    '-days', '2', '-out', 'rogue.crt',
  ); // prettier-ignore
  const err = await connectAsync(url, {
    ca: readFileSync(file('ca.crt')),
    cert: readFileSync(file('rogue.crt')),
    key: readFileSync(file('rogue.key')),
    clientId: 'till-b',
    reconnectPeriod: 0,
    connectTimeout: 5000,
  }).then(
    (c) => (c.end(true), new Error('connected')),
    (e: Error) => e,
  );
  t.match(
    err.message,
    /alert unknown ca/,
    'CN=till-b, but not signed by our CA: refused in the TLS handshake',
  );
});
