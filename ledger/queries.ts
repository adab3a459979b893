// Reading the books, and the few writes that are not journal records: device status, exception
// resolutions, a device's store, and the store documents (catalog, cashiers) the ledger publishes.
// Every list is bounded; rows come back in the shop's words (camelCase, money in minor units).
import type { Kysely, Selectable } from 'kysely';
import { z } from 'zod';
import { DeviceStatusSchema, WireId, MAX_PAYLOAD_BYTES } from '../cloud-bridge/protocol/wire.js';
import { CatalogSchema } from '../appliance/till/catalog.js';
import { CashierListSchema } from '../appliance/till/cashiers.js';
import type { LedgerDb } from './db/open.js';
import type {
  DeviceTable,
  ExceptionKind,
  ExceptionTable,
  LedgerSchema,
  SaleLineTable,
  SaleTable,
  TenderTable,
} from './db/schema.js';
import { LedgerError } from './errors.js';
import { judgeStatus } from './fleet/status-timing.js';

type Db = Kysely<LedgerSchema>;

/** Largest page of any list, rows: a screenful for people, a sane page for programs. */
const MAX_PAGE = 500;

function pageSize(limit: number | undefined, fallback = 100): number {
  if (limit === undefined) return fallback;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE)
    throw new LedgerError('BAD_PARAMS', `limit is 1 to ${MAX_PAGE}`, { limit });
  return limit;
}

function parseJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

// ---- stock ----

export interface StockLevel {
  sku: string;
  onHand: number;
  updatedAt: number;
}

export async function getStock(ldb: LedgerDb, sku: string): Promise<StockLevel | null> {
  const row = await ldb.db.selectFrom('stock').selectAll().where('sku', '=', sku).executeTakeFirst();
  return row ? { sku: row.sku, onHand: row.on_hand, updatedAt: row.updated_at } : null;
}

/** Stock levels in SKU order, a page at a time (`after`: the last SKU of the previous page). */
export async function listStock(
  ldb: LedgerDb,
  opts: { after?: string; limit?: number } = {},
): Promise<StockLevel[]> {
  const rows = await ldb.db
    .selectFrom('stock')
    .selectAll()
    .$if(opts.after !== undefined, (q) => q.where('sku', '>', opts.after!))
    .orderBy('sku')
    .limit(pageSize(opts.limit, MAX_PAGE))
    .execute();
  return rows.map((r) => ({ sku: r.sku, onHand: r.on_hand, updatedAt: r.updated_at }));
}

// ---- devices ----

export interface DeviceView {
  deviceId: string;
  storeId: string | null;
  lastSeen: number;
  online: boolean;
  /** Queue depth and the oldest unacked record's time, as the device last reported them. */
  pending: number | null;
  oldestPendingTs: number | null;
  /** What the ledger has acked, of which epoch. */
  lastAckedSeq: number;
  ackedEpoch: number | null;
  /** What the device says it has seen acked. */
  deviceAckedSeq: number | null;
  /** The device's epoch: as it reported it, else as its journal messages showed it. */
  epoch: number | null;
  version: string | null;
  clockTrusted: boolean | null;
}

function deviceView(r: Selectable<DeviceTable>): DeviceView {
  return {
    deviceId: r.device_id,
    storeId: r.store_id,
    lastSeen: r.last_seen,
    online: r.online === 1,
    pending: r.pending,
    oldestPendingTs: r.oldest_pending_ts,
    lastAckedSeq: r.last_acked_seq,
    ackedEpoch: r.acked_epoch,
    deviceAckedSeq: r.device_acked_seq,
    epoch: r.epoch ?? r.acked_epoch,
    version: r.version,
    clockTrusted: r.clock_trusted === null ? null : r.clock_trusted === 1,
  };
}

/** Fleet size the list returns at most: far beyond one store, a bound all the same. */
const MAX_DEVICES = 10_000;

export async function listDevices(ldb: LedgerDb, opts: { storeId?: string } = {}): Promise<DeviceView[]> {
  const rows = await ldb.db
    .selectFrom('devices')
    .selectAll()
    .$if(opts.storeId !== undefined, (q) => q.where('store_id', '=', opts.storeId!))
    .orderBy('device_id')
    .limit(MAX_DEVICES)
    .execute();
  return rows.map(deviceView);
}

export async function getDevice(ldb: LedgerDb, deviceId: string): Promise<DeviceView | null> {
  const row = await ldb.db
    .selectFrom('devices')
    .selectAll()
    .where('device_id', '=', deviceId)
    .executeTakeFirst();
  return row ? deviceView(row) : null;
}

/**
 * Take a device's retained status (or last will) off the `status` topic. The identity is the topic's.
 * An empty payload (a retained status being cleared) is no status: null. A status older than the one
 * stored (by the device's own `ts`) changes nothing; fields it leaves out keep their stored values.
 * Whether the device was heard from (its last seen moves) and what its clock's skew is are judged
 * from when the status arrived against the one before it (fleet/status-timing.ts): a last will, or a
 * retained status handed over again after a reconnect, says nothing about either.
 */
export async function recordDeviceStatus(
  ldb: LedgerDb,
  topicDeviceId: string,
  payload: Buffer | string,
  nowMs: number,
): Promise<DeviceView | null> {
  if (!WireId.safeParse(topicDeviceId).success)
    throw new LedgerError('BAD_STATUS', 'the topic names no valid device id', { deviceId: topicDeviceId });
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes === 0) return null;
  if (bytes > MAX_PAYLOAD_BYTES) throw new LedgerError('BAD_STATUS', 'the status payload is too large');
  let body: unknown;
  try {
    body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    throw new LedgerError('BAD_STATUS', 'the status payload is not JSON', { deviceId: topicDeviceId });
  }
  const parsed = DeviceStatusSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LedgerError('BAD_STATUS', `status: ${issue.path.join('.') || 'payload'}: ${issue.message}`, {
      deviceId: topicDeviceId,
    });
  }
  const s = parsed.data;
  await ldb.db.transaction().execute(async (trx) => {
    const stored = await trx
      .selectFrom('devices')
      .select(['status_ts', 'status_received_at', 'clock_skew_ms'])
      .where('device_id', '=', topicDeviceId)
      .executeTakeFirst();
    const before =
      stored && stored.status_ts !== null && stored.status_received_at !== null
        ? { ts: stored.status_ts, receivedAt: stored.status_received_at, clockSkewMs: stored.clock_skew_ms }
        : null;
    const judged = judgeStatus(before, s.ts, nowMs);
    // The same status again (a retained one handed over anew) was received when it first arrived.
    const receivedAt = s.ts === undefined ? null : s.ts === before?.ts ? before.receivedAt : nowMs;
    await trx
      .insertInto('devices')
      .values({
        device_id: topicDeviceId,
        // A device first known by this status: the receipt time is all there is to show.
        last_seen: nowMs,
        online: s.online ? 1 : 0,
        pending: s.pending ?? null,
        oldest_pending_ts: s.oldestPendingTs ?? null,
        device_acked_seq: s.lastAckedSeq ?? null,
        epoch: s.epoch ?? null,
        version: s.version ?? null,
        clock_trusted: s.clockTrusted === undefined ? null : s.clockTrusted ? 1 : 0,
        status_ts: s.ts ?? null,
        status_received_at: receivedAt,
        clock_skew_ms: judged.clockSkewMs,
      })
      .onConflict((oc) =>
        oc
          .column('device_id')
          .doUpdateSet((eb) => ({
            last_seen: judged.heard ? eb.ref('excluded.last_seen') : eb.ref('devices.last_seen'),
            online: eb.ref('excluded.online'),
            // A last will says only `online: false`: the rest stays as last reported.
            pending: eb.fn.coalesce('excluded.pending', 'devices.pending'),
            oldest_pending_ts:
              s.oldestPendingTs === null
                ? eb.val(null)
                : eb.fn.coalesce('excluded.oldest_pending_ts', 'devices.oldest_pending_ts'),
            device_acked_seq: eb.fn.coalesce('excluded.device_acked_seq', 'devices.device_acked_seq'),
            epoch: eb.fn.coalesce('excluded.epoch', 'devices.epoch'),
            version: eb.fn.coalesce('excluded.version', 'devices.version'),
            clock_trusted: eb.fn.coalesce('excluded.clock_trusted', 'devices.clock_trusted'),
            status_ts: eb.fn.coalesce('excluded.status_ts', 'devices.status_ts'),
            status_received_at: eb.fn.coalesce('excluded.status_received_at', 'devices.status_received_at'),
            clock_skew_ms: eb.ref('excluded.clock_skew_ms'),
          }))
          .where((eb) =>
            eb.or([
              eb('devices.status_ts', 'is', null),
              eb('excluded.status_ts', 'is', null),
              eb('devices.status_ts', '<=', eb.ref('excluded.status_ts')),
            ]),
          ),
      )
      .execute();
  });
  // A register names its store in its status; a change (a register moved to another store) is taken.
  const known = await getDevice(ldb, topicDeviceId);
  if (s.storeId && known && known.storeId !== s.storeId)
    return assignDeviceStore(ldb, topicDeviceId, s.storeId, nowMs);
  return known;
}

/** Say which store a device sells for; its sales and refunds booked without a store get it too. */
export async function assignDeviceStore(
  ldb: LedgerDb,
  deviceId: string,
  storeId: string,
  nowMs: number = Date.now(),
): Promise<DeviceView> {
  if (!WireId.safeParse(deviceId).success || !WireId.safeParse(storeId).success)
    throw new LedgerError('BAD_PARAMS', 'device and store ids are 1 to 64 of A-Z a-z 0-9 . _ -');
  await ldb.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('devices')
      .values({ device_id: deviceId, store_id: storeId, last_seen: nowMs })
      .onConflict((oc) => oc.column('device_id').doUpdateSet({ store_id: storeId }))
      .execute();
    await trx
      .updateTable('sales')
      .set({ store_id: storeId })
      .where('device_id', '=', deviceId)
      .where('store_id', 'is', null)
      .execute();
    await trx
      .updateTable('refunds')
      .set({ store_id: storeId })
      .where('device_id', '=', deviceId)
      .where('store_id', 'is', null)
      .execute();
  });
  return (await getDevice(ldb, deviceId))!;
}

// ---- sales ----

export interface SaleSummary {
  saleId: string;
  deviceId: string;
  epoch: number;
  seq: number;
  storeId: string | null;
  receiptNo: number;
  shiftId: string;
  cashierId: string;
  cashierName: string;
  currency: string;
  taxMode: string;
  subtotalMinor: number;
  discountMinor: number;
  taxMinor: number;
  totalMinor: number;
  roundingMinor: number;
  paidMinor: number;
  changeMinor: number;
  voidedLines: number;
  voidedMinor: number;
  basketDiscount: unknown;
  taxes: unknown;
  startedAt: number;
  completedAt: number;
  clock: 'trusted' | 'untrusted';
  bookedAt: number;
}

export interface SaleLineView {
  lineId: string;
  sku: string;
  name: string;
  qty: number;
  unitMinor: number;
  taxClass: string;
  discount: unknown;
  openPrice: boolean;
  grossMinor: number;
  discountMinor: number;
  netMinor: number;
  taxMinor: number;
}

export interface TenderView {
  kind: 'cash' | 'card';
  amountMinor: number;
  txn: string | null;
  mode: string | null;
  authCode: string | null;
  maskedPan: string | null;
  brand: string | null;
}

export type SaleView = SaleSummary & { lines: SaleLineView[]; tenders: TenderView[] };

function saleSummary(r: Selectable<SaleTable>): SaleSummary {
  return {
    saleId: r.sale_id,
    deviceId: r.device_id,
    epoch: r.epoch,
    seq: r.seq,
    storeId: r.store_id,
    receiptNo: r.receipt_no,
    shiftId: r.shift_id,
    cashierId: r.cashier_id,
    cashierName: r.cashier_name,
    currency: r.currency,
    taxMode: r.tax_mode,
    subtotalMinor: r.subtotal_minor,
    discountMinor: r.discount_minor,
    taxMinor: r.tax_minor,
    totalMinor: r.total_minor,
    roundingMinor: r.rounding_minor,
    paidMinor: r.paid_minor,
    changeMinor: r.change_minor,
    voidedLines: r.voided_lines,
    voidedMinor: r.voided_minor,
    basketDiscount: parseJson(r.basket_discount),
    taxes: parseJson(r.taxes),
    startedAt: r.started_at,
    completedAt: r.completed_at,
    clock: r.clock,
    bookedAt: r.booked_at,
  };
}

function lineView(r: Selectable<SaleLineTable>): SaleLineView {
  return {
    lineId: r.line_id,
    sku: r.sku,
    name: r.name,
    qty: r.qty,
    unitMinor: r.unit_minor,
    taxClass: r.tax_class,
    discount: parseJson(r.discount),
    openPrice: r.open_price === 1,
    grossMinor: r.gross_minor,
    discountMinor: r.discount_minor,
    netMinor: r.net_minor,
    taxMinor: r.tax_minor,
  };
}

function tenderView(r: Selectable<TenderTable>): TenderView {
  return {
    kind: r.kind,
    amountMinor: r.amount_minor,
    txn: r.txn,
    mode: r.mode,
    authCode: r.auth_code,
    maskedPan: r.masked_pan,
    brand: r.brand,
  };
}

/** `before` of the next page: the last sale's completion time and id. */
const SaleCursor = z.string().regex(/^(\d{1,16}):(.{1,128})$/);

/**
 * Sales, latest first (by when they happened on the device), a page at a time: pass the answer's `next`
 * as `before` for the page after.
 */
export async function listSales(
  ldb: LedgerDb,
  opts: { storeId?: string; deviceId?: string; limit?: number; before?: string } = {},
): Promise<{ sales: SaleSummary[]; next: string | null }> {
  const limit = pageSize(opts.limit);
  let before: { at: number; saleId: string } | undefined;
  if (opts.before !== undefined) {
    if (!SaleCursor.safeParse(opts.before).success)
      throw new LedgerError('BAD_PARAMS', 'before is the `next` of a previous page', { before: opts.before });
    const at = opts.before.indexOf(':');
    before = { at: Number(opts.before.slice(0, at)), saleId: opts.before.slice(at + 1) };
  }
  const rows = await ldb.db
    .selectFrom('sales')
    .selectAll()
    .$if(opts.storeId !== undefined, (q) => q.where('store_id', '=', opts.storeId!))
    .$if(opts.deviceId !== undefined, (q) => q.where('device_id', '=', opts.deviceId!))
    .$if(before !== undefined, (q) =>
      q.where((eb) =>
        eb.or([
          eb('completed_at', '<', before!.at),
          eb.and([eb('completed_at', '=', before!.at), eb('sale_id', '<', before!.saleId)]),
        ]),
      ),
    )
    .orderBy('completed_at', 'desc')
    .orderBy('sale_id', 'desc')
    .limit(limit + 1)
    .execute();
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    sales: page.map(saleSummary),
    next: rows.length > limit && last ? `${last.completed_at}:${last.sale_id}` : null,
  };
}

export async function getSale(ldb: LedgerDb, saleId: string): Promise<SaleView | null> {
  const row = await ldb.db.selectFrom('sales').selectAll().where('sale_id', '=', saleId).executeTakeFirst();
  if (!row) return null;
  const [lines, tenders] = await Promise.all([
    ldb.db.selectFrom('sale_lines').selectAll().where('sale_id', '=', saleId).orderBy('line_no').execute(),
    ldb.db.selectFrom('tenders').selectAll().where('sale_id', '=', saleId).orderBy('tender_no').execute(),
  ]);
  return { ...saleSummary(row), lines: lines.map(lineView), tenders: tenders.map(tenderView) };
}

// ---- exceptions ----

export interface ExceptionView {
  id: number;
  kind: ExceptionKind;
  deviceId: string | null;
  epoch: number | null;
  seq: number | null;
  ref: string;
  detail: unknown;
  occurredAt: number;
  raisedAt: number;
  resolvedAt: number | null;
  resolution: string | null;
}

function exceptionView(r: Selectable<ExceptionTable>): ExceptionView {
  return {
    id: r.id,
    kind: r.kind,
    deviceId: r.device_id,
    epoch: r.epoch,
    seq: r.seq,
    ref: r.ref,
    detail: parseJson(r.detail),
    occurredAt: r.occurred_at,
    raisedAt: r.raised_at,
    resolvedAt: r.resolved_at,
    resolution: r.resolution,
  };
}

export const EXCEPTION_KINDS = ['oversell', 'saf_declined', 'quarantine', 'chain_break', 'gap'] as const;

/** Exceptions, latest raised first; `open` true for unresolved only, false for resolved only. */
export async function listExceptions(
  ldb: LedgerDb,
  opts: { kind?: ExceptionKind; open?: boolean; deviceId?: string; limit?: number; before?: number } = {},
): Promise<ExceptionView[]> {
  if (opts.kind !== undefined && !(EXCEPTION_KINDS as readonly string[]).includes(opts.kind))
    throw new LedgerError('BAD_PARAMS', `kind is one of ${EXCEPTION_KINDS.join(', ')}`, { kind: opts.kind });
  const rows = await ldb.db
    .selectFrom('exceptions')
    .selectAll()
    .$if(opts.kind !== undefined, (q) => q.where('kind', '=', opts.kind!))
    .$if(opts.open === true, (q) => q.where('resolved_at', 'is', null))
    .$if(opts.open === false, (q) => q.where('resolved_at', 'is not', null))
    .$if(opts.deviceId !== undefined, (q) => q.where('device_id', '=', opts.deviceId!))
    .$if(opts.before !== undefined, (q) => q.where('id', '<', opts.before!))
    .orderBy('id', 'desc')
    .limit(pageSize(opts.limit))
    .execute();
  return rows.map(exceptionView);
}

/** Close an exception with what was done about it (a backorder, a count, a call to the bank). */
export async function resolveException(
  ldb: LedgerDb,
  id: number,
  resolution: string,
  nowMs: number = Date.now(),
): Promise<ExceptionView> {
  if (typeof resolution !== 'string' || resolution.trim().length < 1 || resolution.length > 500)
    throw new LedgerError('BAD_PARAMS', 'a resolution is 1 to 500 characters');
  if (!Number.isSafeInteger(id)) throw new LedgerError('BAD_PARAMS', 'an exception id is an integer', { id });
  return ldb.db.transaction().execute(async (trx) => {
    const done = await trx
      .updateTable('exceptions')
      .set({ resolved_at: nowMs, resolution })
      .where('id', '=', id)
      .where('resolved_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
    if (done) return exceptionView(done);
    const row = await trx.selectFrom('exceptions').select('id').where('id', '=', id).executeTakeFirst();
    throw row
      ? new LedgerError('ALREADY_RESOLVED', `exception ${id} is resolved already`, { id })
      : new LedgerError('NOT_FOUND', `no exception ${id}`, { id });
  });
}

// ---- store documents ----

export type StoreDocumentKind = 'catalog' | 'cashiers';

export interface StoreDocument {
  storeId: string;
  kind: StoreDocumentKind;
  version: number;
  body: unknown;
  publishedAt: number;
}

const DOCUMENT_SCHEMAS = { catalog: CatalogSchema, cashiers: CashierListSchema } as const;

/**
 * Store a new version of a store's catalog or cashier list, validated as the registers will validate
 * it. The version must be greater than any stored (VERSION_NOT_NEWER), so a retained document never
 * goes back in time; the body's storeId must be the store's. Returns the stored document.
 */
export async function putStoreDocument(
  ldb: LedgerDb,
  storeId: string,
  kind: StoreDocumentKind,
  body: unknown,
  nowMs: number = Date.now(),
): Promise<StoreDocument> {
  if (!WireId.safeParse(storeId).success)
    throw new LedgerError('BAD_PARAMS', 'a store id is 1 to 64 of A-Z a-z 0-9 . _ -', { storeId });
  const schema = DOCUMENT_SCHEMAS[kind];
  if (!schema) throw new LedgerError('BAD_PARAMS', 'kind is catalog or cashiers', { kind });
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LedgerError('BAD_DOCUMENT', `${kind}: ${issue.path.join('.') || 'body'}: ${issue.message}`, {
      path: issue.path,
    });
  }
  const doc = parsed.data;
  if (doc.storeId !== storeId)
    throw new LedgerError('BAD_DOCUMENT', `the ${kind} is for store ${doc.storeId}, not ${storeId}`);
  const text = JSON.stringify(doc);
  return ldb.db.transaction().execute(async (trx) => {
    const newest = await newestDocument(trx, storeId, kind);
    const inserted =
      newest && newest.version >= doc.version
        ? []
        : await trx
            .insertInto('store_documents')
            .values({ store_id: storeId, kind, version: doc.version, body: text, published_at: nowMs })
            // Two at once with one version: the second is not newer.
            .onConflict((oc) => oc.columns(['store_id', 'kind', 'version']).doNothing())
            .returning('version')
            .execute();
    if (!inserted.length)
      throw new LedgerError(
        'VERSION_NOT_NEWER',
        `${kind} version ${doc.version} is not newer than the stored version ${newest?.version ?? doc.version}`,
        { storedVersion: newest?.version ?? doc.version, version: doc.version },
      );
    return { storeId, kind, version: doc.version, body: doc, publishedAt: nowMs };
  });
}

async function newestDocument(db: Db, storeId: string, kind: StoreDocumentKind) {
  return db
    .selectFrom('store_documents')
    .selectAll()
    .where('store_id', '=', storeId)
    .where('kind', '=', kind)
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** The newest version of a store's catalog or cashier list, or null. */
export async function getStoreDocument(
  ldb: LedgerDb,
  storeId: string,
  kind: StoreDocumentKind,
): Promise<StoreDocument | null> {
  const row = await newestDocument(ldb.db, storeId, kind);
  return row
    ? {
        storeId: row.store_id,
        kind: row.kind,
        version: row.version,
        body: JSON.parse(row.body),
        publishedAt: row.published_at,
      }
    : null;
}

/** Every store's newest documents (the publisher republishes them retained after a reconnect). */
export async function listStoreDocuments(ldb: LedgerDb): Promise<StoreDocument[]> {
  const rows = await ldb.db
    .selectFrom('store_documents as d')
    .selectAll('d')
    .where(({ eb, selectFrom }) =>
      eb(
        'd.version',
        '=',
        selectFrom('store_documents as n')
          .select((e) => e.fn.max('n.version').as('v'))
          .whereRef('n.store_id', '=', 'd.store_id')
          .whereRef('n.kind', '=', 'd.kind'),
      ),
    )
    .orderBy('d.store_id')
    .orderBy('d.kind')
    .limit(MAX_DEVICES)
    .execute();
  return rows.map((row) => ({
    storeId: row.store_id,
    kind: row.kind,
    version: row.version,
    body: JSON.parse(row.body),
    publishedAt: row.published_at,
  }));
}
