// Ingest, exactly once (Invariants 2, 5, 7): every journal record reaches the books once, whatever was
// resent, reordered or duplicated; gaps and broken chains are alarms; bad input is quarantined with a
// code and never stalls what comes behind it. Every case runs on SQLite and on PostgreSQL.
import t from 'tap';
import { applyJournalMessage, maskPan } from '../../ledger/apply.js';
import { receiveStock } from '../../ledger/stock.js';
import { getSale, listExceptions } from '../../ledger/queries.js';
import { MAX_PAYLOAD_BYTES } from '../../cloud-bridge/protocol/wire.js';
import { sealRecord, type JournalRecord } from '../../cloud-bridge/protocol/record.js';
import { code, MANAGER, readyRegister } from '../support/till-fixtures.js';
import { Rng } from '../support/rng.js';
import {
  count,
  forEachDialect,
  journalOf,
  message,
  randomSales,
  rechain,
  snapshotBooks,
  split,
  stockLevels,
  SKUS,
  type Register,
} from '../support/ledger-fixtures.js';
import type { LedgerDb } from '../../ledger/db/open.js';

const NOW = 1_800_000_000_000;
const COFFEE = code('COF-250');

/** A shift with one of each: a cash sale, an offline card sale declined later, a refund, cash moves. */
async function dayAtTheTill(): Promise<Register> {
  const r = await readyRegister();
  await r.call('sale.scan', { code: COFFEE });
  await r.call('sale.add', { sku: 'WAT-150', qty: 3 });
  await r.call('sale.discount', { lineId: '1', kind: 'percent', value: 500 });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 2000 });
  r.terminal.online = false;
  r.clock.advance(60_000);
  await r.call('sale.scan', { code: COFFEE });
  await r.call('sale.tender', { kind: 'card' });
  r.terminal.online = true;
  await r.call('sale.refund', {
    receiptNo: 1,
    lines: [{ lineId: '2', qty: 1 }],
    tender: 'cash',
    approval: MANAGER,
  });
  await r.call('cash.payout', { amountMinor: 100, reason: 'window cleaner', approval: MANAGER });
  await r.call('cash.paidIn', { amountMinor: 300, reason: 'change' });
  await r.call('drawer.open', { approval: MANAGER });
  const txn = journalOf(r)
    .flatMap((x) => x.events)
    .find((e) => e.type === 'card.result')!.txn as string;
  await r.register.onTerminalEvent({
    type: 'saf.result',
    txn,
    outcome: 'declined',
    message: 'issuer said no',
  });
  const { expectedCashMinor } = (await r.call('shift.report', {})) as { expectedCashMinor: number };
  await r.call('shift.close', { counts: { '1': expectedCashMinor } });
  return r;
}

async function stockUp(ldb: LedgerDb, qty = 1000) {
  for (const sku of SKUS) await receiveStock(ldb, sku, qty, 'opening stock', 1);
}

forEachDialect(t, 'a day at the till is booked once, completely, with its ack', async (t, { ldb }) => {
  const r = await dayAtTheTill();
  const records = journalOf(r);
  await stockUp(ldb, 10);
  const out = await applyJournalMessage(ldb, 'till-1', message(records), NOW);
  t.match(out, { applied: records.length, duplicates: 0, ignored: 0, rejected: [], alarms: [] });
  t.match(out.ack, { v: 1, epoch: 1, ackedThrough: records.length, rejected: [] });
  t.same(
    out.ack!.exceptions.map((e) => e.kind),
    ['saf_declined'],
  );

  t.equal(await count(ldb, 'sales'), 2);
  t.equal(await count(ldb, 'sale_lines'), 3);
  t.equal(await count(ldb, 'inbox'), records.length);
  const cashSale = journalOf(r)
    .flatMap((x) => x.events)
    .filter((e) => e.type === 'sale.completed')
    .map((e) => e.saleId as string);
  const first = await getSale(ldb, cashSale[0]!);
  t.match(first, {
    cashierId: 'ana',
    cashierName: 'Ana',
    receiptNo: 1,
    currency: 'EUR',
    totalMinor: 884,
    paidMinor: 2000,
    changeMinor: 1116,
    lines: [
      { lineId: '1', sku: 'COF-250', qty: 1, netMinor: 617, discount: { kind: 'percent', bp: 500 } },
      { lineId: '2', sku: 'WAT-150', qty: 3, netMinor: 267 },
    ],
    tenders: [{ kind: 'cash', amountMinor: 2000, maskedPan: null }],
  });
  const second = await getSale(ldb, cashSale[1]!);
  t.match(second?.tenders, [{ kind: 'card', mode: 'offline', maskedPan: '************4242', brand: 'VISA' }]);

  const refunds = await ldb.db.selectFrom('refunds').selectAll().execute();
  t.match(refunds, [
    { original_sale_id: cashSale[0], amount_minor: 89, approved_by: 'mia', cashier_id: 'ana' },
  ]);
  t.same(
    (
      await ldb.db
        .selectFrom('cash_movements')
        .select(['kind', 'amount_minor', 'cashier_id'])
        .orderBy('seq')
        .execute()
    ).map((m) => [m.kind, m.amount_minor, m.cashier_id]),
    [
      ['payout', 100, 'ana'],
      ['paid_in', 300, 'ana'],
      ['no_sale', 0, 'ana'],
    ],
  );
  t.match(await ldb.db.selectFrom('shifts').selectAll().execute(), [{ status: 'closed', opened_by: 'ana' }]);
  t.match(await ldb.db.selectFrom('z_reports').selectAll().execute(), [{ z_no: 1, discrepancy_minor: 0 }]);
  t.match(await ldb.db.selectFrom('card_offline').selectAll().execute(), [
    { sale_id: cashSale[1], amount_minor: 649, currency: 'EUR', status: 'declined' },
  ]);
  t.match(await listExceptions(ldb, { kind: 'saf_declined' }), [
    {
      ref: cashSale[1],
      detail: { saleId: cashSale[1], amountMinor: 649, currency: 'EUR', message: 'issuer said no' },
    },
  ]);
  // 10 each; coffee 2 out; water 3 out, 1 back.
  t.match(await stockLevels(ldb), { 'COF-250': 8, 'WAT-150': 8 });
  t.equal(await count(ldb, 'events_unhandled'), 0, 'every event the register writes is known');
});

forEachDialect(t, 'the same batch delivered twice is booked once and acked the same', async (t, { ldb }) => {
  const records = journalOf(await dayAtTheTill());
  await stockUp(ldb);
  const once = await applyJournalMessage(ldb, 'till-1', message(records), NOW);
  const books = await snapshotBooks(ldb);
  const twice = await applyJournalMessage(ldb, 'till-1', message(records), NOW + 1);
  t.match(twice, { applied: 0, duplicates: records.length, ignored: 0, rejected: [], alarms: [] });
  t.same(twice.ack, once.ack);
  t.same(await snapshotBooks(ldb), books);
});

forEachDialect(t, 'a later batch first waits behind the gap; the resend applies', async (t, env) => {
  const { ldb } = env;
  const records = journalOf(await dayAtTheTill());
  await stockUp(ldb);
  const [b1, b2] = [records.slice(0, 6), records.slice(6)];
  const early = await applyJournalMessage(ldb, 'till-1', message(b2), NOW);
  t.match(early, { applied: 0, ignored: b2.length, alarms: [{ kind: 'gap', seq: 1 }] });
  t.equal(early.ack!.ackedThrough, 0, 'nothing past the gap is acked');
  t.equal(await count(ldb, 'sales'), 0);
  const again = await applyJournalMessage(ldb, 'till-1', message(b2), NOW + 1);
  t.same(again.alarms, [], 'the gap alarm is raised once');
  t.equal((await listExceptions(ldb, { kind: 'gap', open: true })).length, 1);

  t.match(await applyJournalMessage(ldb, 'till-1', message(b1), NOW + 2), { applied: b1.length });
  t.same(await listExceptions(ldb, { kind: 'gap', open: true }), [], 'the gap closes when filled');
  const resent = await applyJournalMessage(ldb, 'till-1', message(b2), NOW + 3);
  t.match(resent, { applied: b2.length, ack: { ackedThrough: records.length } });

  const inOrder = await env.fresh();
  await stockUp(inOrder);
  await applyJournalMessage(inOrder, 'till-1', message(records), NOW);
  t.same(await snapshotBooks(ldb), await snapshotBooks(inOrder), 'the same books as in order');
});

forEachDialect(t, 'a device resending its whole queue adds only what is new', async (t, { ldb }) => {
  const r = await dayAtTheTill();
  const first = journalOf(r);
  await stockUp(ldb);
  for (const b of split(first, 4)) await applyJournalMessage(ldb, 'till-1', message(b), NOW);
  const books = await snapshotBooks(ldb);
  await r.call('shift.open', { floatCounts: { '1000': 5 } });
  await r.call('sale.scan', { code: COFFEE });
  await r.call('sale.tender', { kind: 'cash' });
  const all = journalOf(r);
  let applied = 0;
  let duplicates = 0;
  for (const b of split(all, 5)) {
    const out = await applyJournalMessage(ldb, 'till-1', message(b), NOW + 1);
    applied += out.applied;
    duplicates += out.duplicates;
  }
  t.equal(duplicates, first.length);
  t.equal(applied, all.length - first.length);
  t.equal(await count(ldb, 'sales'), books.sales!.length + 1);
  t.equal(await count(ldb, 'inbox'), all.length);
});

forEachDialect(t, 'a new epoch starts its own cursor; the old one stays', async (t, { ldb }) => {
  const r1 = await readyRegister({ seed: 1 });
  await r1.call('sale.scan', { code: COFFEE });
  await r1.call('sale.tender', { kind: 'cash' });
  const epoch1 = journalOf(r1);
  await stockUp(ldb);
  await applyJournalMessage(ldb, 'till-1', message(epoch1), NOW);

  // The journal was reset: a new epoch, seq from 1 again, chained from that epoch's genesis.
  const r2 = await readyRegister({ seed: 2 });
  await r2.call('sale.scan', { code: COFFEE });
  await r2.call('sale.tender', { kind: 'cash' });
  const epoch2 = rechain(journalOf(r2), 'till-1', 2);
  const out = await applyJournalMessage(ldb, 'till-1', message(epoch2, 'till-1', 2), NOW + 1);
  t.match(out, { applied: epoch2.length, rejected: [], alarms: [] });
  t.match(out.ack, { epoch: 2, ackedThrough: epoch2.length });
  t.same(
    await ldb.db
      .selectFrom('device_cursors')
      .select(['epoch', 'last_seq'])
      .where('device_id', '=', 'till-1')
      .orderBy('epoch')
      .execute(),
    [
      { epoch: 1, last_seq: epoch1.length },
      { epoch: 2, last_seq: epoch2.length },
    ],
  );
  t.equal(await count(ldb, 'sales'), 2);

  const stale = await applyJournalMessage(ldb, 'till-1', message(epoch1), NOW + 2);
  t.match(stale, { applied: 0, duplicates: epoch1.length });
  t.match(
    stale.ack,
    { epoch: 2, ackedThrough: epoch2.length },
    'a stale epoch never replaces the current ack',
  );
});

/** Re-seal record `at` with `change` applied, and the records after it chained from it (a device bug). */
function rewrite(
  records: JournalRecord[],
  at: number,
  change: (r: JournalRecord) => JournalRecord,
  relink = true,
): JournalRecord[] {
  const out = records.slice(0, at);
  const changed = change(structuredClone(records[at]!));
  out.push(sealRecord(changed.prevHash, changed).record);
  for (const r of records.slice(at + 1)) {
    const prev = relink ? out[out.length - 1]!.hash : r.prevHash;
    out.push(sealRecord(prev, r).record);
  }
  return out;
}

forEachDialect(t, 'a broken chain is an alarm; the record is rejected, the rest flow', async (t, { ldb }) => {
  const records = journalOf(await dayAtTheTill());
  await stockUp(ldb);
  // Record 6 (the cash sale) does not link to record 5; everything after links to it.
  const broken = rewrite(records, 5, (r) => ({ ...r, prevHash: 'ab'.repeat(32) }));
  const out = await applyJournalMessage(ldb, 'till-1', message(broken), NOW);
  t.match(out, {
    applied: records.length - 1,
    rejected: [{ seq: 6, code: 'CHAIN_BREAK' }],
    alarms: [{ kind: 'chain_break', seq: 6 }],
    ack: { ackedThrough: records.length, rejected: [{ seq: 6, code: 'CHAIN_BREAK' }] },
  });
  t.equal(await count(ldb, 'sales'), 1, 'the sale in the broken record is not booked');
  t.match(await listExceptions(ldb, { kind: 'chain_break' }), [{ seq: 6, detail: { code: 'CHAIN_BREAK' } }]);
  t.match(await ldb.db.selectFrom('quarantine').selectAll().execute(), [{ seq: 6, code: 'CHAIN_BREAK' }]);
  const again = await applyJournalMessage(ldb, 'till-1', message(broken), NOW + 1);
  t.match(again, { applied: 0, duplicates: records.length, alarms: [] }, 'acked as rejected: not again');
});

forEachDialect(t, 'a bad hash is rejected with BAD_HASH; the chain goes on', async (t, { ldb }) => {
  const records = journalOf(await dayAtTheTill());
  await stockUp(ldb);
  const tampered = structuredClone(records);
  const sale = tampered[5]!.events.find((e) => e.type === 'sale.completed')!;
  (sale.totals as { totalMinor: number }).totalMinor = 1; // altered after sealing
  const out = await applyJournalMessage(ldb, 'till-1', message(tampered), NOW);
  t.match(out, { applied: records.length - 1, rejected: [{ seq: 6, code: 'BAD_HASH' }], alarms: [] });
  t.match(out.ack, { ackedThrough: records.length, rejected: [{ seq: 6, code: 'BAD_HASH' }] });
  t.equal(await count(ldb, 'sales'), 1);
  t.match(await listExceptions(ldb, { kind: 'quarantine' }), [{ seq: 6, detail: { code: 'BAD_HASH' } }]);
});

forEachDialect(t, 'a payload with NUL bytes is quarantined, not a database error', async (t, { ldb }) => {
  // PostgreSQL text holds no NUL: the kept excerpt must not carry one (found by test/fuzz).
  const out = await applyJournalMessage(ldb, 'till-1', Buffer.from([0x7b, 0x00, 0x22, 0x00, 0x7d]), NOW);
  t.match(out.rejected, [{ code: 'BAD_JSON' }]);
  const kept = await ldb.db.selectFrom('quarantine').select(['code', 'excerpt']).execute();
  t.same(kept, [{ code: 'BAD_JSON', excerpt: '{\uFFFD"\uFFFD}' }]);
});

forEachDialect(
  t,
  'malformed payloads are refused with a code; valid ones after them apply',
  async (t, { ldb }) => {
    const records = journalOf(await dayAtTheTill());
    await stockUp(ldb);
    const [b1, b2] = [records.slice(0, 6), records.slice(6)];
    await applyJournalMessage(ldb, 'till-1', message(b1), NOW);
    const books = await snapshotBooks(ldb);

    const badJson = await applyJournalMessage(ldb, 'till-1', '{"v":1,"deviceId":', NOW);
    t.match(badJson, { applied: 0, rejected: [{ code: 'BAD_JSON' }], ack: { epoch: 1, ackedThrough: 6 } });
    const wrongSchema = await applyJournalMessage(
      ldb,
      'till-1',
      JSON.stringify({ v: 2, deviceId: 'till-1', epoch: 1, records: b2 }),
      NOW,
    );
    t.match(wrongSchema, { applied: 0, rejected: [{ code: 'BAD_SCHEMA' }] });
    t.equal((wrongSchema.rejected[0] as { seq?: number }).seq, undefined);
    const oversized = await applyJournalMessage(
      ldb,
      'till-1',
      Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20),
      NOW,
    );
    t.match(oversized, { applied: 0, rejected: [{ code: 'TOO_LARGE' }] });
    const mismatch = await applyJournalMessage(
      ldb,
      'till-1',
      message(rechain(b2, 'till-2', 1), 'till-2'),
      NOW,
    );
    t.match(mismatch, {
      applied: 0,
      rejected: [{ code: 'DEVICE_MISMATCH' }],
      ack: { epoch: 1, ackedThrough: 6 },
    });
    t.same(await snapshotBooks(ldb).then((b) => b.sales), books.sales, 'nothing of them is booked');
    t.same(
      (
        await ldb.db.selectFrom('quarantine').select(['code', 'device_id', 'seq']).orderBy('id').execute()
      ).map((q) => q.code),
      ['BAD_JSON', 'BAD_SCHEMA', 'TOO_LARGE', 'DEVICE_MISMATCH'],
    );
    t.equal((await listExceptions(ldb, { kind: 'quarantine' })).length, 4);
    await applyJournalMessage(ldb, 'till-1', '{"v":1,"deviceId":', NOW + 1);
    t.equal(await count(ldb, 'quarantine'), 4, 'the same garbage again is kept once');
    t.equal(
      await applyJournalMessage(ldb, 'nobody', 'nonsense', NOW).then((o) => o.ack),
      null,
      'no ack for a device whose epoch nobody knows',
    );

    const good = await applyJournalMessage(ldb, 'till-1', message(b2), NOW + 2);
    t.match(good, { applied: b2.length, rejected: [], ack: { ackedThrough: records.length } });
  },
);

forEachDialect(t, 'one malformed record inside a batch is rejected alone', async (t, { ldb }) => {
  const records = journalOf(await dayAtTheTill());
  await stockUp(ldb);
  const batch = structuredClone(records) as unknown as Record<string, unknown>[];
  batch[3]!.events = []; // the wire schema wants at least one event
  const out = await applyJournalMessage(
    ldb,
    'till-1',
    JSON.stringify({ v: 1, deviceId: 'till-1', epoch: 1, records: batch }),
    NOW,
  );
  t.match(out, { applied: records.length - 1, rejected: [{ seq: 4, code: 'BAD_SCHEMA' }] });
  t.equal(out.ack!.ackedThrough, records.length);
});

forEachDialect(t, 'a record whose events do not add up is rejected CANNOT_APPLY', async (t, { ldb }) => {
  const records = journalOf(await dayAtTheTill());
  await stockUp(ldb);
  const inconsistent = rewrite(records, 5, (r) => {
    const sale = r.events.find((e) => e.type === 'sale.completed')!;
    sale.changeMinor = 0; // tenders no longer add up to the total
    return r;
  });
  const out = await applyJournalMessage(ldb, 'till-1', message(inconsistent), NOW);
  t.match(out, { applied: records.length - 1, rejected: [{ seq: 6, code: 'CANNOT_APPLY' }], alarms: [] });
  t.equal(await count(ldb, 'sales'), 1);
  t.match(await listExceptions(ldb, { kind: 'quarantine' }), [{ seq: 6, detail: { why: /tenders 2000/ } }]);
  const levels = await stockLevels(ldb);
  t.equal(levels['WAT-150'], 1000 + 1, 'no stock moved for it (the refund still puts one back)');
});

forEachDialect(
  t,
  'a record the database refuses is rejected alone; its batch applies',
  async (t, { ldb }) => {
    const r = await readyRegister();
    for (let i = 0; i < 3; i++) {
      await r.call('sale.scan', { code: COFFEE });
      await r.call('sale.tender', { kind: 'cash' });
    }
    const records = journalOf(r);
    await stockUp(ldb);
    // The third sale claims the first sale's id: the books cannot hold it twice.
    const completions = records.filter((x) => x.events.some((e) => e.type === 'sale.completed'));
    const firstId = completions[0]!.events.find((e) => e.type === 'sale.completed')!.saleId;
    const at = records.indexOf(completions[2]!);
    const clash = rewrite(records, at, (x) => {
      for (const e of x.events) if ('saleId' in e) e.saleId = firstId;
      return x;
    });
    const out = await applyJournalMessage(ldb, 'till-1', message(clash), NOW);
    t.match(out, { applied: records.length - 1, rejected: [{ seq: at + 1, code: 'CANNOT_APPLY' }] });
    t.equal(await count(ldb, 'sales'), 2);
    t.equal((await stockLevels(ldb))['COF-250'], 998, 'the refused sale moved no stock');
    t.equal(out.ack!.ackedThrough, records.length);
  },
);

forEachDialect(t, 'an event this ledger does not know is kept, not refused', async (t, { ldb }) => {
  const r = await readyRegister();
  const records = rewrite(journalOf(r), 1, (x) => {
    x.events.push({ type: 'loyalty.pointsEarned', cashierId: 'ana', points: 12, pin: '1234' });
    return x;
  });
  const out = await applyJournalMessage(ldb, 'till-1', message(records), NOW);
  t.match(out, { applied: records.length, rejected: [] });
  const kept = await ldb.db.selectFrom('events_unhandled').selectAll().execute();
  t.match(kept, [{ seq: 2, event_no: 1, type: 'loyalty.pointsEarned' }]);
  t.match(JSON.parse(kept[0]!.body), { points: 12, pin: '***' }, 'no PIN rests in the books');
});

t.test('card numbers are kept masked whatever arrives', async (t) => {
  t.equal(maskPan('************4242'), '************4242');
  t.equal(maskPan('4111111111111111'), '************1111');
  t.equal(maskPan('4111 1111 1111 1111'), '**** **** **** 1111');
  t.equal(maskPan(undefined), null);
});

forEachDialect(t, 'a full card number in a tender is masked in the books', async (t, { ldb }) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: COFFEE });
  await r.call('sale.tender', { kind: 'card' });
  const records = rewrite(journalOf(r), journalOf(r).length - 1, (x) => {
    for (const e of x.events) {
      const tenders = (e.tenders ?? (e.tender ? [e.tender] : [])) as { maskedPan?: string }[];
      for (const tender of tenders) if (tender.maskedPan) tender.maskedPan = '4242424242424242';
    }
    return x;
  });
  await applyJournalMessage(ldb, 'till-1', message(records), NOW);
  t.same(
    (await ldb.db.selectFrom('tenders').select('masked_pan').execute()).map((x) => x.masked_pan),
    ['************4242'],
  );
});

forEachDialect(
  t,
  'random batches, duplicated and reordered, book the same as once in order',
  async (t, env) => {
    for (const seed of [11, 12, 13]) {
      const r = await randomSales(seed, 40);
      const records = journalOf(r);
      const rng = new Rng(seed);
      const ledger = await env.fresh();
      const reference = await env.fresh();
      await stockUp(ledger, 8);
      await stockUp(reference, 8);
      for (const b of split(records, 500)) await applyJournalMessage(reference, 'till-1', message(b), NOW);

      // Batches as the bridge might cut them; delivered in rounds: each round every unacked batch is
      // sent, shuffled, some twice; anything already acked may come again too.
      const batches: JournalRecord[][] = [];
      for (let i = 0; i < records.length;) {
        const n = rng.int(1, 25);
        batches.push(records.slice(i, i + n));
        i += n;
      }
      let acked = 0;
      let rounds = 0;
      let applied = 0;
      while (acked < records.length) {
        t.ok(++rounds < 200, 'converges');
        if (rounds >= 200) break;
        const deliveries = batches.filter((b) => b[b.length - 1]!.seq > acked || rng.chance(0.1));
        for (const b of [...deliveries]) if (rng.chance(0.3)) deliveries.push(b);
        for (let i = deliveries.length - 1; i > 0; i--) {
          const j = rng.int(0, i);
          [deliveries[i], deliveries[j]] = [deliveries[j]!, deliveries[i]!];
        }
        for (const b of deliveries) {
          const out = await applyJournalMessage(ledger, 'till-1', message(b), NOW + rounds);
          t.same(out.rejected, []);
          applied += out.applied;
          acked = Math.max(acked, out.ack!.ackedThrough);
        }
      }
      t.equal(applied, records.length, `seed ${seed}: every record applied once`);
      t.same(await snapshotBooks(ledger), await snapshotBooks(reference), `seed ${seed}: the same books`);
      t.same(await listExceptions(ledger, { kind: 'gap', open: true }), [], 'every gap closed');
      t.ok((await listExceptions(ledger, { kind: 'oversell' })).length > 0, 'oversells were part of it');
      for (const [sku, onHand] of Object.entries(await stockLevels(ledger))) t.ok(onHand >= 0, sku);
    }
  },
);

forEachDialect(t, 'volume: 10,000 records (about 1,000 sales) in batches of 500', async (t, { ldb }) => {
  const r = await readyRegister({ seed: 5 });
  let i = 0;
  while (r.journal.lastSeq < 10_000) {
    r.clock.advance(30_000);
    for (let j = 0; j < 8; j++) await r.call('sale.add', { sku: SKUS[(i + j * 3) % SKUS.length]!, qty: 1 });
    await r.call('sale.tender', { kind: 'cash' });
    i++;
  }
  const records = journalOf(r).slice(0, 10_000);
  await stockUp(ldb, 100_000);
  let applied = 0;
  for (const b of split(records, 500))
    applied += (await applyJournalMessage(ldb, 'till-1', message(b), NOW)).applied;
  // How fast is npm run bench:sync's business; here, that a full-size drain books everything.
  t.equal(applied, 10_000);
  const sales = records.filter((x) => x.events.some((e) => e.type === 'sale.completed')).length;
  t.equal(await count(ldb, 'sales'), sales);
  t.equal(await count(ldb, 'sale_lines'), sales * 8);
});

forEachDialect(
  t,
  'two ledgers taking one device’s messages at once book each record once',
  async (t, env) => {
    // On PostgreSQL a second pool (a second consumer process); on SQLite one handle, whose transactions
    // kysely runs one at a time (two handles in one process would block each other in better-sqlite3).
    const other = env.dialect === 'postgres' ? await env.open() : env.ldb;
    const records = journalOf(await randomSales(14, 30));
    const reference = await env.fresh();
    await stockUp(env.ldb, 30);
    await stockUp(reference, 30);
    for (const b of split(records, 500)) await applyJournalMessage(reference, 'till-1', message(b), NOW);
    const batches = split(records, 9);
    const last = records.at(-1)!.seq;
    const consumer = async (ldb: LedgerDb, seed: number) => {
      const rng = new Rng(seed);
      let applied = 0;
      let acked = 0;
      for (let round = 0; acked < last && round < 100; round++) {
        const order = batches.filter((b) => b.at(-1)!.seq > acked);
        for (let i = order.length - 1; i > 0; i--) {
          const j = rng.int(0, i);
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        for (const b of order) {
          const out = await applyJournalMessage(ldb, 'till-1', message(b), NOW);
          applied += out.applied;
          acked = Math.max(acked, out.ack!.ackedThrough);
        }
      }
      return applied;
    };
    const [a, b] = await Promise.all([consumer(env.ldb, 1), consumer(other, 2)]);
    t.equal(a + b, records.length, 'between them, every record applied once');
    t.same(await snapshotBooks(env.ldb), await snapshotBooks(reference));
  },
);
