// Reading the books and the writes beside the journal: device status, sales pages, exceptions and their
// resolution, store documents with versions, and the database itself. Every case runs on SQLite and
// on PostgreSQL.
import t from 'tap';
import { sql } from 'kysely';
import { openLedgerDb } from '../../ledger/db/open.js';
import { applyJournalMessage } from '../../ledger/apply.js';
import { receiveStock } from '../../ledger/stock.js';
import {
  assignDeviceStore,
  getDevice,
  getSale,
  getStock,
  getStoreDocument,
  listDevices,
  listExceptions,
  listSales,
  listStock,
  listStoreDocuments,
  putStoreDocument,
  recordDeviceStatus,
  resolveException,
} from '../../ledger/queries.js';
import { demoCashiers, demoCatalog } from '../support/till-fixtures.js';
import {
  forEachDialect,
  journalOf,
  message,
  randomSales,
  rechain,
  SKUS,
} from '../support/ledger-fixtures.js';

const NOW = 1_800_000_000_000;

t.test('openLedgerDb refuses what is not a ledger URL', async (t) => {
  await t.rejects(openLedgerDb('mysql://x'), { code: 'BAD_DB_URL' });
  await t.rejects(openLedgerDb('sqlite:'), { code: 'BAD_DB_URL' });
  const err = await openLedgerDb('postgres://u:secret@127.0.0.1:1/x?connect_timeout=1').catch(
    (e: Error) => e,
  );
  t.match(err, { code: 'ECONNREFUSED' }, 'an unreachable server fails the open, saying why');
  t.notMatch((err as Error).message, /secret/, 'without the password in the message');
});

forEachDialect(t, 'the schema is migrated once; reopening finds it current', async (t, env) => {
  const again = await env.open();
  t.equal(again.dialect, env.dialect);
  const migrations = await sql<{ name: string }>`select name from kysely_migration`.execute(again.db);
  t.same(
    migrations.rows.map((m) => m.name),
    ['0001_books', '0002_operators', '0003_enrolments', '0004_status_receipt'],
  );
  if (env.dialect === 'sqlite') {
    const pragma = async (name: string) => (await sql.raw(`pragma ${name}`).execute(again.db)).rows;
    t.match(await pragma('journal_mode'), [{ journal_mode: 'wal' }]);
    t.match(await pragma('synchronous'), [{ synchronous: 2 }], 'FULL');
    t.match(await pragma('foreign_keys'), [{ foreign_keys: 1 }]);
  }
});

forEachDialect(t, 'device status: recorded from the topic, merged, never older', async (t, { ldb }) => {
  const status = (payload: unknown, at: number, device = 'till-1') =>
    recordDeviceStatus(ldb, device, JSON.stringify(payload), at);
  t.match(
    await status(
      {
        v: 1,
        online: true,
        epoch: 1,
        pending: 12,
        oldestPendingTs: 900,
        lastAckedSeq: 40,
        version: '0.1.0',
        clockTrusted: true,
        ts: 1000,
      },
      NOW,
    ),
    {
      deviceId: 'till-1',
      online: true,
      pending: 12,
      oldestPendingTs: 900,
      deviceAckedSeq: 40,
      epoch: 1,
      version: '0.1.0',
      clockTrusted: true,
      lastSeen: NOW,
    },
  );
  // The last will says only that it is gone: the rest stays as last reported.
  t.match(await status({ v: 1, online: false }, NOW + 1), { online: false, pending: 12, version: '0.1.0' });
  t.match(await status({ v: 1, online: true, pending: 0, oldestPendingTs: null, ts: 2000 }, NOW + 2), {
    online: true,
    pending: 0,
    oldestPendingTs: null,
  });
  t.match(
    await status({ v: 1, online: false, pending: 99, ts: 1500 }, NOW + 3),
    { online: true, pending: 0 },
    'an older status is ignored',
  );
  t.equal(await recordDeviceStatus(ldb, 'till-1', Buffer.alloc(0), NOW), null, 'a cleared retained status');
  await t.rejects(recordDeviceStatus(ldb, 'till-1', 'not json', NOW), { code: 'BAD_STATUS' });
  await t.rejects(status({ v: 1, online: 'yes' }, NOW), { code: 'BAD_STATUS' });
  await t.rejects(recordDeviceStatus(ldb, 'pos/#', '{"v":1,"online":true}', NOW), { code: 'BAD_STATUS' });
  await status({ v: 1, online: true }, NOW, 'till-2');
  t.same(
    (await listDevices(ldb)).map((d) => d.deviceId),
    ['till-1', 'till-2'],
  );
});

forEachDialect(
  t,
  'devices show what the ledger acked; sales page by time, per device and store',
  async (t, { ldb }) => {
    for (const sku of SKUS) await receiveStock(ldb, sku, 500, 'opening', 1);
    const r1 = journalOf(await randomSales(31, 12));
    const r2 = rechain(journalOf(await randomSales(32, 8)), 'till-2', 1);
    await assignDeviceStore(ldb, 'till-2', 'store-b', NOW);
    await applyJournalMessage(ldb, 'till-1', message(r1), NOW);
    await applyJournalMessage(ldb, 'till-2', message(r2, 'till-2'), NOW);
    t.match(await getDevice(ldb, 'till-1'), {
      lastAckedSeq: r1.length,
      epoch: 1,
      lastSeen: NOW,
      storeId: null,
    });
    t.match(await getDevice(ldb, 'till-2'), { lastAckedSeq: r2.length, storeId: 'store-b' });

    const all: string[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await listSales(ldb, { limit: 5, ...(before ? { before } : {}) });
      all.push(...page.sales.map((s) => s.saleId));
      for (let i = 1; i < page.sales.length; i++)
        t.ok(page.sales[i - 1]!.completedAt >= page.sales[i]!.completedAt, 'latest first');
      if (!page.next) break;
      before = page.next;
    }
    const total = await ldb.db.selectFrom('sales').select('sale_id').execute();
    t.equal(all.length, total.length, 'pages cover every sale');
    t.equal(new Set(all).size, all.length, 'once each');

    const b = await listSales(ldb, { storeId: 'store-b', limit: 500 });
    t.ok(b.sales.length > 0 && b.sales.every((s) => s.deviceId === 'till-2'));
    await assignDeviceStore(ldb, 'till-1', 'store-a', NOW);
    const a = await listSales(ldb, { storeId: 'store-a', limit: 500 });
    t.equal(a.sales.length + b.sales.length, total.length, 'a store assigned later gets its sales');
    const one = await listSales(ldb, { deviceId: 'till-1', limit: 500 });
    t.ok(one.sales.every((s) => s.deviceId === 'till-1'));
    await t.rejects(listSales(ldb, { limit: 501 }), { code: 'BAD_PARAMS' });
    await t.rejects(listSales(ldb, { before: 'nonsense' }), { code: 'BAD_PARAMS' });

    const sale = await getSale(ldb, all[0]!);
    t.ok(sale && sale.lines.length > 0 && sale.tenders.length > 0, 'a sale with its lines and tenders');
    t.equal(
      sale!.tenders.reduce((sum, x) => sum + x.amountMinor, 0) - sale!.changeMinor,
      sale!.totalMinor + sale!.roundingMinor,
    );
    t.equal(await getSale(ldb, 'no-such-sale'), null);

    t.match(await getStock(ldb, 'COF-250'), { sku: 'COF-250' });
    t.equal(await getStock(ldb, 'NOPE'), null);
    const first = await listStock(ldb, { limit: 3 });
    const next = await listStock(ldb, { limit: 3, after: first.at(-1)!.sku });
    t.same(
      [...first, ...next].map((s) => s.sku),
      [...SKUS].sort().slice(0, 6),
    );
  },
);

forEachDialect(t, 'exceptions: listed by kind and state, resolved once', async (t, { ldb }) => {
  await applyJournalMessage(ldb, 'till-1', 'garbage', NOW);
  const records = journalOf(await randomSales(33, 3));
  await applyJournalMessage(ldb, 'till-1', message(records.slice(2)), NOW);
  const open = await listExceptions(ldb, { open: true });
  t.same(open.map((x) => x.kind).sort(), ['gap', 'quarantine']);
  const gap = (await listExceptions(ldb, { kind: 'gap' }))[0]!;
  t.match(gap, { deviceId: 'till-1', epoch: 1, seq: 1, detail: { missingFrom: 1, missingThrough: 2 } });
  const q = (await listExceptions(ldb, { kind: 'quarantine' }))[0]!;
  t.match(await resolveException(ldb, q.id, 'a test message, nothing to do', NOW + 1), {
    id: q.id,
    resolvedAt: NOW + 1,
    resolution: 'a test message, nothing to do',
  });
  await t.rejects(resolveException(ldb, q.id, 'again'), { code: 'ALREADY_RESOLVED' });
  await t.rejects(resolveException(ldb, 999_999, 'what'), { code: 'NOT_FOUND' });
  await t.rejects(resolveException(ldb, gap.id, ''), { code: 'BAD_PARAMS' });
  t.same(
    (await listExceptions(ldb, { open: false })).map((x) => x.id),
    [q.id],
  );
  t.same(
    (await listExceptions(ldb, { deviceId: 'till-1', open: true })).map((x) => x.id),
    [gap.id],
  );
  await t.rejects(listExceptions(ldb, { kind: 'nonsense' as 'gap' }), { code: 'BAD_PARAMS' });
});

forEachDialect(t, 'store documents: validated, only ever newer, the newest served', async (t, { ldb }) => {
  const catalog = { ...demoCatalog, storeId: 'demo-store', version: 3 };
  const stored = await putStoreDocument(ldb, 'demo-store', 'catalog', catalog, NOW);
  t.match(stored, {
    storeId: 'demo-store',
    kind: 'catalog',
    version: 3,
    publishedAt: NOW,
    body: { currency: 'EUR' },
  });
  t.same(await getStoreDocument(ldb, 'demo-store', 'catalog'), stored);
  await t.rejects(putStoreDocument(ldb, 'demo-store', 'catalog', catalog, NOW), {
    code: 'VERSION_NOT_NEWER',
    details: { storedVersion: 3, version: 3 },
  });
  await t.rejects(putStoreDocument(ldb, 'demo-store', 'catalog', { ...catalog, version: 2 }, NOW), {
    code: 'VERSION_NOT_NEWER',
  });
  await t.rejects(putStoreDocument(ldb, 'other-store', 'catalog', { ...catalog, version: 9 }, NOW), {
    code: 'BAD_DOCUMENT',
  });
  await t.rejects(
    putStoreDocument(ldb, 'demo-store', 'catalog', { ...catalog, version: 4, products: [{ sku: 'X' }] }, NOW),
    { code: 'BAD_DOCUMENT' },
  );
  await t.rejects(putStoreDocument(ldb, 'demo store', 'catalog', catalog, NOW), { code: 'BAD_PARAMS' });
  const v4 = await putStoreDocument(ldb, 'demo-store', 'catalog', { ...catalog, version: 4 }, NOW + 1);
  t.equal((await getStoreDocument(ldb, 'demo-store', 'catalog'))!.version, 4);

  const cashiers = { ...demoCashiers, storeId: 'demo-store', version: 1 };
  const c1 = await putStoreDocument(ldb, 'demo-store', 'cashiers', cashiers, NOW);
  await t.rejects(
    putStoreDocument(
      ldb,
      'demo-store',
      'cashiers',
      { ...cashiers, version: 2, cashiers: [{ id: 'x' }] },
      NOW,
    ),
    { code: 'BAD_DOCUMENT' },
  );
  t.equal(await getStoreDocument(ldb, 'demo-store', 'nothing' as 'catalog'), null);
  t.equal(await getStoreDocument(ldb, 'no-store', 'catalog'), null);
  t.same(await listStoreDocuments(ldb), [c1, v4]);

  // Two publishers at once with one version: one wins, the other is told it is not newer.
  const results = await Promise.allSettled([
    putStoreDocument(ldb, 'demo-store', 'catalog', { ...catalog, version: 7 }, NOW + 2),
    putStoreDocument(ldb, 'demo-store', 'catalog', { ...catalog, version: 7 }, NOW + 3),
  ]);
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
});

forEachDialect(
  t,
  'the fleet view follows a journal reset whichever is heard of first',
  async (t, { ldb }) => {
    const records = journalOf(await randomSales(34, 2));
    await applyJournalMessage(ldb, 'till-1', message(records), NOW);
    t.match(await getDevice(ldb, 'till-1'), { lastAckedSeq: records.length, ackedEpoch: 1, epoch: 1 });
    // The device reports its new epoch before any of its records arrive.
    await recordDeviceStatus(
      ldb,
      'till-1',
      JSON.stringify({ v: 1, online: true, epoch: 2, lastSeq: 1 }),
      NOW + 1,
    );
    const epoch2 = rechain(records.slice(0, 1), 'till-1', 2);
    await applyJournalMessage(ldb, 'till-1', message(epoch2, 'till-1', 2), NOW + 2);
    t.match(await getDevice(ldb, 'till-1'), { lastAckedSeq: 1, ackedEpoch: 2, epoch: 2, lastSeen: NOW + 2 });
    // A stale message of the old epoch must not wind it back.
    await applyJournalMessage(ldb, 'till-1', message(records), NOW + 3);
    t.match(await getDevice(ldb, 'till-1'), { lastAckedSeq: 1, ackedEpoch: 2 });
  },
);
