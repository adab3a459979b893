// The ledger's tests run against both databases: a fresh SQLite file and a fresh PostgreSQL schema per
// test. PostgreSQL is always there (127.0.0.1:5432 here and in CI); a test never skips it.
// Also: journal messages from a real register, and a snapshot of the books to compare deliveries by.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Test } from 'tap';
import { openLedgerDb, type LedgerDb } from '../../ledger/db/open.js';
import {
  startLedger,
  type LedgerOptions,
  type RunningLedger,
  type StartLedgerExtras,
} from '../../ledger/main.js';
import type { Dialect } from '../../ledger/db/migrations.js';
import { sealRecord, genesisHash, type JournalRecord } from '../../cloud-bridge/protocol/record.js';
import { demoCatalog, readyRegister, MANAGER } from './till-fixtures.js';
import { Rng } from './rng.js';

export const PG_URL = process.env.LEDGER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface DialectEnv {
  ldb: LedgerDb;
  dialect: Dialect;
  /**
   * Another handle on the same database, closed at teardown. On SQLite use it only one at a time:
   * better-sqlite3 waits for another handle's lock synchronously, blocking the event loop that holder needs.
   */
  open(): Promise<LedgerDb>;
  /** Another, empty database of the same dialect (to compare books delivered two ways). */
  fresh(): Promise<LedgerDb>;
}

let schemas = 0;

/** Run `fn` as two subtests: on a fresh SQLite file and on a fresh PostgreSQL schema. */
export function forEachDialect(t: Test, name: string, fn: (t: Test, env: DialectEnv) => Promise<void>): void {
  t.test(`${name} [sqlite]`, async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ledger-test-'));
    const handles: LedgerDb[] = [];
    t.teardown(async () => {
      for (const h of handles) await h.close();
      rmSync(dir, { recursive: true, force: true });
    });
    let files = 0;
    const opener = (url: string) => async () => {
      const h = await openLedgerDb(url);
      handles.push(h);
      return h;
    };
    const open = opener(`sqlite:${path.join(dir, 'ledger.db')}`);
    const fresh = () => opener(`sqlite:${path.join(dir, `fresh-${++files}.db`)}`)();
    await fn(t, { ldb: await open(), dialect: 'sqlite', open, fresh });
  });

  t.test(`${name} [postgres]`, async (t) => {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    const made: string[] = [];
    const handles: LedgerDb[] = [];
    t.teardown(async () => {
      for (const h of handles) await h.close();
      for (const schema of made) await admin.query(`drop schema "${schema}" cascade`);
      await admin.end();
    });
    const newSchema = async () => {
      const schema = `ledger_t${process.pid}_${++schemas}_${randomBytes(4).toString('hex')}`;
      await admin.query(`create schema "${schema}"`);
      made.push(schema);
      return `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    };
    const opener = (url: string) => async () => {
      const h = await openLedgerDb(url);
      handles.push(h);
      return h;
    };
    const open = opener(await newSchema());
    const fresh = async () => opener(await newSchema())();
    await fn(t, { ldb: await open(), dialect: 'postgres', open, fresh });
  });
}

// ---- journal messages ----

export type Register = Awaited<ReturnType<typeof readyRegister>>;

export function journalOf(r: Register): JournalRecord[] {
  return [...r.journal.read(1)];
}

/** A journal batch as the bridge sends it. */
export function message(records: JournalRecord[], deviceId = 'till-1', epoch = 1): string {
  return JSON.stringify({ v: 1, deviceId, epoch, records });
}

/** The same events sealed into another device's or epoch's chain (the register writes till-1, epoch 1). */
export function rechain(records: JournalRecord[], deviceId: string, epoch: number): JournalRecord[] {
  let prev = genesisHash(deviceId, epoch);
  return records.map((r) => {
    const { record } = sealRecord(prev, { seq: r.seq, ts: r.ts, clock: r.clock, events: r.events });
    prev = record.hash;
    return record;
  });
}

/** Split records into consecutive batches of the given sizes (the last takes the rest). */
export function split(records: JournalRecord[], size: number): JournalRecord[][] {
  const out: JournalRecord[][] = [];
  for (let i = 0; i < records.length; i += size) out.push(records.slice(i, i + size));
  return out;
}

export const SKUS = demoCatalog.products.filter((p) => !p.openPrice).map((p) => p.sku);

/**
 * A register that rang up `sales` random sales, seeded: several lines, some voids and discounts, cash
 * and card (online and offline), the odd cancel, refund, payout, paid-in, no-sale, SAF outcome, and a
 * shift closed and opened again now and then.
 */
export async function randomSales(seed: number, sales: number, opts: { linesMax?: number } = {}) {
  const rng = new Rng(seed);
  const r = await readyRegister({ seed });
  const held: string[] = [];
  let lastSale = 0;
  for (let i = 0; i < sales; i++) {
    r.clock.advance(rng.int(1_000, 120_000));
    const lines = rng.int(1, opts.linesMax ?? 4);
    for (let j = 0; j < lines; j++) await r.call('sale.add', { sku: rng.pick(SKUS), qty: rng.int(1, 3) });
    if (lines > 1 && rng.chance(0.1)) await r.call('sale.voidLine', { lineId: '1' });
    if (rng.chance(0.1))
      await r.call('sale.discount', { lineId: String(lines), kind: 'percent', value: 500 });
    if (rng.chance(0.04)) {
      await r.call('sale.cancel', {});
      continue;
    }
    let answer: { completed?: boolean; receiptNo?: number } | undefined;
    if (rng.chance(0.4)) {
      r.terminal.online = !rng.chance(0.3);
      answer = (await r.call('sale.tender', { kind: 'card' }).catch(() => undefined)) as typeof answer;
      if (answer && !r.terminal.online) {
        const txn = [...r.journal.read(r.journal.lastSeq)][0]?.events.find(
          (e) => e.type === 'card.result',
        )?.txn;
        if (typeof txn === 'string') held.push(txn);
      }
      r.terminal.online = true;
    }
    if (!answer?.completed) answer = (await r.call('sale.tender', { kind: 'cash' })) as typeof answer;
    lastSale = answer?.receiptNo ?? lastSale;
    if (held.length && rng.chance(0.1)) {
      const txn = held.splice(rng.int(0, held.length - 1), 1)[0]!;
      await r.register.onTerminalEvent({
        type: 'saf.result',
        txn,
        outcome: rng.chance(0.3) ? 'declined' : 'approved',
      });
    }
    if (lastSale && rng.chance(0.04))
      await r
        .call('sale.refund', { receiptNo: lastSale, tender: 'cash', approval: MANAGER })
        .catch(() => undefined);
    if (rng.chance(0.03)) await r.call('cash.paidIn', { amountMinor: rng.int(100, 2000), reason: 'change' });
    if (rng.chance(0.03))
      await r
        .call('cash.payout', { amountMinor: rng.int(100, 500), reason: 'supplies', approval: MANAGER })
        .catch(() => undefined);
    if (rng.chance(0.03)) await r.call('drawer.open', { approval: MANAGER });
    if (rng.chance(0.02)) {
      const { expectedCashMinor: e } = (await r.call('shift.report', {})) as { expectedCashMinor: number };
      await r.call('shift.close', { counts: { '1': e % 100_000, '100000': Math.floor(e / 100_000) } });
      await r.call('shift.open', { floatCounts: { '1000': 5 } });
    }
  }
  return r;
}

// ---- the books ----

/** Columns that say when the ledger did something, not what: left out when comparing deliveries. */
const WHEN = new Set([
  'received_at',
  'booked_at',
  'recorded_at',
  'raised_at',
  'updated_at',
  'last_seen',
  'id',
]);

const ORDER: Record<string, string[]> = {
  inbox: ['device_id', 'epoch', 'seq'],
  device_cursors: ['device_id', 'epoch'],
  sales: ['sale_id'],
  sale_lines: ['sale_id', 'line_no'],
  tenders: ['sale_id', 'tender_no'],
  refunds: ['refund_id'],
  refund_lines: ['refund_id', 'line_no'],
  shifts: ['shift_id'],
  z_reports: ['shift_id'],
  cash_movements: ['device_id', 'epoch', 'seq', 'event_no'],
  card_offline: ['txn'],
  stock: ['sku'],
  stock_moves: ['id'],
  online_orders: ['order_id'],
  // By what they are about, not by when they were written (that depends on how messages arrived).
  exceptions: ['device_id', 'epoch', 'seq', 'kind', 'ref', 'detail'],
  quarantine: ['device_id', 'epoch', 'seq', 'code'],
  events_unhandled: ['device_id', 'epoch', 'seq', 'event_no'],
};

export const BOOK_TABLES = Object.keys(ORDER) as (keyof typeof ORDER)[];

/**
 * Every table's rows, in a fixed order, without the ledger's own time stamps and ids; gap alarms (which
 * depend on how messages arrived, and resolve themselves) are left out of `exceptions`.
 */
export async function snapshotBooks(ldb: LedgerDb): Promise<Record<string, Record<string, unknown>[]>> {
  const out: Record<string, Record<string, unknown>[]> = {};
  for (const table of BOOK_TABLES) {
    let q = ldb.db.selectFrom(table as 'sales').selectAll();
    for (const col of ORDER[table]!) q = q.orderBy(col as 'sale_id');
    const rows = (await q.execute()) as Record<string, unknown>[];
    out[table] = rows
      .filter((row) => !(table === 'exceptions' && row.kind === 'gap'))
      .map((row) => Object.fromEntries(Object.entries(row).filter(([k]) => !WHEN.has(k))));
  }
  for (const c of out.device_cursors!) delete c.gap_from;
  return out;
}

export async function count(ldb: LedgerDb, table: string): Promise<number> {
  const row = await ldb.db
    .selectFrom(table as 'sales')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Each SKU's on-hand. */
export async function stockLevels(ldb: LedgerDb): Promise<Record<string, number>> {
  const rows = await ldb.db.selectFrom('stock').select(['sku', 'on_hand']).orderBy('sku').execute();
  return Object.fromEntries(rows.map((r) => [r.sku, r.on_hand]));
}

/**
 * A ledger in this process for a test: SQLite in `dir`, its own embedded broker and HTTP API on free
 * loopback ports, one consumer, silent; stopped at the test's end. `options` and `extras` add to that.
 */
export async function startTestLedger(
  t: Test,
  dir: string,
  options: Partial<LedgerOptions> = {},
  extras: StartLedgerExtras = {},
): Promise<RunningLedger> {
  const ledger = await startLedger(
    {
      db: `sqlite:${path.join(dir, 'ledger.db')}`,
      mqtt: 'embedded:0',
      http: 0,
      host: '127.0.0.1',
      shared: false,
      consumers: 1,
      ...options,
    },
    { log: { info() {}, warn() {}, error() {} }, ...extras },
  );
  t.teardown(() => ledger.stop());
  return ledger;
}
