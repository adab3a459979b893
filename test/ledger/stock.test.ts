// Honest stock (Invariant 4): on-hand never below zero, every change a move, an oversell named with
// everyone involved in occurrence order, online orders all-or-nothing and never selling what is not
// there, even two at once. Every case runs on SQLite and on PostgreSQL.
import t, { type Test } from 'tap';
import { applyJournalMessage } from '../../ledger/apply.js';
import {
  assignShortfall,
  getOnlineOrder,
  placeOnlineOrder,
  receiveStock,
  setStock,
  type StockTaker,
} from '../../ledger/stock.js';
import { getStock, listExceptions } from '../../ledger/queries.js';
import { isLedgerError } from '../../ledger/errors.js';
import type { LedgerDb } from '../../ledger/db/open.js';
import { code, readyRegister } from '../support/till-fixtures.js';
import { Rng } from '../support/rng.js';
import {
  forEachDialect,
  journalOf,
  message,
  randomSales,
  rechain,
  SKUS,
  split,
  stockLevels,
  type DialectEnv,
} from '../support/ledger-fixtures.js';

const COFFEE = code('COF-250');
/** The register's clock starts here (manualClock's default). */
const TILL_T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

/** on_hand = the sum of its moves, and never below zero, for every SKU. */
async function checkStock(t: Test, ldb: LedgerDb) {
  const sums = await ldb.db
    .selectFrom('stock_moves')
    .select(['sku', (eb) => eb.fn.sum<number>('qty').as('total')])
    .groupBy('sku')
    .execute();
  const levels = await stockLevels(ldb);
  for (const { sku, total } of sums)
    t.equal(levels[sku], Number(total), `${sku}: on-hand is the sum of its moves`);
  for (const [sku, onHand] of Object.entries(levels)) t.ok(onHand >= 0, `${sku} is not negative`);
}

/** A register that sold one coffee at `atMs` (its clock), as a journal message. */
async function coffeeSoldAt(atMs: number, seed = 1) {
  const r = await readyRegister({ seed });
  r.clock.set(atMs);
  await r.call('sale.scan', { code: COFFEE });
  await r.call('sale.tender', { kind: 'cash' });
  const records = journalOf(r);
  const saleId = records.flatMap((x) => x.events).find((e) => e.type === 'sale.completed')!.saleId as string;
  return { records, saleId, seq: records.length };
}

t.test('a shortfall goes to the latest by occurrence; ties to the later landed', async (t) => {
  const taker = (ref: string, occurredAt: number, qty: number): StockTaker => ({
    kind: 'sale',
    ref,
    occurredAt,
    qty,
  });
  t.same(
    assignShortfall([taker('a', 10, 1), taker('b', 5, 1)], 1).map((s) => [s.ref, s.flaggedQty]),
    [
      ['b', 0],
      ['a', 1],
    ],
  );
  t.same(
    assignShortfall([taker('a', 1, 1), taker('b', 5, 1), taker('c', 3, 2)], 2).map((s) => [
      s.ref,
      s.flaggedQty,
    ]),
    [
      ['a', 0],
      ['c', 1],
      ['b', 1],
    ],
  );
  t.same(
    assignShortfall([taker('a', 7, 1), taker('b', 7, 1)], 1).map((s) => [s.ref, s.flaggedQty]),
    [
      ['a', 0],
      ['b', 1],
    ],
  );
});

forEachDialect(t, 'deliveries and counts are moves; on-hand cannot go below zero', async (t, { ldb }) => {
  t.same(await receiveStock(ldb, 'COF-250', 5, 'delivery 17', 100), { sku: 'COF-250', onHand: 5 });
  t.same(await receiveStock(ldb, 'COF-250', 2, 'delivery 18', 200), { sku: 'COF-250', onHand: 7 });
  t.same(await setStock(ldb, 'COF-250', 4, 'count 3', 300), { sku: 'COF-250', onHand: 4, delta: -3 });
  t.same(await setStock(ldb, 'NEW-SKU', 2, 'count 3', 300), { sku: 'NEW-SKU', onHand: 2, delta: 2 });
  t.match(await getStock(ldb, 'COF-250'), { onHand: 4, updatedAt: 300 });
  t.same(
    (
      await ldb.db.selectFrom('stock_moves').select(['sku', 'qty', 'reason', 'ref']).orderBy('id').execute()
    ).map((m) => [m.sku, m.qty, m.reason, m.ref]),
    [
      ['COF-250', 5, 'receive', 'delivery 17'],
      ['COF-250', 2, 'receive', 'delivery 18'],
      ['COF-250', -3, 'count', 'count 3'],
      ['NEW-SKU', 2, 'count', 'count 3'],
    ],
  );
  await t.rejects(
    ldb.db.updateTable('stock').set({ on_hand: -1 }).where('sku', '=', 'COF-250').execute(),
    'the database itself refuses a negative on-hand',
  );
  await t.rejects(receiveStock(ldb, 'COF-250', 0, 'x'), { code: 'BAD_PARAMS' });
  await t.rejects(setStock(ldb, 'COF-250', -1, 'x'), { code: 'BAD_PARAMS' });
  await t.rejects(receiveStock(ldb, '', 1, 'x'), { code: 'BAD_PARAMS' });
  await checkStock(t, ldb);
});

forEachDialect(t, 'online orders: all lines or none, idempotent by order id', async (t, { ldb }) => {
  await receiveStock(ldb, 'COF-250', 5, 'd', 1);
  await receiveStock(ldb, 'WAT-150', 2, 'd', 1);
  const order = {
    orderId: 'web-1001',
    storeId: 'demo-store',
    lines: [
      { sku: 'WAT-150', qty: 1 },
      { sku: 'COF-250', qty: 2 },
      { sku: 'WAT-150', qty: 1 },
    ],
  };
  const placed = await placeOnlineOrder(ldb, order, 1000);
  t.same(placed, {
    status: 'placed',
    order: {
      orderId: 'web-1001',
      storeId: 'demo-store',
      lines: order.lines,
      status: 'placed',
      createdAt: 1000,
    },
  });
  t.same(await stockLevels(ldb), { 'COF-250': 3, 'WAT-150': 0 });
  const again = await placeOnlineOrder(ldb, order, 2000);
  t.same(again, { status: 'duplicate', order: placed.order }, 'the same order again: the same answer');
  t.same(await stockLevels(ldb), { 'COF-250': 3, 'WAT-150': 0 }, 'taken once');
  await t.rejects(placeOnlineOrder(ldb, { ...order, lines: [{ sku: 'COF-250', qty: 1 }] }, 3000), {
    code: 'ORDER_CONFLICT',
  });

  const err = await placeOnlineOrder(
    ldb,
    {
      orderId: 'web-1002',
      storeId: 'demo-store',
      lines: [
        { sku: 'COF-250', qty: 1 },
        { sku: 'WAT-150', qty: 1 },
        { sku: 'NONE', qty: 1 },
      ],
    },
    4000,
  ).catch((e: unknown) => e);
  t.ok(isLedgerError(err, 'STOCK_SHORT'));
  t.match(err, {
    details: {
      skus: ['NONE', 'WAT-150'],
      short: [
        { sku: 'NONE', qty: 1, onHand: 0 },
        { sku: 'WAT-150', qty: 1, onHand: 0 },
      ],
    },
  });
  t.same(await stockLevels(ldb), { 'COF-250': 3, 'WAT-150': 0 }, 'nothing taken for a refused order');
  t.equal(await getOnlineOrder(ldb, 'web-1002'), null, 'and no order kept');
  await t.rejects(placeOnlineOrder(ldb, { orderId: 'web 1', storeId: 's', lines: [] }, 1), {
    code: 'BAD_PARAMS',
  });
  await checkStock(t, ldb);
});

forEachDialect(
  t,
  'oversell: the online order came first, the offline sale happened later',
  async (t, { ldb }) => {
    await receiveStock(ldb, 'COF-250', 1, 'd', 1);
    await placeOnlineOrder(
      ldb,
      { orderId: 'web-1', storeId: 'demo-store', lines: [{ sku: 'COF-250', qty: 1 }] },
      TILL_T0,
    );
    const sale = await coffeeSoldAt(TILL_T0 + 10 * MINUTE);
    const out = await applyJournalMessage(ldb, 'till-1', message(sale.records), TILL_T0 + 20 * MINUTE);
    t.same(out.rejected, [], 'the sale is booked, not refused');
    t.match(out.ack!.exceptions, [{ seq: sale.seq, kind: 'oversell', ref: sale.saleId }]);
    t.same(await stockLevels(ldb), { 'COF-250': 0 }, 'never below zero');
    const [x] = await listExceptions(ldb, { kind: 'oversell' });
    t.match(x, {
      deviceId: 'till-1',
      seq: sale.seq,
      ref: sale.saleId,
      occurredAt: TILL_T0 + 10 * MINUTE,
      detail: {
        sku: 'COF-250',
        wantedQty: 1,
        onHandBefore: 0,
        shortQty: 1,
        sales: [
          { kind: 'online_order', ref: 'web-1', occurredAt: TILL_T0, flaggedQty: 0 },
          {
            kind: 'sale',
            ref: sale.saleId,
            deviceId: 'till-1',
            occurredAt: TILL_T0 + 10 * MINUTE,
            flaggedQty: 1,
          },
        ],
        flagged: [{ kind: 'sale', ref: sale.saleId, qty: 1 }],
      },
    });
    t.match(await getOnlineOrder(ldb, 'web-1'), { status: 'placed' }, 'the earlier order keeps its unit');
    t.match(await ldb.db.selectFrom('stock_moves').selectAll().where('reason', '=', 'sale').execute(), [
      { qty: 0, short_qty: 1, ref: sale.saleId },
    ]);
    await checkStock(t, ldb);
  },
);

forEachDialect(
  t,
  'oversell: the offline sale happened first but landed after the order',
  async (t, { ldb }) => {
    await receiveStock(ldb, 'COF-250', 1, 'd', 1);
    const sale = await coffeeSoldAt(TILL_T0); // sold while the till was offline
    await placeOnlineOrder(
      ldb,
      { orderId: 'web-2', storeId: 'demo-store', lines: [{ sku: 'COF-250', qty: 1 }] },
      TILL_T0 + 30 * MINUTE,
    );
    const out = await applyJournalMessage(ldb, 'till-1', message(sale.records), TILL_T0 + 60 * MINUTE);
    t.same(out.rejected, []);
    t.same(await stockLevels(ldb), { 'COF-250': 0 });
    const [x] = await listExceptions(ldb, { kind: 'oversell' });
    t.match(x, {
      ref: sale.saleId,
      detail: {
        shortQty: 1,
        sales: [
          { kind: 'sale', ref: sale.saleId, occurredAt: TILL_T0, flaggedQty: 0 },
          { kind: 'online_order', ref: 'web-2', occurredAt: TILL_T0 + 30 * MINUTE, flaggedQty: 1 },
        ],
        flagged: [{ kind: 'online_order', ref: 'web-2', qty: 1 }],
      },
    });
    t.match(await getOnlineOrder(ldb, 'web-2'), { status: 'backorder' }, 'the later order is flagged');
    await checkStock(t, ldb);
  },
);

forEachDialect(
  t,
  'no oversell when the offline sale lands first: the order is refused',
  async (t, { ldb }) => {
    await receiveStock(ldb, 'COF-250', 1, 'd', 1);
    const sale = await coffeeSoldAt(TILL_T0);
    await applyJournalMessage(ldb, 'till-1', message(sale.records), TILL_T0 + MINUTE);
    await t.rejects(
      placeOnlineOrder(
        ldb,
        { orderId: 'web-3', storeId: 'demo-store', lines: [{ sku: 'COF-250', qty: 1 }] },
        TILL_T0 + 2 * MINUTE,
      ),
      { code: 'STOCK_SHORT', details: { skus: ['COF-250'] } },
    );
    t.same(await listExceptions(ldb, { kind: 'oversell' }), []);
    t.same(await stockLevels(ldb), { 'COF-250': 0 });
    await checkStock(t, ldb);
  },
);

forEachDialect(
  t,
  'two sales for the last unit across registers: the earlier keeps it',
  async (t, { ldb }) => {
    await receiveStock(ldb, 'COF-250', 1, 'd', 1);
    const early = await coffeeSoldAt(TILL_T0, 1);
    const late = await coffeeSoldAt(TILL_T0 + MINUTE, 2);
    // The later sale lands first and takes the unit; the earlier one lands after and is the one that keeps it.
    await applyJournalMessage(
      ldb,
      'till-2',
      message(rechain(late.records, 'till-2', 1), 'till-2'),
      TILL_T0 + 5 * MINUTE,
    );
    await applyJournalMessage(ldb, 'till-1', message(early.records), TILL_T0 + 6 * MINUTE);
    const [x] = await listExceptions(ldb, { kind: 'oversell' });
    t.match(x, {
      deviceId: 'till-1',
      detail: {
        sales: [
          { ref: early.saleId, deviceId: 'till-1', flaggedQty: 0 },
          { ref: late.saleId, deviceId: 'till-2', flaggedQty: 1 },
        ],
        flagged: [{ kind: 'sale', ref: late.saleId, qty: 1 }],
      },
    });
    await checkStock(t, ldb);
  },
);

/**
 * A second ledger on the same database: on PostgreSQL its own pool; on SQLite the same handle, whose
 * transactions kysely runs one at a time. (Two SQLite handles in one process would block each other:
 * better-sqlite3 waits for a lock synchronously, so the holder never gets to commit.)
 */
async function secondLedger(env: DialectEnv): Promise<LedgerDb> {
  return env.dialect === 'postgres' ? env.open() : env.ldb;
}

forEachDialect(t, 'online orders at once for the last units: exactly that many placed', async (t, env) => {
  const other = await secondLedger(env);
  await receiveStock(env.ldb, 'COF-250', 1, 'd', 1);
  const place = (ldb: LedgerDb, orderId: string) =>
    placeOnlineOrder(ldb, { orderId, storeId: 'demo-store', lines: [{ sku: 'COF-250', qty: 1 }] }, 1000).then(
      (r) => r.status,
      (e: unknown) => (isLedgerError(e) ? e.code : String(e)),
    );
  const two = await Promise.all([place(env.ldb, 'a'), place(other, 'b')]);
  t.same(two.sort(), ['STOCK_SHORT', 'placed'], 'one placed, one refused');

  await receiveStock(env.ldb, 'COF-250', 3, 'd', 2);
  const many = await Promise.all(
    Array.from({ length: 12 }, (_, i) => place(i % 2 ? other : env.ldb, `m${i}`)),
  );
  t.equal(many.filter((s) => s === 'placed').length, 3);
  t.equal(many.filter((s) => s === 'STOCK_SHORT').length, 9);
  t.same(await stockLevels(env.ldb), { 'COF-250': 0 });
  await checkStock(t, env.ldb);
});

forEachDialect(
  t,
  'registers and online orders at once, many SKUs: no deadlock, honest stock',
  async (t, env) => {
    const handles = [env.ldb, await secondLedger(env), await secondLedger(env)];
    for (const sku of SKUS) await receiveStock(env.ldb, sku, 15, 'd', 1);
    const devices = await Promise.all(
      [21, 22].map(async (seed, i) => {
        const records = rechain(journalOf(await randomSales(seed, 30)), `till-${i + 1}`, 1);
        return { deviceId: `till-${i + 1}`, batches: split(records, 7) };
      }),
    );
    const rng = new Rng(7);
    const orders = Array.from({ length: 30 }, (_, i) => ({
      orderId: `web-${i}`,
      storeId: 'demo-store',
      // Lines in no particular order: the ledger sorts before it locks.
      lines: Array.from({ length: rng.int(1, 4) }, () => ({ sku: rng.pick(SKUS), qty: rng.int(1, 2) })),
    }));
    const results = await Promise.all([
      ...devices.map(async (d, i) => {
        for (const b of d.batches)
          await applyJournalMessage(handles[i]!, d.deviceId, message(b, d.deviceId), 5000);
      }),
      (async () => {
        const codes: string[] = [];
        for (const o of orders)
          codes.push(
            await placeOnlineOrder(handles[2]!, o, 5000).then(
              (r) => r.status,
              (e: unknown) => (isLedgerError(e) ? e.code : String(e)),
            ),
          );
        return codes;
      })(),
    ]);
    const codes = results[2] as string[];
    t.ok(
      codes.every((c) => c === 'placed' || c === 'STOCK_SHORT'),
      'orders placed or refused, nothing else',
    );
    for (const d of devices) {
      const last = d.batches.at(-1)!.at(-1)!.seq;
      const cursor = await env.ldb.db
        .selectFrom('device_cursors')
        .select('last_seq')
        .where('device_id', '=', d.deviceId)
        .executeTakeFirstOrThrow();
      t.equal(cursor.last_seq, last, `${d.deviceId} applied through its last record`);
    }
    const shorts = await env.ldb.db
      .selectFrom('stock_moves')
      .select('id')
      .where('short_qty', '>', 0)
      .execute();
    t.equal(
      (await listExceptions(env.ldb, { kind: 'oversell', limit: 500 })).length,
      shorts.length,
      'an exception per shortfall',
    );
    await checkStock(t, env.ldb);
  },
);
