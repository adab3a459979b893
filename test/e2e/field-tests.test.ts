// The article's four field tests (docs/demo.md), end to end with real processes: the ledger (HTTP API
// and MQTT consumers), registerd, the card terminal simulator on a socat pty following the store's net
// file, the printer simulator writing receipts to a file; the connection switch runs here and the test
// flips it, as the operator does with `npm run net`. Each field test gets its own store (its own
// register, devices and switch) on the one ledger, and asserts on the ledger's books through its HTTP
// API and on the register through its control socket. The four run on each backend in turn: the
// single-machine default (the ledger's embedded aedes and a SQLite file) and the scale path (the
// machine's Mosquitto with two ledger consumers on a shared subscription of this run's own, and a fresh
// PostgreSQL schema; test/support/field-store.ts `startFieldBackend`).
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MANAGER, PINS, code, demoCatalog } from '../support/till-fixtures.js';
import {
  bundleAll,
  startFieldBackend,
  startStore,
  type Bins,
  type FieldBackendKind,
  type Store,
} from '../support/field-store.js';
import { processesMentioning } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

/** A bound on every wait; each normally ends well within a second or two (reconnect backoff: 1 s). */
const WAIT_MS = 15_000;

interface Sale {
  saleId: string;
  deviceId: string;
  receiptNo: number;
  totalMinor: number;
}
interface Exception {
  id: number;
  kind: string;
  deviceId: string | null;
  ref: string | null;
  detail: { sku: string; shortQty: number; sales: unknown[]; flagged: unknown[] };
}

const dir = mkdtempSync(path.join(tmpdir(), 'field-'));
let bins: Bins;

t.before(async () => {
  bins = await bundleAll(dir);
});
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const BACKENDS: { kind: FieldBackendKind; title: string }[] = [
  { kind: 'aedes-sqlite', title: 'embedded aedes + SQLite' },
  { kind: 'mosquitto-postgres', title: 'Mosquitto + PostgreSQL' },
];

for (const { kind, title } of BACKENDS)
  t.test(`the four field tests on ${title}`, (t) => fieldTests(t, kind));

/** The four field tests, on one backend's ledger. */
async function fieldTests(t: Test, kind: FieldBackendKind): Promise<void> {
  const backendDir = path.join(dir, kind);
  mkdirSync(backendDir);
  const backend = await startFieldBackend(kind, bins, backendDir);
  t.teardown(() => backend.dispose());
  const ledger = backend.ledger;
  // Every catalog product in stock, as the demo's first start does.
  for (const { sku } of demoCatalog.products) {
    const r = await ledger.api('POST', `/api/stock/${encodeURIComponent(sku)}/receive`, {
      qty: 50,
      ref: 'field-tests-opening',
    });
    if (r.status !== 200) throw new Error(`stock for ${sku} not received: ${JSON.stringify(r)}`);
  }

  let stores = 0;
  /** A store of its own for one field test, logged in as ana with a shift open; stopped with the test. */
  async function openStore(t: Test): Promise<Store> {
    const n = ++stores;
    const storeDir = path.join(backendDir, `s${n}`);
    mkdirSync(storeDir);
    const store = await startStore(
      bins,
      ledger,
      storeDir,
      backend.deviceId(n),
      WAIT_MS,
      backend.storeOptions,
    );
    t.teardown(() => store.stop());
    await waitFor('the register connected', async () => (await store.status()).sync?.state === 'connected', {
      timeoutMs: WAIT_MS,
    });
    await store.call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
    await store.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
    return store;
  }

  /** Scans codes, notes the sale's id, tenders: the register's answer and the sale id. */
  async function sell(store: Store, skus: string[], tender: Record<string, unknown>) {
    for (const sku of skus) await store.call('sale.scan', { code: code(sku) });
    const saleId = (await store.status()).sale!.saleId;
    const answer = await store.call('sale.tender', tender);
    return { saleId, answer };
  }

  const salesOf = async (deviceId: string): Promise<Sale[]> =>
    (await ledger.api<{ sales: Sale[] }>('GET', `/api/sales?deviceId=${deviceId}&limit=500`)).body.sales;

  /** Back online: the register reconnects and the ledger books its whole queue. */
  async function drained(store: Store) {
    return waitFor(
      'the register connected with nothing pending',
      async () => {
        const s = await store.status();
        return (
          s.sync?.state === 'connected' && s.sync.pending === 0 && s.sync.ackedThrough === s.lastSeq && s
        );
      },
      { timeoutMs: WAIT_MS },
    );
  }

  /** Each sale id in the device's books exactly once. */
  async function bookedOnce(t: Test, deviceId: string, saleIds: string[]) {
    const sales = await salesOf(deviceId);
    for (const id of saleIds)
      t.equal(sales.filter((s) => s.saleId === id).length, 1, `sale ${id} is in the ledger exactly once`);
    t.equal(new Set(sales.map((s) => s.saleId)).size, sales.length, 'no sale is booked twice');
    return sales;
  }

  async function deviceInLedger(deviceId: string) {
    const { body } = await ledger.api<{ devices: { deviceId: string; lastAckedSeq: number }[] }>(
      'GET',
      '/api/devices',
    );
    return body.devices.find((d) => d.deviceId === deviceId);
  }

  /** The text of the printer simulator's receipt number `seq` (1st, 2nd … printed), once it is on paper. */
  function receipt(store: Store, seq: number): Promise<string> {
    return waitFor(
      `receipt ${seq} on paper`,
      () => {
        let text: string;
        try {
          text = readFileSync(store.receiptsFile, 'utf8');
        } catch {
          return false; // nothing printed yet
        }
        const parts = text.split(/^----- receipt (\d+) .*-----$/m);
        const at = parts.indexOf(String(seq));
        return at >= 0 && parts[at + 1]!;
      },
      { timeoutMs: WAIT_MS },
    );
  }

  t.test('1. the connection goes mid-sale: the sale completes and the receipt prints', async (t) => {
    const store = await openStore(t);

    // Card: scanned online, the link cut, one more line, then paid; the terminal approves offline.
    await store.call('sale.scan', { code: code('COF-250') });
    await store.net('down');
    await store.call('sale.scan', { code: code('CARD-BD') });
    const card = await sell(store, [], { kind: 'card' });
    t.match(card.answer, { completed: true, receiptNo: 1, totalMinor: 998 }, 'the card sale completes');
    t.match(card.answer, { receipt: { tenders: [{ kind: 'card', mode: 'offline' }] } });
    const mid = await store.status();
    t.match(mid.offlineCard, { count: 1, totalMinor: 998 }, 'the terminal approved it offline');
    t.not(mid.sync?.state, 'connected');
    t.ok(mid.sync!.pending > 0, 'the sale waits in the queue');
    const first = await receipt(store, 1);
    t.match(first, /Espresso beans/, 'the line scanned before the cut is on the receipt');
    t.match(first, /Birthday card/);
    t.match(first, /approved offline/, 'the card shows as approved offline');
    t.match(first, /OFFLINE/, 'the receipt says it is not yet sent');
    t.same(await salesOf(store.deviceId), [], 'the ledger has seen nothing while the link is down');

    // Cash: back online, scanned, the link cut again, then paid.
    await store.net('up');
    await drained(store);
    await store.call('sale.scan', { code: code('BRD-RYE') });
    await store.net('down');
    const cash = await sell(store, [], { kind: 'cash', amountMinor: 500 });
    t.match(cash.answer, { completed: true, receiptNo: 2, changeMinor: 261 }, 'the cash sale completes');
    t.match(await receipt(store, 2), /Rye bread/, 'its receipt prints');
    t.ok((await store.status()).sync!.pending > 0, 'the cash sale waits in the queue');

    await store.net('up');
    const after = await drained(store);
    await bookedOnce(t, store.deviceId, [card.saleId, cash.saleId]);
    t.equal((await deviceInLedger(store.deviceId))?.lastAckedSeq, after.lastSeq);
  });

  t.test('2. card, cash and a payout pile up offline; back online each is in the books once', async (t) => {
    const store = await openStore(t);
    await store.net('down');
    const card = await sell(store, ['COF-250', 'CARD-BD'], { kind: 'card' });
    t.match(card.answer, { completed: true, receiptNo: 1 });
    t.match(card.answer, { receipt: { tenders: [{ mode: 'offline' }] } }, 'approved offline');
    const cash = await sell(store, ['BRD-RYE'], { kind: 'cash', amountMinor: 500 });
    t.match(cash.answer, { completed: true, receiptNo: 2, changeMinor: 261 });
    const payout = await store.call('cash.payout', {
      amountMinor: 300,
      reason: 'window cleaner',
      approval: MANAGER,
    });
    t.match(payout, { expectedCashMinor: Number }, 'the payout, approved by mia');

    const offline = await store.status();
    t.not(offline.sync?.state, 'connected');
    t.ok(offline.sync!.pending >= 3, `records pending while offline (${offline.sync!.pending})`);
    t.same(await salesOf(store.deviceId), [], 'the ledger has seen nothing');

    await store.net('up');
    const after = await drained(store);
    const sales = await bookedOnce(t, store.deviceId, [card.saleId, cash.saleId]);
    t.equal(sales.length, 2, 'two sales, no more');
    // The payout too: booked once, with its amount, reason and approver (the ledger's own books).
    const movements = await backend.cashMovements(store.deviceId);
    t.equal(movements.length, 1, `one cash movement booked for the device (${JSON.stringify(movements)})`);
    t.match(
      movements[0],
      { kind: 'payout', amountMinor: 300, reason: 'window cleaner', approvedBy: 'mia' },
      'it is the payout, for 3.00, approved by mia',
    );
    t.equal(after.sync!.ackedThrough, after.lastSeq, "the register's queue is acked through its last seq");
    t.equal(
      (await deviceInLedger(store.deviceId))?.lastAckedSeq,
      after.lastSeq,
      "the device's last acked seq in the ledger is the register's lastSeq",
    );
    await waitFor(
      'the offline approval forwarded',
      async () => (await store.status()).offlineCard.count === 0,
      {
        timeoutMs: WAIT_MS,
      },
    );
  });

  t.test(
    '3. the last unit sold online while the register sold it offline: stock never below zero',
    async (t) => {
      const store = await openStore(t);
      const counted = await ledger.api('PUT', '/api/stock/CANDLE', { onHand: 1, ref: 'count-field-3' });
      t.match(counted, { status: 200, body: { onHand: 1 } });
      await store.net('down');
      const sale = await sell(store, ['CANDLE'], { kind: 'cash', amountMinor: 1500 });
      t.match(sale.answer, { completed: true });

      const orderId = `web-field-${kind}-${process.pid}`;
      const order = await ledger.api('POST', '/api/online-orders', {
        orderId,
        storeId: backend.storeId,
        lines: [{ sku: 'CANDLE', qty: 1 }],
      });
      t.match(
        order,
        { status: 201, body: { status: 'placed' } },
        'the ledger does not know the till took it',
      );
      t.match((await ledger.api('GET', '/api/stock/CANDLE')).body, { onHand: 0 });

      await store.net('up');
      await drained(store);
      await bookedOnce(t, store.deviceId, [sale.saleId]);
      const stock = (await ledger.api<{ onHand: number }>('GET', '/api/stock/CANDLE')).body;
      t.equal(stock.onHand, 0, 'stock stays at 0, never -1');
      const { body } = await ledger.api<{ exceptions: Exception[] }>('GET', '/api/exceptions?kind=oversell');
      const candle = body.exceptions.filter((e) => e.detail.sku === 'CANDLE');
      t.equal(candle.length, 1, 'exactly one oversell exception');
      const ex = candle[0]!;
      t.equal(ex.detail.shortQty, 1);
      const named = JSON.stringify(ex.detail);
      t.ok(named.includes(sale.saleId), "it names the register's sale");
      t.ok(named.includes(orderId), 'it names the online order');
      t.ok(JSON.stringify(ex.detail.flagged).includes(orderId), 'the later one, the web order, is flagged');
      t.match((await ledger.api('GET', `/api/online-orders/${orderId}`)).body, { status: 'backorder' });
    },
  );

  t.test(
    '4. the register is killed while offline with sales queued: the queue survives and drains',
    async (t) => {
      const store = await openStore(t);
      await store.net('down');
      const milk = await sell(store, ['MLK-1L'], { kind: 'cash' });
      t.match(milk.answer, { completed: true });
      const water = await sell(store, ['WAT-150', 'CHO-100'], { kind: 'cash', amountMinor: 500 });
      t.match(water.answer, { completed: true });
      const before = await store.status();
      t.ok(before.sync!.pending >= 2, `records queued (${before.sync!.pending})`);

      await store.kill9();
      await store.restart();
      const revived = await store.status();
      t.equal(revived.lastSeq, before.lastSeq, 'the journal recovered to the same seq');
      t.not(revived.sync?.state, 'connected', 'still offline: the switch is down');
      t.equal(revived.sync!.pending, before.sync!.pending, 'the queue is still there after kill -9');
      t.same(await salesOf(store.deviceId), [], 'the ledger has not seen them yet');

      await store.net('up');
      const after = await drained(store);
      t.ok(after.lastSeq >= before.lastSeq);
      const sales = await bookedOnce(t, store.deviceId, [milk.saleId, water.saleId]);
      t.equal(sales.length, 2);
      t.equal((await deviceInLedger(store.deviceId))?.lastAckedSeq, after.lastSeq);
    },
  );
}

t.test('every process started has ended', async (t) => {
  await waitFor('no process left under the test directory', () => processesMentioning(dir).length === 0, {
    timeoutMs: WAIT_MS,
  }).catch(() => undefined);
  t.same(processesMentioning(dir), [], 'no registerd, simulator, socat or ledger left');
});
