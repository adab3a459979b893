// Seeded junk on the topics a live registerd's cloud bridge listens to (the bad-input campaign on MQTT,
// issue 7): its ack topic and its store's catalog and cashiers topics, on an embedded aedes broker,
// the test playing the ledger (booking batches by seq and acking them). Between junk rounds sales are
// rung up through the control socket. Every junk message must be refused with its own log line (a
// reason for the malformed ones), the link must stay up, the installed documents must not change, and
// every record must still sync; at the end a valid newer catalog still installs. The seed is printed;
// replay with `FUZZ_SEED=<seed> npx tap test/fuzz/mqtt-bridge.test.ts`.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aedes } from 'aedes';
import { connect, type MqttClient } from 'mqtt';
import { AckSchema, JournalBatchSchema, WIRE_VERSION, topics } from '../../cloud-bridge/protocol/wire.js';
import { CatalogSchema } from '../../appliance/till/catalog.js';
import { CashierListSchema } from '../../appliance/till/cashiers.js';
import { nodeFs } from '../../appliance/journal/fs.js';
import { verifyJournal } from '../../appliance/journal/verify.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { controlCaller, startDaemon } from '../support/registerd-process.js';
import { Rng, seedFromEnv } from '../support/rng.js';
import {
  DEMO_CASHIERS_FILE,
  DEMO_CATALOG_FILE,
  PINS,
  code,
  demoCashiers,
  demoCatalog,
} from '../support/till-fixtures.js';
import { waitFor } from '../support/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SEED = seedFromEnv('FUZZ_SEED');
const ROUNDS = 5;
/** Junk messages per topic and round. */
const PER_TOPIC = 6;
const WAIT_MS = 15_000; // a bound on every wait; each normally ends in milliseconds
const DEVICE = 'till-mqtt-fuzz';
const STORE = demoCatalog.storeId;

interface Status {
  catalogVersion: number | null;
  cashiersVersion: number | null;
  lastSeq: number;
  sync: { state: string; pending: number; ackedThrough: number } | null;
}

/** A junk message, and the log line (registerd's `msg`) that must refuse it. */
type Junk = { kind: string; payload: Buffer; refusal: string };

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function junkBytes(rng: Rng): Buffer {
  return rng.chance(0.5)
    ? Buffer.from(rng.bytes(rng.int(1, 400)))
    : Buffer.from(`{"v":1,${'"x":'.repeat(rng.int(1, 5))}`); // JSON cut short
}

/**
 * Changes one field of a valid object to a value of the wrong type or range (or adds a field), until
 * the schema refuses it: junk that happened to be valid would rightly be taken.
 */
function mutate(
  rng: Rng,
  doc: Record<string, unknown>,
  valid: (d: unknown) => boolean,
): Record<string, unknown> {
  const values: unknown[] = [null, -1, 1.5, 'x', [], {}, true, 2 ** 53, '\u0000'];
  for (let tries = 0; tries < 20; tries++) {
    const key = rng.pick(Object.keys(doc));
    const out = rng.chance(0.2)
      ? { ...doc, [`extra${rng.int(0, 99)}`]: 1 }
      : { ...doc, [key]: rng.pick(values) };
    if (!valid(out)) return out;
  }
  return { ...doc, v: 'x', version: 'x' };
}

function ackJunk(rng: Rng, epoch: number, ackedThrough: number): Junk {
  const valid = { v: WIRE_VERSION, epoch, ackedThrough, rejected: [], exceptions: [] };
  switch (rng.int(0, ackedThrough > 0 ? 4 : 3)) {
    case 0:
      return { kind: 'bytes', payload: junkBytes(rng), refusal: 'malformed ack ignored' };
    case 1:
      return {
        kind: 'wrong shape',
        payload: json(mutate(rng, valid, (d) => AckSchema.safeParse(d).success)),
        refusal: 'malformed ack ignored',
      };
    case 2:
      return {
        kind: 'wrong version',
        payload: json({ ...valid, v: WIRE_VERSION + rng.int(1, 9) }),
        refusal: 'malformed ack ignored',
      };
    case 3:
      return {
        kind: 'other epoch',
        payload: json({ ...valid, epoch: ((epoch + rng.int(1, 1000)) % 0xffffffff) + 1, ackedThrough: 1e6 }),
        refusal: 'ack for another epoch ignored',
      };
    default:
      return {
        kind: 'behind',
        payload: json({ ...valid, ackedThrough: rng.int(0, ackedThrough - 1) }),
        refusal: 'ack behind the last one ignored',
      };
  }
}

function documentJunk(rng: Rng, kind: 'catalog' | 'cashiers'): Junk {
  const doc = (kind === 'catalog' ? demoCatalog : demoCashiers) as unknown as Record<string, unknown>;
  const schema = kind === 'catalog' ? CatalogSchema : CashierListSchema;
  switch (rng.int(0, 4)) {
    case 0:
      return { kind: 'bytes', payload: junkBytes(rng), refusal: `invalid ${kind} ignored` };
    case 1:
      return {
        kind: 'wrong shape',
        payload: json(mutate(rng, { ...doc, version: 1000 }, (d) => schema.safeParse(d).success)),
        refusal: `invalid ${kind} ignored`,
      };
    case 2:
      return {
        kind: 'another store',
        payload: json({ ...doc, version: 1000, storeId: `other-${rng.int(0, 99)}` }),
        refusal: `${kind} for another store ignored`,
      };
    case 3:
      return {
        kind: 'not newer',
        payload: json({ ...doc, version: 1 }), // the version the demo files installed
        refusal: `${kind} not newer; ignored`,
      };
    default:
      return {
        kind: 'empty',
        payload: Buffer.alloc(0),
        refusal: 'retained document cleared; keeping the installed one',
      };
  }
}

/** The ledger's part: book batches by seq, ack the contiguous prefix (retained, as the ledger does). */
function playLedger(client: MqttClient) {
  const booked = new Set<number>();
  const state = { epoch: 0, ackedThrough: 0, batches: 0 };
  client.on('message', (topic, payload) => {
    if (topic !== topics.journal(DEVICE)) return;
    const batch = JournalBatchSchema.parse(JSON.parse(payload.toString('utf8')));
    state.epoch = batch.epoch;
    state.batches++;
    for (const r of batch.records) booked.add(r.seq);
    while (booked.has(state.ackedThrough + 1)) state.ackedThrough++;
    const ack = {
      v: WIRE_VERSION,
      epoch: state.epoch,
      ackedThrough: state.ackedThrough,
      rejected: [],
      exceptions: [],
    };
    client.publish(topics.ack(DEVICE), JSON.stringify(ack), { qos: 1, retain: true });
  });
  return { booked, state };
}

t.test(`junk on a live register's ack, catalog and cashiers topics, seed ${SEED}`, async (t) => {
  t.comment(`seed ${SEED} (replay: FUZZ_SEED=${SEED} npx tap test/fuzz/mqtt-bridge.test.ts)`);
  const rng = new Rng(SEED);
  const dir = mkdtempSync(path.join(tmpdir(), 'fuzz-mqtt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const aedes = await Aedes.createBroker();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    aedes.handle(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const brokerUrl = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    await new Promise((r) => aedes.close(() => r(undefined)));
  });
  const ledger = connect(brokerUrl, { clientId: 'fuzz-ledger', reconnectPeriod: 100 });
  t.teardown(() => ledger.endAsync(true));
  await ledger.subscribeAsync(topics.journal(DEVICE), { qos: 1 });
  const books = playLedger(ledger);

  const bin = await bundle(path.join(here, '../../appliance/registerd.ts'), dir);
  const stateDir = path.join(dir, 'state');
  const config = path.join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      deviceId: DEVICE,
      storeId: STORE,
      stateDir,
      clock: { assumeTrusted: true },
      seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
      cloud: { brokerUrl, reconnectMaxMs: 1000 },
      devices: { terminal: { kind: 'simulated' }, printer: { kind: 'none' } },
    }),
  );
  const d = await startDaemon(bin, config);
  t.teardown(() => d.proc.kill('SIGKILL'));
  const call = controlCaller(path.join(stateDir, 'control.sock'), WAIT_MS);
  const status = async () => (await call('status')) as unknown as Status;
  const logged = (msg: string) =>
    d
      .log()
      .split('\n')
      .filter((l) => l.includes(`"msg":"${msg}"`)).length;
  const synced = () =>
    waitFor(
      'every record acked',
      async () => {
        const s = await status();
        return (
          s.sync?.state === 'connected' && s.sync.pending === 0 && s.sync.ackedThrough === s.lastSeq && s
        );
      },
      { timeoutMs: WAIT_MS },
    );

  await call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
  await call('shift.open', { floatCounts: { '1000': 5 } });
  const start = await synced();
  const installed = { catalog: start.catalogVersion, cashiers: start.cashiersVersion };

  const products = demoCatalog.products.filter((p) => !p.openPrice && p.barcodes?.length);
  const kinds = new Map<string, number>();
  let sales = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (let i = 0; i < PER_TOPIC * 3; i++) {
      const where = (['ack', 'catalog', 'cashiers'] as const)[i % 3]!;
      const junk =
        where === 'ack'
          ? ackJunk(rng, books.state.epoch, books.state.ackedThrough)
          : documentJunk(rng, where);
      kinds.set(`${where} ${junk.kind}`, (kinds.get(`${where} ${junk.kind}`) ?? 0) + 1);
      const topic =
        where === 'ack'
          ? topics.ack(DEVICE)
          : where === 'catalog'
            ? topics.catalog(STORE)
            : topics.cashiers(STORE);
      const before = logged(junk.refusal);
      // Not retained: the ledger's retained ack and documents stay what a reconnect finds.
      await ledger.publishAsync(topic, junk.payload, { qos: 1 });
      await waitFor(
        `round ${round}: ${where} ${junk.kind} refused with "${junk.refusal}"`,
        () => logged(junk.refusal) > before,
        { timeoutMs: WAIT_MS },
      );
    }
    // A sale between junk rounds: it must sync as if nothing happened.
    for (let n = rng.int(1, 3); n > 0; n--) await call('sale.scan', { code: code(rng.pick(products).sku) });
    await call('sale.tender', { kind: rng.chance(0.5) ? 'card' : 'cash' });
    sales++;
    const s = await synced();
    t.equal(s.sync!.state, 'connected', `round ${round}: the link stayed up`);
    t.same(
      { catalog: s.catalogVersion, cashiers: s.cashiersVersion },
      installed,
      `round ${round}: no junk document was installed`,
    );
  }
  t.comment(`junk sent: ${JSON.stringify(Object.fromEntries(kinds))}`);

  const end = await synced();
  t.equal(books.state.ackedThrough, end.lastSeq, `the ledger booked every record through seq ${end.lastSeq}`);
  t.same(
    [...books.booked].sort((a, b) => a - b),
    Array.from({ length: end.lastSeq }, (_, i) => i + 1),
    `each seq booked, none missing (${sales} sales)`,
  );
  t.equal(logged('message handling failed'), 0, 'no message made the bridge fail');

  // A valid newer catalog after all that still installs.
  const next = { ...demoCatalog, version: (installed.catalog ?? 0) + 1 };
  await ledger.publishAsync(topics.catalog(STORE), JSON.stringify(next), { qos: 1, retain: true });
  await waitFor('the newer catalog installed', async () => (await status()).catalogVersion === next.version, {
    timeoutMs: WAIT_MS,
  });
  t.pass(`catalog version ${next.version} installed after the junk`);
  await ledger.publishAsync(topics.catalog(STORE), '', { qos: 1, retain: true }); // clear the retained copy

  d.proc.kill('SIGTERM');
  await d.exited;
  const report = verifyJournal(nodeFs, path.join(stateDir, 'journal'));
  t.ok(report.ok, `the journal verifies (${report.records} records)`);
});
