// Honest stock (Invariant 4): on-hand moves atomically with the records and orders that move it, never
// goes below zero, and a shortfall becomes an oversell exception naming everyone involved, ordered by
// when they happened. Online orders cannot take what is not there: all lines or nothing.
//
// Locks: every transaction here touches stock rows in sorted SKU order, so two of them on PostgreSQL
// (two ledger consumers, an order and a device batch) wait for each other instead of deadlocking.
import { z } from 'zod';
import { sql, type Insertable, type Kysely } from 'kysely';
import { canonicalJson } from '../cloud-bridge/protocol/record.js';
import type { Dialect, LedgerDb } from './db/open.js';
import { chunk, insertRows, rowsPerStatement } from './db/bulk.js';
import type { ExceptionTable, LedgerSchema, StockMoveTable } from './db/schema.js';
import { LedgerError, isLedgerError } from './errors.js';

type Db = Kysely<LedgerSchema>;

/** How many earlier takers an oversell names at most: enough to cover any realistic shortfall. */
const MAX_TAKERS = 20;

/**
 * The stock rows of these SKUs (given sorted), created at 0 where missing, locked for the transaction,
 * with their on-hand: one upsert that touches each row in SKU order. The no-op update is what makes
 * PostgreSQL lock and return an existing row; SQLite's `begin immediate` holds the whole database anyway.
 */
async function lockStock(trx: Db, skus: readonly string[], nowMs: number): Promise<Map<string, number>> {
  const onHand = new Map<string, number>();
  for (const part of chunk(skus, rowsPerStatement(3))) {
    const rows = await trx
      .insertInto('stock')
      .values(part.map((sku) => ({ sku, on_hand: 0, updated_at: nowMs })))
      .onConflict((oc) => oc.column('sku').doUpdateSet((eb) => ({ updated_at: eb.ref('stock.updated_at') })))
      .returning(['sku', 'on_hand'])
      .execute();
    for (const r of rows) onHand.set(r.sku, r.on_hand);
  }
  return onHand;
}

/** Write new on-hand figures, one statement per chunk of SKUs (rows are locked already). */
async function writeOnHand(trx: Db, onHand: ReadonlyMap<string, number>, nowMs: number): Promise<void> {
  const skus = [...onHand.keys()].sort();
  for (const part of chunk(skus, rowsPerStatement(3))) {
    const cases = sql.join(
      part.map((sku) => sql`when ${sku} then cast(${onHand.get(sku)!} as bigint)`),
      sql` `,
    );
    await trx
      .updateTable('stock')
      .set({ on_hand: sql<number>`case sku ${cases} end`, updated_at: nowMs })
      .where('sku', 'in', part)
      .execute();
  }
}

// ---- device records ----

/** A stock change a device record asks for, in the order the records land. */
export interface DeviceStockMove {
  sku: string;
  /** Units out (negative: a sale) or back in (positive: a refund). */
  delta: number;
  reason: 'sale' | 'refund';
  /** The sale or refund id. */
  ref: string;
  deviceId: string;
  epoch: number;
  seq: number;
  /** The record's ts: when it happened on the device. */
  occurredAt: number;
  /** Whether the device's clock was trusted then (an untrusted ts orders less reliably). */
  clockTrusted: boolean;
}

/** Someone who took units of a SKU, as an oversell names them. */
export interface StockTaker {
  kind: 'sale' | 'online_order';
  ref: string;
  deviceId?: string;
  epoch?: number;
  seq?: number;
  occurredAt: number;
  clockTrusted?: boolean;
  /** Units it took (for the sale that came up short: units it wanted). */
  qty: number;
}

export interface OversellDetail {
  sku: string;
  /** Units the landing sale wanted, what was on hand, and the difference. */
  wantedQty: number;
  onHandBefore: number;
  shortQty: number;
  /** Everyone involved, earliest occurrence first; `flaggedQty` > 0 for those to backorder or count. */
  sales: (StockTaker & { flaggedQty: number })[];
  flagged: { kind: StockTaker['kind']; ref: string; qty: number }[];
}

export interface OversellRaised {
  seq: number;
  sku: string;
  ref: string;
  shortQty: number;
  flagged: OversellDetail['flagged'];
}

/**
 * Who by occurrence time did not get their units: walk from the latest occurrence back, flagging units
 * until the shortfall is covered. Ties go to landing order (the earlier landed keeps the unit).
 */
export function assignShortfall(participants: StockTaker[], shortQty: number): OversellDetail['sales'] {
  const ordered = participants
    .map((p, landed) => ({ p, landed }))
    .sort((a, b) => a.p.occurredAt - b.p.occurredAt || a.landed - b.landed)
    .map(({ p }) => ({ ...p, flaggedQty: 0 }));
  let left = shortQty;
  for (let i = ordered.length - 1; i >= 0 && left > 0; i--) {
    const flag = Math.min(left, ordered[i]!.qty);
    ordered[i]!.flaggedQty = flag;
    left -= flag;
  }
  return ordered;
}

/**
 * Apply the stock moves of the records landing in one transaction, in landing order: lock the rows in
 * SKU order, work the changes out in memory, write each SKU's new on-hand once (SKU order), append the
 * moves, and raise an oversell exception where a sale wanted more than there was.
 */
export async function applyDeviceStockMoves(
  trx: Db,
  dialect: Dialect,
  moves: readonly DeviceStockMove[],
  nowMs: number,
): Promise<OversellRaised[]> {
  if (!moves.length) return [];
  const skus = [...new Set(moves.map((m) => m.sku))].sort();
  const onHand = await lockStock(trx, skus, nowMs);
  const rows: Insertable<StockMoveTable>[] = [];
  /** Sales of this transaction that took units, per SKU, in landing order. */
  const takenHere = new Map<string, StockTaker[]>();
  const raised: OversellRaised[] = [];
  const exceptions: Insertable<ExceptionTable>[] = [];
  const backorders = new Set<string>();

  for (const m of moves) {
    const before = onHand.get(m.sku) ?? 0;
    let applied = m.delta;
    let shortQty = 0;
    if (m.delta < 0) {
      const want = -m.delta;
      const take = Math.min(before, want);
      shortQty = want - take;
      applied = -take;
    }
    onHand.set(m.sku, before + applied);
    rows.push({
      sku: m.sku,
      qty: applied,
      short_qty: shortQty,
      reason: m.reason,
      ref: m.ref,
      device_id: m.deviceId,
      epoch: m.epoch,
      seq: m.seq,
      order_id: null,
      occurred_at: m.occurredAt,
      clock_trusted: m.clockTrusted ? 1 : 0,
      recorded_at: nowMs,
    });
    const self: StockTaker = {
      kind: 'sale',
      ref: m.ref,
      deviceId: m.deviceId,
      epoch: m.epoch,
      seq: m.seq,
      occurredAt: m.occurredAt,
      clockTrusted: m.clockTrusted,
      qty: -m.delta,
    };
    if (shortQty > 0) {
      const takers = await recentTakers(trx, m.sku, shortQty, takenHere.get(m.sku) ?? []);
      const sales = assignShortfall([...takers, self], shortQty);
      const flagged = sales
        .filter((s) => s.flaggedQty > 0)
        .map((s) => ({ kind: s.kind, ref: s.ref, qty: s.flaggedQty }));
      for (const f of flagged) if (f.kind === 'online_order') backorders.add(f.ref);
      const detail: OversellDetail = {
        sku: m.sku,
        wantedQty: -m.delta,
        onHandBefore: before,
        shortQty,
        sales,
        flagged,
      };
      exceptions.push({
        kind: 'oversell',
        device_id: m.deviceId,
        epoch: m.epoch,
        seq: m.seq,
        ref: m.ref.slice(0, 80),
        detail: JSON.stringify(detail),
        occurred_at: m.occurredAt,
        raised_at: nowMs,
        resolved_at: null,
        resolution: null,
      });
      raised.push({ seq: m.seq, sku: m.sku, ref: m.ref, shortQty, flagged });
    }
    if (m.delta < 0 && applied < 0) {
      const list = takenHere.get(m.sku) ?? [];
      list.push({ ...self, qty: -applied });
      takenHere.set(m.sku, list);
    }
  }

  await writeOnHand(trx, onHand, nowMs);
  await insertRows(trx, dialect, 'stock_moves', rows);
  await insertRows(trx, dialect, 'exceptions', exceptions);
  if (backorders.size) {
    await trx
      .updateTable('online_orders')
      .set({ status: 'backorder' })
      .where('order_id', 'in', [...backorders].sort())
      .execute();
  }
  return raised;
}

/**
 * The latest takers of a SKU, newest landed first, until they cover `shortQty` units: first those of the
 * transaction at hand (not written yet), then the books' moves.
 */
async function recentTakers(
  trx: Db,
  sku: string,
  shortQty: number,
  takenHere: readonly StockTaker[],
): Promise<StockTaker[]> {
  const takers: StockTaker[] = [];
  let covered = 0;
  for (let i = takenHere.length - 1; i >= 0 && covered < shortQty && takers.length < MAX_TAKERS; i--) {
    takers.push(takenHere[i]!);
    covered += takenHere[i]!.qty;
  }
  if (covered < shortQty && takers.length < MAX_TAKERS) {
    const rows = await trx
      .selectFrom('stock_moves')
      .select([
        'qty',
        'reason',
        'ref',
        'device_id',
        'epoch',
        'seq',
        'order_id',
        'occurred_at',
        'clock_trusted',
      ])
      .where('sku', '=', sku)
      .where('qty', '<', 0)
      .where('reason', 'in', ['sale', 'online_order'])
      .orderBy('id', 'desc')
      .limit(MAX_TAKERS - takers.length)
      .execute();
    for (const r of rows) {
      if (covered >= shortQty) break;
      takers.push(
        r.reason === 'online_order'
          ? { kind: 'online_order', ref: r.order_id ?? r.ref, occurredAt: r.occurred_at, qty: -r.qty }
          : {
              kind: 'sale',
              ref: r.ref,
              ...(r.device_id !== null ? { deviceId: r.device_id } : {}),
              ...(r.epoch !== null ? { epoch: r.epoch } : {}),
              ...(r.seq !== null ? { seq: r.seq } : {}),
              occurredAt: r.occurred_at,
              ...(r.clock_trusted !== null ? { clockTrusted: r.clock_trusted === 1 } : {}),
              qty: -r.qty,
            },
      );
      covered += -r.qty;
    }
  }
  // Landing order, oldest first, so ties in occurrence time keep it.
  return takers.reverse();
}

// ---- online orders ----

const Id = z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/);
const Sku = z.string().min(1).max(40);

export const OnlineOrderSchema = z
  .object({
    orderId: Id,
    storeId: Id,
    lines: z
      .array(z.object({ sku: Sku, qty: z.number().int().min(1).max(100_000) }).strict())
      .min(1)
      .max(200),
  })
  .strict();
export type OnlineOrderRequest = z.infer<typeof OnlineOrderSchema>;

export interface OnlineOrder {
  orderId: string;
  storeId: string;
  lines: { sku: string; qty: number }[];
  status: 'placed' | 'backorder';
  createdAt: number;
}

/**
 * Place an online order: every line's units come off stock in one transaction, or none do (STOCK_SHORT
 * names the SKUs short). Idempotent by orderId: the same order again answers `duplicate` with the order
 * as booked; the same id with other lines is ORDER_CONFLICT.
 */
export async function placeOnlineOrder(
  ldb: LedgerDb,
  request: OnlineOrderRequest,
  nowMs: number,
): Promise<{ status: 'placed' | 'duplicate'; order: OnlineOrder }> {
  const parsed = OnlineOrderSchema.safeParse(request);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LedgerError('BAD_PARAMS', `order: ${issue.path.join('.') || 'body'}: ${issue.message}`, {
      path: issue.path,
    });
  }
  const { orderId, storeId, lines } = parsed.data;
  const want = new Map<string, number>();
  for (const l of lines) want.set(l.sku, (want.get(l.sku) ?? 0) + l.qty);
  const skus = [...want.keys()].sort();
  const linesJson = canonicalJson(lines);

  return withTransactionRetry(() =>
    ldb.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('online_orders')
        .values({
          order_id: orderId,
          store_id: storeId,
          lines: linesJson,
          status: 'placed',
          created_at: nowMs,
        })
        .onConflict((oc) => oc.column('order_id').doNothing())
        .returning('order_id')
        .execute();
      if (!inserted.length) {
        const existing = await trx
          .selectFrom('online_orders')
          .selectAll()
          .where('order_id', '=', orderId)
          .executeTakeFirstOrThrow();
        if (existing.store_id !== storeId || existing.lines !== linesJson)
          throw new LedgerError('ORDER_CONFLICT', `order ${orderId} was placed with other lines`, {
            orderId,
          });
        return { status: 'duplicate' as const, order: orderRow(existing) };
      }
      const short: { sku: string; qty: number; onHand: number }[] = [];
      for (const sku of skus) {
        const qty = want.get(sku)!;
        // Conditional: the row lock is taken and the stock checked in one statement, in SKU order.
        const hit = await trx
          .updateTable('stock')
          .set((eb) => ({ on_hand: eb('on_hand', '-', qty), updated_at: nowMs }))
          .where('sku', '=', sku)
          .where('on_hand', '>=', qty)
          .returning('on_hand')
          .execute();
        if (!hit.length) {
          const row = await trx
            .selectFrom('stock')
            .select('on_hand')
            .where('sku', '=', sku)
            .executeTakeFirst();
          short.push({ sku, qty, onHand: row?.on_hand ?? 0 });
        }
      }
      if (short.length)
        throw new LedgerError('STOCK_SHORT', `not enough stock for ${short.map((s) => s.sku).join(', ')}`, {
          orderId,
          skus: short.map((s) => s.sku),
          short,
        });
      await trx
        .insertInto('stock_moves')
        .values(
          skus.map((sku) => ({
            sku,
            qty: -want.get(sku)!,
            short_qty: 0,
            reason: 'online_order' as const,
            ref: orderId,
            device_id: null,
            epoch: null,
            seq: null,
            order_id: orderId,
            occurred_at: nowMs,
            clock_trusted: null,
            recorded_at: nowMs,
          })),
        )
        .execute();
      return {
        status: 'placed' as const,
        order: { orderId, storeId, lines, status: 'placed' as const, createdAt: nowMs },
      };
    }),
  );
}

function orderRow(r: {
  order_id: string;
  store_id: string;
  lines: string;
  status: 'placed' | 'backorder';
  created_at: number;
}): OnlineOrder {
  return {
    orderId: r.order_id,
    storeId: r.store_id,
    lines: JSON.parse(r.lines) as OnlineOrder['lines'],
    status: r.status,
    createdAt: r.created_at,
  };
}

export async function getOnlineOrder(ldb: LedgerDb, orderId: string): Promise<OnlineOrder | null> {
  const row = await ldb.db
    .selectFrom('online_orders')
    .selectAll()
    .where('order_id', '=', orderId)
    .executeTakeFirst();
  return row ? orderRow(row) : null;
}

// ---- deliveries and counts (admin) ----

function checkSku(sku: string): void {
  if (!Sku.safeParse(sku).success)
    throw new LedgerError('BAD_PARAMS', 'a SKU is 1 to 40 characters', { sku });
}

function checkRef(ref: string): void {
  if (typeof ref !== 'string' || ref.length < 1 || ref.length > 80)
    throw new LedgerError('BAD_PARAMS', 'a reference is 1 to 80 characters', { ref });
}

/** Goods in: on-hand up by qty, as a `receive` move naming the delivery. */
export async function receiveStock(
  ldb: LedgerDb,
  sku: string,
  qty: number,
  ref: string,
  nowMs: number = Date.now(),
): Promise<{ sku: string; onHand: number }> {
  checkSku(sku);
  checkRef(ref);
  if (!Number.isSafeInteger(qty) || qty < 1 || qty > 10_000_000)
    throw new LedgerError('BAD_PARAMS', 'received quantity is 1 to 10,000,000', { qty });
  return withTransactionRetry(() =>
    ldb.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('stock')
        .values({ sku, on_hand: qty, updated_at: nowMs })
        .onConflict((oc) =>
          oc
            .column('sku')
            .doUpdateSet((eb) => ({ on_hand: eb('stock.on_hand', '+', qty), updated_at: nowMs })),
        )
        .returning('on_hand')
        .executeTakeFirstOrThrow();
      await trx
        .insertInto('stock_moves')
        .values(adminMove(sku, qty, 'receive', ref, nowMs))
        .execute();
      return { sku, onHand: row.on_hand };
    }),
  );
}

/** A count: on-hand set to what was counted, the difference as a `count` move. */
export async function setStock(
  ldb: LedgerDb,
  sku: string,
  onHand: number,
  ref: string,
  nowMs: number = Date.now(),
): Promise<{ sku: string; onHand: number; delta: number }> {
  checkSku(sku);
  checkRef(ref);
  if (!Number.isSafeInteger(onHand) || onHand < 0 || onHand > 10_000_000)
    throw new LedgerError('BAD_PARAMS', 'a count is 0 to 10,000,000', { onHand });
  return withTransactionRetry(() =>
    ldb.db.transaction().execute(async (trx) => {
      const before = (await lockStock(trx, [sku], nowMs)).get(sku) ?? 0;
      await trx
        .updateTable('stock')
        .set({ on_hand: onHand, updated_at: nowMs })
        .where('sku', '=', sku)
        .execute();
      await trx
        .insertInto('stock_moves')
        .values(adminMove(sku, onHand - before, 'count', ref, nowMs))
        .execute();
      return { sku, onHand, delta: onHand - before };
    }),
  );
}

function adminMove(
  sku: string,
  qty: number,
  reason: 'receive' | 'count',
  ref: string,
  nowMs: number,
): Insertable<StockMoveTable> {
  return {
    sku,
    qty,
    short_qty: 0,
    reason,
    ref,
    device_id: null,
    epoch: null,
    seq: null,
    order_id: null,
    occurred_at: nowMs,
    clock_trusted: null,
    recorded_at: nowMs,
  };
}

// ---- transactions ----

/** How often a transaction PostgreSQL chose as a deadlock or serialization victim is run again. */
const TRANSACTION_ATTEMPTS = 3;

/** PostgreSQL's "try again" answers: serialization failure, deadlock detected. */
export function isRetryableTxError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === '40001' || code === '40P01';
}

/** Run a transaction again when the database asks for it, a bounded number of times. */
export async function withTransactionRetry<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      if (isLedgerError(err) || !isRetryableTxError(err) || attempt >= TRANSACTION_ATTEMPTS) throw err;
    }
  }
}
