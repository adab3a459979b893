// Ingest: one journal message from a register into the books, exactly once (Invariants 2, 5, 7).
//
// A message is checked as a whole (size → JSON → envelope → the topic's device), then its records one
// by one in seq order against the device's cursor for that epoch: a duplicate is counted and acked, a
// gap waits (alarm once, nothing past it applies), a record at the cursor has its hash and chain checked
// and is booked — sales, tenders, refunds, shifts, cash, card holds, stock — with its inbox row and the
// cursor advance in the same transaction. A record that cannot be booked is quarantined with a code and
// acked as rejected, so the records behind it keep flowing.
//
// Speed: all of a message's records go in one transaction; if the database refuses something in it, the
// message is done again one record per transaction, and only the record the database refuses is
// rejected (CANNOT_APPLY). Failures that are not about the data (connection lost) are thrown: the
// message is not acked and comes again.
import { createHash } from 'node:crypto';
import type { Insertable, Kysely } from 'kysely';
import { z } from 'zod';
import {
  AckSchema,
  BATCH_LIMITS,
  MAX_PAYLOAD_BYTES,
  WIRE_VERSION,
  WireId,
  isWireRecord,
  type Ack,
  type RejectCode,
} from '../cloud-bridge/protocol/wire.js';
import { dedupId, genesisHash, recordHash, type JournalRecord } from '../cloud-bridge/protocol/record.js';
import type { LedgerDb } from './db/open.js';
import type {
  CardOfflineTable,
  CashMovementTable,
  ExceptionTable,
  InboxTable,
  LedgerSchema,
  QuarantineTable,
  RefundLineTable,
  RefundTable,
  SaleLineTable,
  SaleTable,
  ShiftTable,
  TenderTable,
  UnhandledEventTable,
  ZReportTable,
} from './db/schema.js';
import { applyDeviceStockMoves, withTransactionRetry, type DeviceStockMove } from './stock.js';
import { insertRows } from './db/bulk.js';

type Db = Kysely<LedgerSchema>;

export interface ApplyOutcome {
  /** To publish retained on pos/v1/d/{device}/ack; null when no epoch of the device is known. */
  ack: Ack | null;
  applied: number;
  duplicates: number;
  /** Beyond a gap: not applicable yet, not acked; the device sends them again in order. */
  ignored: number;
  rejected: { seq?: number; code: RejectCode }[];
  /** Alarms raised by this message (each is raised once, not again on a resend). */
  alarms: { kind: 'gap' | 'chain_break'; seq: number }[];
}

/** Bounds on what quarantine keeps. A record is kept whole up to 64 KiB (a 200-line sale is ~40 KiB). */
const RECORD_EXCERPT_BYTES = 64 * 1024;
/** A message that could not be read is kept as its first 4 KiB: enough to see what it was. */
const MESSAGE_EXCERPT_BYTES = 4 * 1024;
/** An unknown event is kept up to this size. */
const UNHANDLED_BODY_BYTES = 64 * 1024;
/** How many rejections and exceptions an ack lists (AckSchema's bound). */
const ACK_LIST = 100;

const HEX64 = /^[0-9a-f]{64}$/;

// ---- the message ----

const EnvelopeSchema = z
  .object({
    v: z.literal(WIRE_VERSION),
    deviceId: WireId,
    epoch: z.number().int().min(1).max(0xffffffff),
    records: z.array(z.unknown()).min(1).max(BATCH_LIMITS.maxRecords),
  })
  .strict();

/** A record of the message: schema-valid (`record`, its own hash checked) or only with a usable seq. */
interface Candidate {
  seq: number;
  raw: unknown;
  record?: JournalRecord;
  /** The record's hash is the hash of its body and prevHash (whether it links to the chain is the books'). */
  hashOk?: boolean;
}

interface Ctx {
  deviceId: string;
  epoch: number;
  nowMs: number;
  dialect: LedgerDb['dialect'];
}

export interface ApplyOptions {
  /**
   * Called once the payload is known good, before anything is written, with where its records start;
   * a shared consumer waits here for the device's batch before it (ledger/seq-order.ts).
   */
  awaitTurn?: (deviceId: string, epoch: number, firstSeq: number) => Promise<void>;
}

/**
 * A journal message checked as far as it can be without the books: size, JSON, envelope, the topic's
 * device, each record's schema and its own hash. Pure CPU, so a consumer does it as the message
 * arrives, while the device's message before it is still in its transaction (ledger/consumer.ts): the
 * two overlap instead of taking turns.
 */
export class CheckedJournalMessage {
  private constructor(
    readonly topicDeviceId: string,
    readonly payload: Buffer | string,
    readonly bytes: number,
    /** Set when the message as a whole is refused (nothing of it can be booked). */
    readonly refused: { code: RejectCode; epochHint: number | undefined } | null,
    readonly epoch: number,
    /** Records with a usable seq, sorted by it. */
    readonly candidates: Candidate[],
    /** Records without a seq to place them by: quarantined, and the cursor shows the hole they leave. */
    readonly unplaced: unknown[],
  ) {}

  static check(topicDeviceId: string, payload: Buffer | string): CheckedJournalMessage {
    const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    const refuse = (code: RejectCode, epochHint?: number) =>
      new CheckedJournalMessage(topicDeviceId, payload, bytes, { code, epochHint }, 0, [], []);

    if (bytes > MAX_PAYLOAD_BYTES) return refuse('TOO_LARGE');
    let body: unknown;
    try {
      body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
    } catch {
      return refuse('BAD_JSON');
    }
    const envelope = EnvelopeSchema.safeParse(body);
    if (!envelope.success) return refuse('BAD_SCHEMA', usableEpoch(body, topicDeviceId));
    const { deviceId, epoch, records } = envelope.data;
    // The topic is the device's identity (the broker's ACL vouches for it); a payload naming another is refused.
    if (deviceId !== topicDeviceId) return refuse('DEVICE_MISMATCH');

    const candidates: Candidate[] = [];
    const unplaced: unknown[] = [];
    for (const raw of records) {
      if (isWireRecord(raw)) {
        // Hash and book the record as received: a parse's copy could differ in ways JCS would see.
        const record = raw as JournalRecord;
        const hashOk = recordHash(record.prevHash, record) === record.hash;
        candidates.push({ seq: record.seq, raw, record, hashOk });
        continue;
      }
      const seq = (raw as { seq?: unknown } | null)?.seq;
      if (typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 1) candidates.push({ seq, raw });
      else unplaced.push(raw);
    }
    candidates.sort((a, b) => a.seq - b.seq);
    return new CheckedJournalMessage(topicDeviceId, payload, bytes, null, epoch, candidates, unplaced);
  }
}

/**
 * Book one journal message from `topicDeviceId` (its payload, or the payload already checked with
 * CheckedJournalMessage.check) and answer with the device's ack.
 */
export async function applyJournalMessage(
  ldb: LedgerDb,
  topicDeviceId: string,
  message: Buffer | string | CheckedJournalMessage,
  nowMs: number,
  opts: ApplyOptions = {},
): Promise<ApplyOutcome> {
  const checked =
    message instanceof CheckedJournalMessage ? message : CheckedJournalMessage.check(topicDeviceId, message);
  if (checked.topicDeviceId !== topicDeviceId) {
    throw new Error(`a message checked for ${checked.topicDeviceId} applied for ${topicDeviceId}`);
  }
  const outcome: ApplyOutcome = {
    ack: null,
    applied: 0,
    duplicates: 0,
    ignored: 0,
    rejected: [],
    alarms: [],
  };
  if (checked.refused) {
    const { code, epochHint } = checked.refused;
    await quarantineMessage(
      ldb,
      topicDeviceId,
      checked.payload,
      checked.bytes,
      code,
      epochHint ?? null,
      nowMs,
    );
    outcome.rejected.push({ code });
    outcome.ack = await finishAck(ldb, topicDeviceId, epochHint, nowMs);
    return outcome;
  }
  const { epoch, candidates } = checked;
  const deviceId = topicDeviceId;
  for (const raw of checked.unplaced) {
    await quarantineMessage(ldb, deviceId, JSON.stringify(raw) ?? '', 0, 'BAD_SCHEMA', epoch, nowMs);
    outcome.rejected.push({ code: 'BAD_SCHEMA' });
  }
  const ctx: Ctx = { deviceId, epoch, nowMs, dialect: ldb.dialect };
  if (candidates.length && opts.awaitTurn) await opts.awaitTurn(deviceId, epoch, candidates[0]!.seq);

  let lastSeq: number | undefined;
  let ackInTransaction: Ack | null = null;
  if (candidates.length) {
    let run: RunResult;
    try {
      run = await withTransactionRetry(() => applyRun(ldb, ctx, candidates, null));
    } catch (err) {
      if (!(err instanceof InboxConflict) && !isDataError(err)) throw err;
      run = await applyOneByOne(ldb, ctx, candidates);
    }
    outcome.applied += run.applied;
    outcome.duplicates += run.duplicates;
    outcome.ignored += run.ignored;
    outcome.rejected.push(...run.rejected);
    outcome.alarms.push(...run.alarms);
    lastSeq = run.lastSeq;
    ackInTransaction = run.ack;
  }
  // Only a message that moved its epoch's cursor speaks for the device's current epoch; a resend of
  // duplicates may be a stale one from before a journal reset.
  const moved = outcome.applied > 0 || outcome.rejected.length > 0;
  if (moved && ackInTransaction) {
    outcome.ack = ackInTransaction;
    return outcome;
  }
  outcome.ack = await finishAck(
    ldb,
    deviceId,
    epoch,
    nowMs,
    lastSeq === undefined || !moved ? undefined : { epoch, lastSeq },
  );
  return outcome;
}

/** The epoch of a payload that failed its schema, when it still names one and not another device. */
function usableEpoch(body: unknown, topicDeviceId: string): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const { epoch, deviceId } = body as { epoch?: unknown; deviceId?: unknown };
  if (deviceId !== undefined && deviceId !== topicDeviceId) return undefined;
  return typeof epoch === 'number' && Number.isSafeInteger(epoch) && epoch >= 1 && epoch <= 0xffffffff
    ? epoch
    : undefined;
}

async function applyOneByOne(ldb: LedgerDb, ctx: Ctx, candidates: Candidate[]): Promise<RunResult> {
  const total = emptyRun();
  for (const c of candidates) {
    let run: RunResult;
    try {
      run = await withTransactionRetry(() => applyRun(ldb, ctx, [c], null));
    } catch (err) {
      if (!(err instanceof InboxConflict) && !isDataError(err)) throw err;
      const why = String((err as Error)?.message ?? err).slice(0, 500);
      run = await withTransactionRetry(() => applyRun(ldb, ctx, [c], { seq: c.seq, why }));
    }
    total.applied += run.applied;
    total.duplicates += run.duplicates;
    total.ignored += run.ignored;
    total.rejected.push(...run.rejected);
    total.alarms.push(...run.alarms);
    total.lastSeq = run.lastSeq;
    total.ack = run.ack ?? total.ack;
  }
  return total;
}

/** The database refused the data (a constraint, a value out of range), not the connection. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string') return false;
  if (/^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code)) return true;
  // PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
  return /^2[23][0-9A-Z]{3}$/.test(code);
}

/** The inbox already holds a record the cursor does not cover: redone record by record. */
class InboxConflict extends Error {}

// ---- one transaction ----

interface RunResult {
  /** Where the cursor of the message's epoch stands after the run. */
  lastSeq: number;
  applied: number;
  duplicates: number;
  ignored: number;
  rejected: { seq: number; code: RejectCode }[];
  alarms: { kind: 'gap' | 'chain_break'; seq: number }[];
  /** The device's ack as this transaction left the books, when it moved the cursor. */
  ack: Ack | null;
}

const emptyRun = (): RunResult => ({
  ack: null,
  lastSeq: 0,
  applied: 0,
  duplicates: 0,
  ignored: 0,
  rejected: [],
  alarms: [],
});

/**
 * Apply candidates (sorted by seq) in one transaction. `force` rejects one record as CANNOT_APPLY
 * whatever it holds: the database refused its rows in a transaction of its own.
 */
async function applyRun(
  ldb: LedgerDb,
  ctx: Ctx,
  candidates: Candidate[],
  force: { seq: number; why: string } | null,
): Promise<RunResult> {
  return ldb.db.transaction().execute(async (trx) => {
    const result = emptyRun();
    const cursor = await lockCursor(trx, ldb.dialect, ctx);
    const books = new Books(ctx, cursor.store_id);
    let expected = cursor.last_seq + 1;
    let lastHash = cursor.last_hash;
    let gapFrom = cursor.gap_from;

    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      if (c.seq < expected) {
        result.duplicates++;
        continue;
      }
      if (c.seq > expected) {
        result.ignored += candidates.length - i;
        // Raised once per hole: a resend of what lies past it finds the alarm open on the cursor.
        if (gapFrom !== expected) {
          await raiseGap(trx, ctx, expected, c.seq);
          result.alarms.push({ kind: 'gap', seq: expected });
          gapFrom = expected;
        }
        break;
      }
      expected++;
      const rec = c.record;
      const statedHash = (c.raw as { hash?: unknown })?.hash;
      if (!rec) {
        books.reject(c, 'BAD_SCHEMA', { why: 'the record does not match the wire schema' });
        // The chain goes on from the hash it states, if it states one; if not, the next link is not checkable.
        lastHash = typeof statedHash === 'string' && HEX64.test(statedHash) ? statedHash : '';
      } else if (force && force.seq === c.seq) {
        books.reject(c, 'CANNOT_APPLY', { why: force.why });
        lastHash = rec.hash;
      } else if (!c.hashOk) {
        books.reject(c, 'BAD_HASH', { why: 'the hash does not match the record' });
        lastHash = rec.hash;
      } else if (lastHash !== '' && rec.prevHash !== lastHash) {
        books.reject(
          c,
          'CHAIN_BREAK',
          { why: 'prevHash is not the hash of the record before', expectedPrevHash: lastHash },
          'chain_break',
        );
        result.alarms.push({ kind: 'chain_break', seq: c.seq });
        lastHash = rec.hash;
      } else {
        const mark = books.mark();
        try {
          bookRecord(books, rec);
          books.inbox.push(inboxRow(ctx, rec.seq, rec.hash, 'applied'));
          result.applied++;
        } catch (err) {
          if (!(err instanceof Unbookable)) throw err;
          books.reset(mark);
          books.reject(c, 'CANNOT_APPLY', { why: err.message });
        }
        lastHash = rec.hash;
      }
    }
    for (const r of books.quarantine) result.rejected.push({ seq: r.seq!, code: r.code as RejectCode });

    const lastSeq = expected - 1;
    if (cursor.gap_from !== null && cursor.gap_from <= lastSeq) {
      // The hole is filled: the alarm is over.
      await trx
        .updateTable('exceptions')
        .set({ resolved_at: ctx.nowMs, resolution: 'filled: the missing records arrived' })
        .where('device_id', '=', ctx.deviceId)
        .where('epoch', '=', ctx.epoch)
        .where('kind', '=', 'gap')
        .where('seq', '<=', lastSeq)
        .where('resolved_at', 'is', null)
        .execute();
      if (gapFrom === cursor.gap_from) gapFrom = null;
    }
    if (lastSeq > cursor.last_seq || gapFrom !== cursor.gap_from) {
      if (await books.insertInbox(trx)) {
        // One record the inbox holds already: a duplicate, whatever the cursor said. Skip its rows.
        result.duplicates++;
        result.applied = 0;
        result.rejected.length = 0;
        result.alarms = result.alarms.filter((a) => a.kind === 'gap');
      } else {
        await books.write(trx);
      }
      await trx
        .updateTable('device_cursors')
        .set({ last_seq: lastSeq, last_hash: lastHash, gap_from: gapFrom, updated_at: ctx.nowMs })
        .where('device_id', '=', ctx.deviceId)
        .where('epoch', '=', ctx.epoch)
        .execute();
      if (lastSeq > cursor.last_seq) {
        // The ack and the fleet page's note, in the transaction that moved the cursor: no round trips
        // (and no commit of its own) after it.
        await noteAcked(trx, ctx.deviceId, ctx.epoch, lastSeq, ctx.nowMs);
        result.ack = await assembleAck(
          trx,
          ctx.deviceId,
          ctx.epoch,
          { epoch: ctx.epoch, last_seq: lastSeq },
          undefined,
        );
      }
    }
    result.lastSeq = lastSeq;
    return result;
  });
}

/**
 * The cursor of (device, epoch), created at 0 from the epoch's genesis hash, locked for this transaction
 * (one device's messages apply one at a time, whichever consumer has them), with the device's store.
 */
async function lockCursor(
  trx: Db,
  dialect: LedgerDb['dialect'],
  ctx: Ctx,
): Promise<{ last_seq: number; last_hash: string; gap_from: number | null; store_id: string | null }> {
  const read = () =>
    trx
      .selectFrom('device_cursors as c')
      .leftJoin('devices as d', 'd.device_id', 'c.device_id')
      .select(['c.last_seq', 'c.last_hash', 'c.gap_from', 'd.store_id'])
      .where('c.device_id', '=', ctx.deviceId)
      .where('c.epoch', '=', ctx.epoch)
      .$if(dialect === 'postgres', (q) => q.forUpdate('c'))
      .executeTakeFirst();
  const found = await read();
  if (found) return found;
  // A new epoch (a new device, or its journal was reset) starts its own chain; older epochs' cursors stay.
  await trx
    .insertInto('device_cursors')
    .values({
      device_id: ctx.deviceId,
      epoch: ctx.epoch,
      last_seq: 0,
      last_hash: genesisHash(ctx.deviceId, ctx.epoch),
      gap_from: null,
      updated_at: ctx.nowMs,
    })
    .onConflict((oc) => oc.columns(['device_id', 'epoch']).doNothing())
    .execute();
  return (await read())!;
}

/** Raise the gap alarm: records from `from` on are missing. */
async function raiseGap(trx: Db, ctx: Ctx, from: number, received: number): Promise<void> {
  await trx
    .insertInto('exceptions')
    .values({
      kind: 'gap',
      device_id: ctx.deviceId,
      epoch: ctx.epoch,
      seq: from,
      ref: recordRef(ctx, from),
      detail: JSON.stringify({ missingFrom: from, missingThrough: received - 1, received }),
      occurred_at: ctx.nowMs,
      raised_at: ctx.nowMs,
      resolved_at: null,
      resolution: null,
    })
    .execute();
}

function recordRef(ctx: Ctx, seq: number): string {
  const id = dedupId(ctx.deviceId, ctx.epoch, seq);
  return id.length <= 80 ? id : `${ctx.epoch}:${seq}`;
}

function inboxRow(
  ctx: Ctx,
  seq: number,
  hash: string,
  outcome: InboxTable['outcome'],
): Insertable<InboxTable> {
  return { device_id: ctx.deviceId, epoch: ctx.epoch, seq, hash, received_at: ctx.nowMs, outcome };
}

// ---- the books one transaction writes ----

class Unbookable extends Error {}

interface ShiftClose {
  row: Insertable<ShiftTable>;
}

interface SafOutcome {
  row: Insertable<CardOfflineTable>;
  declined: boolean;
  detail: { txn: string; saleId?: string; amountMinor?: number; currency?: string; receiptNo?: number };
  message?: string;
  seq: number;
  occurredAt: number;
}

/** Rows gathered for one transaction, written table by table (parents before children). */
class Books {
  readonly inbox: Insertable<InboxTable>[] = [];
  readonly sales: Insertable<SaleTable>[] = [];
  readonly saleLines: Insertable<SaleLineTable>[] = [];
  readonly tenders: Insertable<TenderTable>[] = [];
  readonly refunds: Insertable<RefundTable>[] = [];
  readonly refundLines: Insertable<RefundLineTable>[] = [];
  readonly shiftsOpened: Insertable<ShiftTable>[] = [];
  readonly shiftsClosed: ShiftClose[] = [];
  readonly zReports: Insertable<ZReportTable>[] = [];
  readonly cash: Insertable<CashMovementTable>[] = [];
  readonly cardHeld: Insertable<CardOfflineTable>[] = [];
  readonly cardSaf: SafOutcome[] = [];
  readonly stockMoves: DeviceStockMove[] = [];
  readonly unhandled: Insertable<UnhandledEventTable>[] = [];
  readonly quarantine: Insertable<QuarantineTable>[] = [];
  readonly exceptions: Insertable<ExceptionTable>[] = [];

  constructor(
    readonly ctx: Ctx,
    readonly storeId: string | null,
  ) {}

  private lists(): unknown[][] {
    return [
      this.inbox,
      this.sales,
      this.saleLines,
      this.tenders,
      this.refunds,
      this.refundLines,
      this.shiftsOpened,
      this.shiftsClosed,
      this.zReports,
      this.cash,
      this.cardHeld,
      this.cardSaf,
      this.stockMoves,
      this.unhandled,
      this.quarantine,
      this.exceptions,
    ];
  }

  /** Where every list stands, to drop a record's rows again when it turns out unbookable. */
  mark(): number[] {
    return this.lists().map((l) => l.length);
  }

  reset(mark: number[]): void {
    this.lists().forEach((l, i) => (l.length = mark[i]!));
  }

  /** Quarantine a record with a code, raise its exception, and take its seq as done (acked as rejected). */
  reject(
    c: Candidate,
    code: RejectCode,
    detail: Record<string, unknown>,
    kind: 'quarantine' | 'chain_break' = 'quarantine',
  ): void {
    const { ctx } = this;
    const json = redactPins(JSON.stringify(c.raw) ?? '');
    const stated = (c.raw as { hash?: unknown; ts?: unknown } | null) ?? {};
    this.inbox.push(
      inboxRow(ctx, c.seq, typeof stated.hash === 'string' ? stated.hash.slice(0, 64) : '', 'rejected'),
    );
    this.quarantine.push({
      device_id: ctx.deviceId,
      epoch: ctx.epoch,
      seq: c.seq,
      code,
      excerpt: cut(json, RECORD_EXCERPT_BYTES),
      size_bytes: Buffer.byteLength(json),
      digest: sha256(json),
      received_at: ctx.nowMs,
    });
    this.exceptions.push({
      kind,
      device_id: ctx.deviceId,
      epoch: ctx.epoch,
      seq: c.seq,
      ref: recordRef(ctx, c.seq),
      detail: JSON.stringify({ code, ...detail }),
      occurred_at: typeof stated.ts === 'number' && Number.isSafeInteger(stated.ts) ? stated.ts : ctx.nowMs,
      raised_at: ctx.nowMs,
      resolved_at: null,
      resolution: null,
    });
  }

  /**
   * The exactly-once gate, written first. Under the cursor's lock no row can be there already; if one is
   * anyway, a run of several records is redone record by record (InboxConflict), and a run of one
   * answers true: that record is a duplicate.
   */
  async insertInbox(trx: Db): Promise<boolean> {
    const inserted = await insertRows(trx, this.ctx.dialect, 'inbox', this.inbox, {
      skipConflictsOn: ['device_id', 'epoch', 'seq'],
    });
    if (inserted === this.inbox.length) return false;
    if (this.inbox.length === 1) return true;
    throw new InboxConflict('the inbox holds records the cursor does not cover');
  }

  async write(trx: Db): Promise<void> {
    const { ctx } = this;
    await insertRows(trx, ctx.dialect, 'sales', this.sales);
    await insertRows(trx, ctx.dialect, 'sale_lines', this.saleLines);
    await insertRows(trx, ctx.dialect, 'tenders', this.tenders);
    await insertRows(trx, ctx.dialect, 'refunds', this.refunds);
    await insertRows(trx, ctx.dialect, 'refund_lines', this.refundLines);
    await insertRows(trx, ctx.dialect, 'shifts', this.shiftsOpened);
    for (const { row } of this.shiftsClosed) {
      // A shift opened in a record that was rejected is still closed in the books.
      await trx
        .insertInto('shifts')
        .values(row)
        .onConflict((oc) =>
          oc.column('shift_id').doUpdateSet({
            status: 'closed',
            closed_by: row.closed_by,
            closed_at: row.closed_at,
          }),
        )
        .execute();
    }
    await insertRows(trx, ctx.dialect, 'z_reports', this.zReports);
    await insertRows(trx, ctx.dialect, 'cash_movements', this.cash);
    await insertRows(trx, ctx.dialect, 'card_offline', this.cardHeld, { skipConflictsOn: ['txn'] });
    for (const saf of this.cardSaf) await writeSaf(trx, ctx, saf, this.exceptions);
    await applyDeviceStockMoves(trx, ctx.dialect, this.stockMoves, ctx.nowMs);
    await insertRows(trx, ctx.dialect, 'events_unhandled', this.unhandled);
    await insertRows(trx, ctx.dialect, 'quarantine', this.quarantine);
    await insertRows(trx, ctx.dialect, 'exceptions', this.exceptions);
  }
}

async function writeSaf(trx: Db, ctx: Ctx, saf: SafOutcome, exceptions: Insertable<ExceptionTable>[]) {
  await trx
    .insertInto('card_offline')
    .values(saf.row)
    .onConflict((oc) =>
      oc.column('txn').doUpdateSet((eb) => ({
        status: eb.ref('excluded.status'),
        settled_at: eb.ref('excluded.settled_at'),
        settled_seq: eb.ref('excluded.settled_seq'),
        sale_id: eb.fn.coalesce('card_offline.sale_id', 'excluded.sale_id'),
        amount_minor: eb.fn.coalesce('card_offline.amount_minor', 'excluded.amount_minor'),
        currency: eb.fn.coalesce('card_offline.currency', 'excluded.currency'),
      })),
    )
    .execute();
  if (!saf.declined) return;
  // A decline is money the store will not get for goods already gone: name the sale and the amount,
  // from the event or, when the device no longer knew them, from the hold the books kept.
  const held = await trx
    .selectFrom('card_offline')
    .select(['sale_id', 'amount_minor', 'currency'])
    .where('txn', '=', saf.detail.txn)
    .executeTakeFirst();
  const detail = {
    ...saf.detail,
    saleId: saf.detail.saleId ?? held?.sale_id ?? undefined,
    amountMinor: saf.detail.amountMinor ?? held?.amount_minor ?? undefined,
    currency: saf.detail.currency ?? held?.currency ?? undefined,
    ...(saf.message ? { message: saf.message.slice(0, 200) } : {}),
  };
  exceptions.push({
    kind: 'saf_declined',
    device_id: ctx.deviceId,
    epoch: ctx.epoch,
    seq: saf.seq,
    ref: (detail.saleId ?? saf.detail.txn).slice(0, 80),
    detail: JSON.stringify(detail),
    occurred_at: saf.occurredAt,
    raised_at: ctx.nowMs,
    resolved_at: null,
    resolution: null,
  });
}

// ---- events → rows ----

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const money = z.number().int().min(-MAX_SAFE).max(MAX_SAFE);
const amount = z.number().int().min(0).max(MAX_SAFE);
const qty = z.number().int().min(1).max(1_000_000);
const id = z.string().min(1).max(128);
const text = z.string().max(400);
const ts = z.number().int().min(0).max(MAX_SAFE);

const TenderSchema = z
  .object({
    kind: z.enum(['cash', 'card']),
    amountMinor: amount,
    txn: id.optional(),
    mode: z.string().max(20).optional(),
    authCode: z.string().max(40).optional(),
    maskedPan: z.string().max(40).optional(),
    brand: z.string().max(40).optional(),
  })
  .loose();
type TenderEvent = z.infer<typeof TenderSchema>;

const Discount = z
  .object({ kind: z.string().max(20) })
  .loose()
  .nullable()
  .optional();

const SaleCompleted = z
  .object({
    saleId: id,
    receiptNo: z.number().int().min(1),
    cashierId: id,
    cashierName: text.optional(),
    shiftId: id,
    startedAt: ts,
    currency: z.string().regex(/^[A-Z]{3}$/),
    taxMode: z.enum(['inclusive', 'exclusive']),
    totals: z
      .object({
        subtotalMinor: money,
        discountMinor: money,
        taxMinor: money,
        totalMinor: money,
        taxes: z.array(z.object({}).loose()).max(100),
        lines: z
          .array(
            z
              .object({
                lineId: id,
                grossMinor: money,
                discountMinor: money,
                netOfDiscountMinor: money,
                taxMinor: money,
              })
              .loose(),
          )
          .max(1000),
      })
      .loose(),
    changeMinor: amount,
    roundingMinor: money,
    lines: z
      .array(
        z
          .object({
            lineId: id,
            sku: z.string().min(1).max(40),
            name: text,
            qty,
            unitMinor: amount,
            taxClass: z.string().min(1).max(20),
            discount: Discount,
            openPrice: z.boolean().optional(),
          })
          .loose(),
      )
      .min(1)
      .max(1000),
    tenders: z.array(TenderSchema).max(100),
    basketDiscount: Discount,
    voidedLines: z.number().int().min(0).optional(),
    voidedMinor: money.optional(),
  })
  .loose();

const RefundCompleted = z
  .object({
    refundId: id,
    receiptNo: z.number().int().min(1),
    originalSaleId: id,
    originalReceiptNo: z.number().int().min(1).optional(),
    cashierId: id,
    currency: z.string().regex(/^[A-Z]{3}$/),
    lines: z
      .array(
        z
          .object({
            lineId: id,
            sku: z.string().min(1).max(40),
            name: text,
            qty,
            amountMinor: amount,
            taxMinor: money,
            taxClass: z.string().max(20).optional(),
          })
          .loose(),
      )
      .min(1)
      .max(1000),
    amountMinor: amount,
    tender: TenderSchema,
    approvedBy: id.optional(),
  })
  .loose();

const Counts = z.record(z.string().max(12), z.number().int().min(0));

const ShiftOpened = z.object({ shiftId: id, cashierId: id, floatMinor: amount, floatCounts: Counts }).loose();

const ShiftClosed = z
  .object({
    shiftId: id,
    cashierId: id,
    report: z
      .object({
        zNo: z.number().int().min(1),
        shiftId: id,
        openedAt: ts,
        closedAt: ts,
        openedBy: id,
        closedBy: id,
        floatMinor: amount,
        expectedCashMinor: money,
        countedCashMinor: amount,
        discrepancyMinor: money,
        counts: Counts,
        approvedBy: id.optional(),
        totals: z.object({}).loose(),
      })
      .loose(),
  })
  .loose();

const CashMove = z
  .object({
    shiftId: id.optional(),
    cashierId: id,
    amountMinor: amount.min(1),
    reason: text.optional(),
    approvedBy: id.optional(),
  })
  .loose();

const DrawerOpened = z
  .object({ shiftId: id.optional(), cashierId: id, reason: text.optional(), approvedBy: id.optional() })
  .loose();

const CardResult = z
  .object({ txn: id, outcome: z.string().max(20), mode: z.string().max(20), saf: z.boolean().optional() })
  .loose();

const CardSaf = z
  .object({
    txn: id,
    outcome: z.enum(['approved', 'declined']),
    saleId: id.optional(),
    amountMinor: amount.optional(),
    currency: z.string().max(3).optional(),
    receiptNo: z.number().int().min(1).optional(),
    message: z.string().max(2000).optional(),
  })
  .loose();

/** Events that carry nothing the books keep beyond what sale.completed and friends restate. */
const INFORMATIONAL = new Set([
  'cashier.loggedIn',
  'cashier.loggedOut',
  'cashier.loginFailed',
  'sale.started',
  'sale.lineAdded',
  'sale.qtySet',
  'sale.lineVoided',
  'sale.discountSet',
  'sale.tendered',
  'sale.cancelled',
  'card.requested',
  'receipt.reprinted',
]);

function check<S extends z.ZodType>(schema: S, e: unknown, type: string): z.infer<S> {
  const parsed = schema.safeParse(e);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Unbookable(`${type}: ${issue.path.join('.') || 'event'}: ${issue.message}`);
  }
  return parsed.data;
}

/** Only the last four digits of a card number survive, whatever a terminal sent. */
export function maskPan(pan: string | undefined): string | null {
  if (pan === undefined) return null;
  return pan.replace(/\d(?=(?:\D*\d){4})/g, '*').slice(-32);
}

function tenderColumns(t: TenderEvent) {
  return {
    txn: t.txn ?? null,
    mode: t.mode ?? null,
    auth_code: t.authCode ?? null,
    masked_pan: maskPan(t.maskedPan),
    brand: t.brand ?? null,
  };
}

/** Book one record's events into `books`; throws Unbookable when a known event is inconsistent. */
function bookRecord(books: Books, rec: JournalRecord): void {
  const { ctx } = books;
  const clockTrusted = rec.clock === 'trusted';
  /** Units per SKU out of (sign −1) or back into (+1) stock, in sorted SKU order (lock order). */
  const moveStock = (units: Map<string, number>, sign: 1 | -1, reason: 'sale' | 'refund', ref: string) => {
    for (const sku of [...units.keys()].sort())
      books.stockMoves.push({
        sku,
        delta: sign * units.get(sku)!,
        reason,
        ref,
        deviceId: ctx.deviceId,
        epoch: ctx.epoch,
        seq: rec.seq,
        occurredAt: rec.ts,
        clockTrusted,
      });
  };
  rec.events.forEach((e, eventNo) => {
    switch (e.type) {
      case 'sale.completed': {
        const s = check(SaleCompleted, e, e.type);
        const paid = s.tenders.reduce((sum, t) => sum + t.amountMinor, 0);
        if (paid - s.changeMinor !== s.totals.totalMinor + s.roundingMinor)
          throw new Unbookable(
            `sale.completed: tenders ${paid} − change ${s.changeMinor} ≠ total ${s.totals.totalMinor} + rounding ${s.roundingMinor}`,
          );
        const lineTotals = new Map(s.totals.lines.map((l) => [l.lineId, l]));
        const seen = new Set<string>();
        books.sales.push({
          sale_id: s.saleId,
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          store_id: books.storeId,
          receipt_no: s.receiptNo,
          shift_id: s.shiftId,
          cashier_id: s.cashierId,
          cashier_name: s.cashierName ?? s.cashierId,
          currency: s.currency,
          tax_mode: s.taxMode,
          subtotal_minor: s.totals.subtotalMinor,
          discount_minor: s.totals.discountMinor,
          tax_minor: s.totals.taxMinor,
          total_minor: s.totals.totalMinor,
          rounding_minor: s.roundingMinor,
          paid_minor: paid,
          change_minor: s.changeMinor,
          voided_lines: s.voidedLines ?? 0,
          voided_minor: s.voidedMinor ?? 0,
          basket_discount: s.basketDiscount ? JSON.stringify(s.basketDiscount) : null,
          taxes: JSON.stringify(s.totals.taxes),
          started_at: s.startedAt,
          completed_at: rec.ts,
          clock: rec.clock,
          booked_at: ctx.nowMs,
        });
        const out = new Map<string, number>();
        s.lines.forEach((l, lineNo) => {
          const t = lineTotals.get(l.lineId);
          if (!t || seen.has(l.lineId))
            throw new Unbookable(`sale.completed: line ${l.lineId} has no totals or comes twice`);
          seen.add(l.lineId);
          books.saleLines.push({
            sale_id: s.saleId,
            line_no: lineNo + 1,
            line_id: l.lineId,
            sku: l.sku,
            name: l.name,
            qty: l.qty,
            unit_minor: l.unitMinor,
            tax_class: l.taxClass,
            discount: l.discount ? JSON.stringify(l.discount) : null,
            open_price: l.openPrice ? 1 : 0,
            gross_minor: t.grossMinor,
            discount_minor: t.discountMinor,
            net_minor: t.netOfDiscountMinor,
            tax_minor: t.taxMinor,
          });
          out.set(l.sku, (out.get(l.sku) ?? 0) + l.qty);
        });
        s.tenders.forEach((t, tenderNo) =>
          books.tenders.push({
            sale_id: s.saleId,
            tender_no: tenderNo + 1,
            kind: t.kind,
            amount_minor: t.amountMinor,
            ...tenderColumns(t),
          }),
        );
        moveStock(out, -1, 'sale', s.saleId);
        return;
      }
      case 'refund.completed': {
        const r = check(RefundCompleted, e, e.type);
        const sum = r.lines.reduce((a, l) => a + l.amountMinor, 0);
        if (sum !== r.amountMinor || r.tender.amountMinor !== r.amountMinor)
          throw new Unbookable(
            `refund.completed: lines ${sum}, tender ${r.tender.amountMinor} and amount ${r.amountMinor} disagree`,
          );
        books.refunds.push({
          refund_id: r.refundId,
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          store_id: books.storeId,
          receipt_no: r.receiptNo,
          original_sale_id: r.originalSaleId,
          original_receipt_no: r.originalReceiptNo ?? null,
          cashier_id: r.cashierId,
          approved_by: r.approvedBy ?? null,
          currency: r.currency,
          amount_minor: r.amountMinor,
          tender_kind: r.tender.kind,
          ...tenderColumns(r.tender),
          occurred_at: rec.ts,
        });
        const back = new Map<string, number>();
        r.lines.forEach((l, lineNo) => {
          books.refundLines.push({
            refund_id: r.refundId,
            line_no: lineNo + 1,
            line_id: l.lineId,
            sku: l.sku,
            name: l.name,
            qty: l.qty,
            amount_minor: l.amountMinor,
            tax_minor: l.taxMinor,
            tax_class: l.taxClass ?? null,
          });
          back.set(l.sku, (back.get(l.sku) ?? 0) + l.qty);
        });
        moveStock(back, 1, 'refund', r.refundId);
        return;
      }
      case 'shift.opened': {
        const s = check(ShiftOpened, e, e.type);
        books.shiftsOpened.push({
          shift_id: s.shiftId,
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          status: 'open',
          opened_by: s.cashierId,
          opened_at: rec.ts,
          float_minor: s.floatMinor,
          float_counts: JSON.stringify(s.floatCounts),
          closed_by: null,
          closed_at: null,
        });
        return;
      }
      case 'shift.closed': {
        const s = check(ShiftClosed, e, e.type);
        const rep = s.report;
        if (rep.shiftId !== s.shiftId) throw new Unbookable('shift.closed: the report is of another shift');
        if (rep.countedCashMinor - rep.expectedCashMinor !== rep.discrepancyMinor)
          throw new Unbookable('shift.closed: counted − expected is not the discrepancy');
        books.shiftsClosed.push({
          row: {
            shift_id: s.shiftId,
            device_id: ctx.deviceId,
            epoch: ctx.epoch,
            status: 'closed',
            opened_by: rep.openedBy,
            opened_at: rep.openedAt,
            float_minor: rep.floatMinor,
            float_counts: '{}',
            closed_by: rep.closedBy,
            closed_at: rep.closedAt,
          },
        });
        books.zReports.push({
          shift_id: s.shiftId,
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          z_no: rep.zNo,
          opened_at: rep.openedAt,
          closed_at: rep.closedAt,
          opened_by: rep.openedBy,
          closed_by: rep.closedBy,
          float_minor: rep.floatMinor,
          expected_cash_minor: rep.expectedCashMinor,
          counted_cash_minor: rep.countedCashMinor,
          discrepancy_minor: rep.discrepancyMinor,
          approved_by: rep.approvedBy ?? null,
          totals: JSON.stringify(rep.totals),
          counts: JSON.stringify(rep.counts),
        });
        return;
      }
      case 'cash.payout':
      case 'cash.paidIn': {
        const m = check(CashMove, e, e.type);
        books.cash.push({
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          event_no: eventNo,
          kind: e.type === 'cash.payout' ? 'payout' : 'paid_in',
          shift_id: m.shiftId ?? null,
          cashier_id: m.cashierId,
          approved_by: m.approvedBy ?? null,
          amount_minor: m.amountMinor,
          reason: m.reason ?? null,
          occurred_at: rec.ts,
        });
        return;
      }
      case 'drawer.opened': {
        const d = check(DrawerOpened, e, e.type);
        books.cash.push({
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          event_no: eventNo,
          kind: 'no_sale',
          shift_id: d.shiftId ?? null,
          cashier_id: d.cashierId,
          approved_by: d.approvedBy ?? null,
          amount_minor: 0,
          reason: d.reason ?? null,
          occurred_at: rec.ts,
        });
        return;
      }
      case 'card.result': {
        const r = check(CardResult, e, e.type);
        if (r.outcome !== 'approved' || r.mode !== 'offline') return;
        // A refund approved offline puts money back on a card: no risk to hold.
        const isRefund = rec.events.some(
          (x) => x.type === 'refund.completed' && (x.tender as { txn?: unknown } | undefined)?.txn === r.txn,
        );
        if (isRefund) return;
        const tendered = rec.events.find(
          (x) => x.type === 'sale.tendered' && (x.tender as { txn?: unknown } | undefined)?.txn === r.txn,
        );
        const saleId = typeof tendered?.saleId === 'string' ? tendered.saleId : null;
        const amountMinor = (tendered?.tender as { amountMinor?: unknown } | undefined)?.amountMinor;
        const completed = rec.events.find((x) => x.type === 'sale.completed' && x.saleId === saleId);
        books.cardHeld.push({
          txn: r.txn,
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          sale_id: saleId,
          amount_minor: Number.isSafeInteger(amountMinor) ? (amountMinor as number) : null,
          currency: typeof completed?.currency === 'string' ? completed.currency : null,
          status: 'held',
          approved_at: rec.ts,
          settled_at: null,
          settled_seq: null,
        });
        return;
      }
      case 'card.saf': {
        const s = check(CardSaf, e, e.type);
        const declined = s.outcome === 'declined';
        books.cardSaf.push({
          row: {
            txn: s.txn,
            device_id: ctx.deviceId,
            epoch: ctx.epoch,
            seq: rec.seq,
            sale_id: s.saleId ?? null,
            amount_minor: s.amountMinor ?? null,
            currency: s.currency ?? null,
            status: declined ? 'declined' : 'forwarded',
            approved_at: null,
            settled_at: rec.ts,
            settled_seq: rec.seq,
          },
          declined,
          detail: {
            txn: s.txn,
            ...(s.saleId !== undefined ? { saleId: s.saleId } : {}),
            ...(s.amountMinor !== undefined ? { amountMinor: s.amountMinor } : {}),
            ...(s.currency !== undefined ? { currency: s.currency } : {}),
            ...(s.receiptNo !== undefined ? { receiptNo: s.receiptNo } : {}),
          },
          ...(s.message !== undefined ? { message: s.message } : {}),
          seq: rec.seq,
          occurredAt: rec.ts,
        });
        return;
      }
      default: {
        if (INFORMATIONAL.has(e.type)) return;
        // A newer register's event: kept as it came, so a later ledger can book it; never a reason to stall.
        books.unhandled.push({
          device_id: ctx.deviceId,
          epoch: ctx.epoch,
          seq: rec.seq,
          event_no: eventNo,
          type: e.type,
          body: cut(redactPins(JSON.stringify(e)), UNHANDLED_BODY_BYTES),
          received_at: ctx.nowMs,
        });
      }
    }
  });
}

// ---- quarantine of whole messages ----

async function quarantineMessage(
  ldb: LedgerDb,
  deviceId: string,
  payload: Buffer | string,
  bytes: number,
  code: RejectCode,
  epoch: number | null,
  nowMs: number,
): Promise<void> {
  const buf = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const size = bytes || buf.length;
  // The digest of an oversized payload is of what is kept: hashing 4 MiB of garbage per resend buys nothing.
  const kept = buf.subarray(0, MESSAGE_EXCERPT_BYTES);
  const digest = sha256(size > MAX_PAYLOAD_BYTES ? Buffer.concat([kept, Buffer.from(String(size))]) : buf);
  await withTransactionRetry(() =>
    ldb.db.transaction().execute(async (trx) => {
      // The same bad message again (a device resending it) is kept once.
      const seen = await trx
        .selectFrom('quarantine')
        .select('id')
        .where('device_id', '=', deviceId)
        .where('digest', '=', digest)
        .executeTakeFirst();
      if (seen) return;
      await trx
        .insertInto('quarantine')
        .values({
          device_id: deviceId,
          epoch,
          seq: null,
          code,
          // PostgreSQL text cannot hold NUL: a payload with one would fail its own quarantine.
          excerpt: redactPins(kept.toString('utf8')).replaceAll('\u0000', '\uFFFD'),
          size_bytes: size,
          digest,
          received_at: nowMs,
        })
        .execute();
      await trx
        .insertInto('exceptions')
        .values({
          kind: 'quarantine',
          device_id: deviceId,
          epoch,
          seq: null,
          ref: `message ${digest.slice(0, 16)}`,
          detail: JSON.stringify({ code, sizeBytes: size }),
          occurred_at: nowMs,
          raised_at: nowMs,
          resolved_at: null,
          resolution: null,
        })
        .execute();
    }),
  );
}

// ---- the ack ----

/**
 * The device's ack: for its latest epoch the books know (a stale message of an older epoch must not
 * replace the retained ack of the current one), cumulative, with the latest rejections and exceptions.
 * Notes in `devices` that the device was seen and what is acked, in the same round of queries.
 * Null when no epoch of the device is known.
 */
async function finishAck(
  ldb: LedgerDb,
  deviceId: string,
  epochHint: number | undefined,
  nowMs: number,
  applied?: { epoch: number; lastSeq: number },
): Promise<Ack | null> {
  const db = ldb.db;
  const [latest, lists] = await Promise.all([
    latestCursor(db, deviceId, applied?.epoch),
    epochHint ? ackLists(db, deviceId, epochHint) : undefined,
    applied ? noteAcked(db, deviceId, applied.epoch, applied.lastSeq, nowMs) : undefined,
  ]);
  const ack = await assembleAck(db, deviceId, applied?.epoch ?? latest?.epoch ?? epochHint, latest, lists);
  if (ack && !applied) await noteAcked(db, deviceId, ack.epoch, ack.ackedThrough, nowMs);
  return ack;
}

/** The ack for a device as the books stand: for its most recently booked epoch (`epochHint` without one). */
export async function ackFor(db: Db, deviceId: string, epochHint?: number): Promise<Ack | null> {
  const latest = await latestCursor(db, deviceId);
  return assembleAck(db, deviceId, latest?.epoch ?? epochHint, latest, undefined);
}

interface AckLists {
  epoch: number;
  rejected: Ack['rejected'];
  exceptions: Ack['exceptions'];
}

/**
 * The ack, in `epoch`. Epochs are random, not increasing, so "current" is not the highest: it is the
 * epoch a message just booked records in, else the device's most recently moved cursor. A stale
 * resend of an old epoch (duplicates only) never takes the retained ack away from the current one.
 */
async function assembleAck(
  db: Db,
  deviceId: string,
  epoch: number | undefined,
  latest: { epoch: number; last_seq: number } | undefined,
  lists: AckLists | undefined,
): Promise<Ack | null> {
  if (!epoch) return null;
  const ackedThrough = latest?.epoch === epoch ? latest.last_seq : 0;
  const l = lists?.epoch === epoch ? lists : await ackLists(db, deviceId, epoch);
  // Checked on the way out, as the device checks it on the way in.
  return AckSchema.parse({
    v: WIRE_VERSION,
    epoch,
    ackedThrough,
    rejected: l.rejected,
    exceptions: l.exceptions,
  });
}

/** The cursor of `epoch`, or without one the device's most recently moved (or created) cursor. */
async function latestCursor(db: Db, deviceId: string, epoch?: number) {
  return db
    .selectFrom('device_cursors')
    .select(['epoch', 'last_seq'])
    .where('device_id', '=', deviceId)
    .$if(epoch !== undefined, (q) => q.where('epoch', '=', epoch!))
    .orderBy('updated_at', 'desc')
    .orderBy('epoch', 'desc')
    .limit(1)
    .executeTakeFirst();
}

async function ackLists(db: Db, deviceId: string, epoch: number): Promise<AckLists> {
  const [rejected, exceptions] = await Promise.all([
    db
      .selectFrom('quarantine')
      .select(['seq', 'code'])
      .where('device_id', '=', deviceId)
      .where('epoch', '=', epoch)
      .where('seq', 'is not', null)
      .orderBy('id', 'desc')
      .limit(ACK_LIST)
      .execute(),
    db
      .selectFrom('exceptions')
      .select(['seq', 'kind', 'ref'])
      .where('device_id', '=', deviceId)
      .where('epoch', '=', epoch)
      .where('seq', 'is not', null)
      .orderBy('id', 'desc')
      .limit(ACK_LIST)
      .execute(),
  ]);
  return {
    epoch,
    rejected: rejected.reverse().map((r) => ({ seq: r.seq!, code: r.code as RejectCode })),
    exceptions: exceptions.reverse().map((x) => ({ seq: x.seq!, kind: x.kind, ref: x.ref })),
  };
}

/** Last seen and last acked, for the fleet page. Two consumers finishing out of order never wind it back. */
async function noteAcked(db: Db, deviceId: string, epoch: number, ackedSeq: number, nowMs: number) {
  await db
    .insertInto('devices')
    .values({ device_id: deviceId, last_seen: nowMs, last_acked_seq: ackedSeq, acked_epoch: epoch })
    .onConflict((oc) =>
      oc
        .column('device_id')
        .doUpdateSet((eb) => ({
          last_seen: eb.ref('excluded.last_seen'),
          last_acked_seq: eb.ref('excluded.last_acked_seq'),
          acked_epoch: eb.ref('excluded.acked_epoch'),
        }))
        .where((eb) =>
          eb.or([
            eb('devices.acked_epoch', 'is', null),
            // Another epoch is a journal reset: the device starts over (epochs are random, not ordered).
            eb('devices.acked_epoch', '!=', eb.ref('excluded.acked_epoch')),
            eb.and([
              eb('devices.acked_epoch', '=', eb.ref('excluded.acked_epoch')),
              eb('devices.last_acked_seq', '<=', eb.ref('excluded.last_acked_seq')),
            ]),
          ]),
        ),
    )
    .execute();
}

// ---- helpers ----

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A PIN never rests in the books, even inside a record kept for inspection. */
function redactPins(json: string): string {
  return json.replace(/("pin"\s*:\s*)"(?:[^"\\]|\\.)*"/g, '$1"***"');
}

/** At most `maxBytes` of UTF-8, cut on a character boundary. */
function cut(textValue: string, maxBytes: number): string {
  if (Buffer.byteLength(textValue) <= maxBytes) return textValue;
  return Buffer.from(textValue)
    .subarray(0, maxBytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
}
