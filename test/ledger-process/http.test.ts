// The ledger process end to end on its single-machine default (embedded aedes + SQLite): a register's
// journal goes in over MQTT, the HTTP API answers about it, store documents go out retained, and the
// command line's options are checked before anything starts.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { startLedger, parseLedgerArgs, LEDGER_DEFAULTS, type RunningLedger } from '../../ledger/main.js';
import type { Middleware } from '../../ledger/http.js';
import { topics, type Ack } from '../../cloud-bridge/protocol/wire.js';
import { demoCatalog, demoCashiers } from '../support/till-fixtures.js';
import { journalOf, message, randomSales, startTestLedger } from '../support/ledger-fixtures.js';

function tmp(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ledger-http-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function ledgerIn(
  t: Test,
  dir: string,
  extras: Parameters<typeof startLedger>[1] = {},
): Promise<RunningLedger> {
  // The endpoints themselves; who may call them is auth.test.ts.
  return startTestLedger(t, dir, { clientId: 'ledger-test', apiAuth: 'loopback' }, extras);
}

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

async function call(
  ledger: RunningLedger,
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<Answer> {
  const res = await fetch(ledger.httpUrl + url, {
    method,
    headers: body === undefined ? {} : headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

async function device(t: Test, ledger: RunningLedger, id: string): Promise<MqttClient> {
  const c = await connectAsync(ledger.mqttUrl, { clientId: id, clean: true, reconnectPeriod: 0 });
  t.teardown(() => c.endAsync(true));
  return c;
}

/** The next message on `topic` that `match` accepts, retained or live. */
function nextOn<T>(c: MqttClient, topic: string, match: (body: T) => boolean = () => true) {
  return new Promise<{ body: T; retain: boolean }>((resolve) => {
    c.on('message', (tp, payload, packet) => {
      if (tp !== topic || !payload.length) return;
      const body = JSON.parse(payload.toString()) as T;
      if (match(body)) resolve({ body, retain: packet.retain });
    });
  });
}

t.test("a register's journal goes in over MQTT and the API answers about it", async (t) => {
  const ledger = await ledgerIn(t, tmp(t));
  t.match(ledger.mqttUrl, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
  t.match(ledger.httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/);

  const health = await call(ledger, 'GET', '/healthz');
  t.same(health.body, { status: 'ok', db: true, dialect: 'sqlite', mqtt: true });

  // Stock first, so the sales have something to take.
  for (const p of demoCatalog.products) {
    const r = await call(ledger, 'POST', `/api/stock/${p.sku}/receive`, { qty: 1000, ref: 'opening' });
    t.equal(r.status, 200);
  }

  const register = await randomSales(7, 6);
  const records = journalOf(register);
  const till = await device(t, ledger, 'till-1');
  await till.subscribeAsync(topics.ack('till-1'), { qos: 1 });
  const acked = nextOn<Ack>(till, topics.ack('till-1'), (a) => a.ackedThrough === records.length);
  await till.publishAsync(topics.journal('till-1'), message(records), { qos: 1 });
  const { body: ack } = await acked;
  t.same(ack.rejected, [], 'nothing rejected');
  await till.publishAsync(
    topics.status('till-1'),
    JSON.stringify({ v: 1, online: true, epoch: 1, pending: 0, lastAckedSeq: ack.ackedThrough, ts: 1 }),
    { qos: 1, retain: true },
  );

  const sales = await call(ledger, 'GET', '/api/sales?limit=100');
  t.equal(sales.status, 200);
  t.ok(sales.body.sales.length >= 1, 'the sales are in the books');
  t.equal(sales.body.next, null);
  const one = await call(ledger, 'GET', `/api/sales/${sales.body.sales[0].saleId}`);
  t.equal(one.status, 200);
  t.ok(one.body.lines.length >= 1 && one.body.tenders.length >= 1, 'a sale with its lines and tenders');
  t.equal((await call(ledger, 'GET', '/api/sales/no-such-sale')).body.error.code, 'NOT_FOUND');
  t.equal((await call(ledger, 'GET', '/api/sales?limit=0')).status, 422);

  const devices = await call(ledger, 'GET', '/api/devices');
  t.equal(devices.status, 200);
  t.match(devices.body.devices, [{ deviceId: 'till-1', lastAckedSeq: records.length }]);

  const stock = await call(ledger, 'GET', '/api/stock');
  t.equal(stock.body.stock.length, demoCatalog.products.length);
  t.ok(
    stock.body.stock.some((s: { onHand: number }) => s.onHand < 1000),
    'the sales took stock',
  );

  // A malformed message is quarantined and shows as an exception; it can be resolved once.
  await till.publishAsync(topics.journal('till-1'), '{"v":1,', { qos: 1 });
  const quarantined = await waitFor(async () => {
    const r = await call(ledger, 'GET', '/api/exceptions?kind=quarantine&open=true');
    return r.body.exceptions.length ? r.body.exceptions : undefined;
  }, till);
  t.equal(quarantined[0].deviceId, 'till-1');
  const resolve = (id: unknown) =>
    call(ledger, 'POST', `/api/exceptions/${id}/resolve`, { resolution: 'device re-sent; checked' });
  const resolved = await resolve(quarantined[0].id);
  t.equal(resolved.status, 200);
  t.ok(resolved.body.resolvedAt);
  t.equal((await resolve(quarantined[0].id)).body.error.code, 'ALREADY_RESOLVED');
  t.equal((await resolve(quarantined[0].id)).status, 409);
  t.equal((await resolve(99999)).status, 404);
  t.equal((await resolve('x')).status, 422);
  t.equal((await call(ledger, 'GET', '/api/exceptions?kind=nonsense')).status, 422);
  t.equal((await call(ledger, 'GET', '/api/exceptions?open=maybe')).status, 422);
});

/**
 * Waits for `probe` to give something, asking again after each round trip through the broker (a
 * ping by `via`), never on a timer: the quarantine happens in the consumer, after its own delivery.
 */
async function waitFor<T>(probe: () => Promise<T | undefined>, via: MqttClient): Promise<T> {
  for (let i = 0; i < 1000; i++) {
    const got = await probe();
    if (got !== undefined) return got;
    await via.publishAsync('ledger-test/ping', '', { qos: 1 });
  }
  throw new Error('never happened');
}

t.test('stock: counts, deliveries and online orders', async (t) => {
  const ledger = await ledgerIn(t, tmp(t));
  t.equal((await call(ledger, 'GET', '/api/stock/COF-250')).status, 404);
  const counted = await call(ledger, 'PUT', '/api/stock/COF-250', { onHand: 5 });
  t.same(counted.body, { sku: 'COF-250', onHand: 5, delta: 5 });
  t.same((await call(ledger, 'POST', '/api/stock/COF-250/receive', { qty: 2, ref: 'DN-1' })).body, {
    sku: 'COF-250',
    onHand: 7,
  });
  t.match((await call(ledger, 'GET', '/api/stock/COF-250')).body, { sku: 'COF-250', onHand: 7 });
  t.equal((await call(ledger, 'PUT', '/api/stock/COF-250', { onHand: -1 })).status, 422);
  t.equal((await call(ledger, 'POST', '/api/stock/COF-250/receive', { qty: 'two' })).status, 422);

  const order = { orderId: 'web-1', storeId: 'demo-store', lines: [{ sku: 'COF-250', qty: 3 }] };
  const placed = await call(ledger, 'POST', '/api/online-orders', order);
  t.equal(placed.status, 201);
  t.equal(placed.body.status, 'placed');
  const again = await call(ledger, 'POST', '/api/online-orders', order);
  t.equal(again.status, 200, 'the same order again is a duplicate, not a second sale');
  t.equal(again.body.status, 'duplicate');
  t.equal((await call(ledger, 'GET', '/api/stock/COF-250')).body.onHand, 4, 'taken once');
  t.equal((await call(ledger, 'GET', '/api/online-orders/web-1')).body.orderId, 'web-1');

  const short = await call(ledger, 'POST', '/api/online-orders', {
    orderId: 'web-2',
    storeId: 'demo-store',
    lines: [
      { sku: 'COF-250', qty: 5 },
      { sku: 'WAT-150', qty: 1 },
    ],
  });
  t.equal(short.status, 409);
  t.equal(short.body.error.code, 'STOCK_SHORT');
  t.same(short.body.error.details.skus, ['COF-250', 'WAT-150']);
  t.equal((await call(ledger, 'GET', '/api/stock/COF-250')).body.onHand, 4, 'nothing reserved');

  const conflict = await call(ledger, 'POST', '/api/online-orders', {
    ...order,
    lines: [{ sku: 'COF-250', qty: 1 }],
  });
  t.equal(conflict.status, 409);
  t.equal(conflict.body.error.code, 'ORDER_CONFLICT');
  const invalid = await call(ledger, 'POST', '/api/online-orders', { orderId: 'web-3', lines: [] });
  t.equal(invalid.status, 422);
  t.equal(invalid.body.error.code, 'BAD_PARAMS');
});

t.test(
  'store documents: validated, versioned, published retained, republished to a fresh broker',
  async (t) => {
    const dir = tmp(t);
    const ledger = await ledgerIn(t, dir);
    const catalog = { ...demoCatalog, version: 2 };
    const put = await call(ledger, 'PUT', '/api/stores/demo-store/catalog', catalog);
    t.equal(put.status, 200);
    t.match(put.body, { storeId: 'demo-store', kind: 'catalog', version: 2, published: true });
    t.equal((await call(ledger, 'PUT', '/api/stores/demo-store/cashiers', demoCashiers)).status, 200);

    const till = await device(t, ledger, 'till-doc');
    const got = nextOn<{ version: number }>(till, topics.catalog('demo-store'));
    await till.subscribeAsync(topics.catalog('demo-store'), { qos: 1 });
    const { body, retain } = await got;
    t.equal(retain, true, 'retained: a register that connects later gets it');
    t.equal(body.version, 2);

    const same = await call(ledger, 'PUT', '/api/stores/demo-store/catalog', catalog);
    t.equal(same.status, 409);
    t.equal(same.body.error.code, 'VERSION_NOT_NEWER');
    const bad = await call(ledger, 'PUT', '/api/stores/demo-store/catalog', {
      ...catalog,
      version: 3,
      currency: 'euro',
    });
    t.equal(bad.status, 422);
    t.equal(bad.body.error.code, 'BAD_DOCUMENT');
    const otherStore = await call(ledger, 'PUT', '/api/stores/other/catalog', { ...catalog, version: 3 });
    t.equal(otherStore.body.error.code, 'BAD_DOCUMENT', "the body's storeId must be the path's");
    t.equal((await call(ledger, 'PUT', '/api/stores/bad%2Fid/catalog', catalog)).status, 422);
    t.match((await call(ledger, 'GET', '/api/stores/demo-store/catalog')).body, {
      version: 2,
      kind: 'catalog',
    });
    t.equal((await call(ledger, 'GET', '/api/stores/nowhere/cashiers')).status, 404);

    // A new ledger process on the same books, with a new (empty) embedded broker, serves them again.
    await ledger.stop();
    const second = await ledgerIn(t, dir);
    const till2 = await device(t, second, 'till-doc-2');
    const again = nextOn<{ version: number }>(till2, topics.cashiers('demo-store'));
    await till2.subscribeAsync(topics.cashiers('demo-store'), { qos: 1 });
    t.equal((await again).body.version, demoCashiers.version, 'republished on start');
  },
);

t.test('requests that are not what the API takes', async (t) => {
  const ledger = await ledgerIn(t, tmp(t));
  const notJson = await call(ledger, 'POST', '/api/online-orders', '{"orderId":', {
    'content-type': 'application/json',
  });
  t.equal(notJson.status, 400);
  t.equal(notJson.body.error.code, 'BAD_JSON');
  const text = await call(ledger, 'POST', '/api/online-orders', 'hello', { 'content-type': 'text/plain' });
  t.equal(text.status, 415);
  t.equal(text.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
  const big = await call(
    ledger,
    'POST',
    '/api/online-orders',
    JSON.stringify({ pad: 'x'.repeat(1024 * 1024) }),
  );
  t.equal(big.status, 413);
  t.equal(big.body.error.code, 'BODY_TOO_LARGE');
  const array = await call(ledger, 'POST', '/api/online-orders', [1, 2]);
  t.equal(array.status, 422);
  const nowhere = await call(ledger, 'GET', '/api/nowhere');
  t.equal(nowhere.status, 404);
  t.equal(nowhere.body.error.code, 'ROUTE_NOT_FOUND');
  const wrongMethod = await call(ledger, 'DELETE', '/api/stock/COF-250');
  t.equal(wrongMethod.status, 405);
  t.equal(wrongMethod.headers.get('allow'), 'GET, PUT');
  t.equal((await call(ledger, 'GET', '/api/stock/%E0%A4%A')).status, 422, 'broken percent-encoding');
  t.equal((await call(ledger, 'GET', '/api/stock?limit=abc')).status, 422);
});

t.test('middleware runs before every route and can answer for it (where authentication goes)', async (t) => {
  const seen: string[] = [];
  const guard: Middleware = async (ctx, next) => {
    seen.push(ctx.route);
    if (ctx.route.startsWith('orders.') && ctx.req.headers.authorization !== 'Bearer test')
      return { status: 401, body: { error: { code: 'UNAUTHENTICATED', message: 'who are you?' } } };
    const res = await next();
    return { ...res, headers: { ...res.headers, 'x-seen': ctx.route } };
  };
  const ledger = await ledgerIn(t, tmp(t), { middleware: [guard] });
  const refused = await call(ledger, 'POST', '/api/online-orders', { orderId: 'x' });
  t.equal(refused.status, 401);
  const health = await call(ledger, 'GET', '/healthz');
  t.equal(health.headers.get('x-seen'), 'health');
  t.same(seen, ['orders.place', 'health']);
});

t.test('a busy default port is swapped for a free one; a port asked for is not', async (t) => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => blocker.close(resolve)));
  const busy = (blocker.address() as AddressInfo).port;
  const base = {
    db: `sqlite:${path.join(tmp(t), 'ledger.db')}`,
    host: '127.0.0.1',
    shared: false,
    consumers: 1,
    clientId: 'ledger-ports',
  };
  const quiet = { log: { info() {}, warn() {}, error() {} } };
  const ledger = await startLedger(
    { ...base, mqtt: `embedded:${busy}`, http: busy, defaultPorts: { mqtt: true, http: true } },
    quiet,
  );
  t.teardown(() => ledger.stop());
  t.not(new URL(ledger.httpUrl).port, String(busy));
  t.not(new URL(ledger.mqttUrl).port, String(busy));
  t.equal((await call(ledger, 'GET', '/healthz')).status, 200);
  await t.rejects(startLedger({ ...base, mqtt: 'embedded:0', http: busy }, quiet), { code: 'EADDRINUSE' });
  await t.rejects(startLedger({ ...base, mqtt: `embedded:${busy}`, http: 0 }, quiet), { code: 'EADDRINUSE' });
});

t.test('command line: defaults, environment, and refusals at start-up', async (t) => {
  const d = parseLedgerArgs([], {});
  t.match(d, {
    db: LEDGER_DEFAULTS.db,
    mqtt: 'embedded:18830',
    http: 18080,
    host: '127.0.0.1',
    shared: false,
    shareGroup: 'ledger',
    consumers: 1,
    defaultPorts: { mqtt: true, http: true },
  });
  t.match(d.clientId, /^ledger-/);
  t.match(
    parseLedgerArgs(
      [
        '--db',
        'postgres://u@h/db',
        '--mqtt=mqtt://127.0.0.1:1883',
        '--http',
        '0',
        '--shared',
        '--share-group',
        'store-eu',
        '--consumers',
        '2',
      ],
      {},
    ),
    {
      db: 'postgres://u@h/db',
      mqtt: 'mqtt://127.0.0.1:1883',
      http: 0,
      shared: true,
      shareGroup: 'store-eu',
      consumers: 2,
      defaultPorts: { mqtt: false, http: false },
    },
  );
  t.match(parseLedgerArgs([], { LEDGER_DB: 'sqlite:/x.db', LEDGER_HTTP: '9' }), {
    db: 'sqlite:/x.db',
    http: 9,
  });
  t.match(
    parseLedgerArgs(['--http', '7'], { LEDGER_HTTP: '9' }),
    { http: 7 },
    'a flag beats the environment',
  );
  const refusals: [string[], RegExp][] = [
    [['--db', 'mysql://x'], /db: sqlite:PATH or postgres/],
    [['--mqtt', 'tcp://x'], /mqtt/],
    [['--http', '70000'], /http/],
    [['--http', 'abc'], /--http is a number/],
    [['--shared'], /aedes has no shared subscriptions/],
    [['--mqtt', 'mqtt://b:1883', '--consumers', '3'], /several consumers need --shared/],
    [['--mqtt', 'mqtts://b:8883', '--mqtt-cert', 'c.pem'], /go together/],
    [['--frobnicate'], /unknown argument --frobnicate/],
    [['--db'], /--db needs a value/],
  ];
  for (const [argv, message] of refusals)
    t.throws(() => parseLedgerArgs(argv, {}), { message }, argv.join(' '));
});
