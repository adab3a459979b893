// What the fleet page shows, computed from the books at the fleet clock's now: each register's card
// (online, last seen, queue depth, the oldest pending record's age against the card forwarding
// deadline, last Z report, clock, version), sales over time per store, the sync lag over time, stock
// with its oversells, the open alarms, and any sale's receipt as the printer prints it (SVG).
import { sql } from 'kysely';
import { renderReceiptSvg, type ReceiptDoc } from '../../appliance/devices/printer/receipt-render.js';
import type { LedgerDb } from '../db/open.js';
import {
  getSale,
  getStoreDocument,
  listExceptions,
  listSales,
  listStock,
  type ExceptionView,
} from '../queries.js';

export const FLEET_DEFAULTS = {
  /**
   * ms an offline card approval may wait to be forwarded: 24 h, the register's own
   * `till.cardOffline.maxAgeMs` default and the strictest of the big vendors' windows. A pending
   * record's age is measured against it, since the card results travel in the queue.
   */
  cardForwardDeadlineMs: 24 * 60 * 60 * 1000,
  /** Fraction of the deadline at which a card turns amber: half the time gone, someone should look. */
  amberAt: 0.5,
  /** Fraction at which it turns red: a fifth of the time left, someone must act. */
  redAt: 0.8,
  /** ms between a device's clock and the ledger's beyond which the page says the clock drifts: 2 min. */
  clockDriftMs: 2 * 60 * 1000,
  /** ms of history the charts show: the last 24 h. */
  chartWindowMs: 24 * 60 * 60 * 1000,
  /** ms per sales bar: one hour. */
  salesBucketMs: 60 * 60 * 1000,
  /** ms a lag sample stands for: one minute (a newer status in the same minute replaces it). */
  lagSampleMs: 60 * 1000,
  /** Devices whose lag history is kept, at most (a bound on memory: 1440 samples each). */
  maxLagDevices: 1000,
  /** Rows per list on the page (exceptions of a kind, recent sales). */
  listRows: 100,
} as const;

export type DeadlineBand = 'none' | 'ok' | 'amber' | 'red' | 'missed';

/** Where an age stands against the deadline: nothing pending, fine, amber, red, or missed. */
export function deadlineBand(
  ageMs: number | null,
  deadlineMs: number,
  amberAt: number = FLEET_DEFAULTS.amberAt,
  redAt: number = FLEET_DEFAULTS.redAt,
): DeadlineBand {
  if (ageMs === null) return 'none';
  if (ageMs >= deadlineMs) return 'missed';
  if (ageMs >= deadlineMs * redAt) return 'red';
  if (ageMs >= deadlineMs * amberAt) return 'amber';
  return 'ok';
}

export type ClockState = 'trusted' | 'untrusted' | 'drifting' | 'unknown';

export interface DeviceCard {
  deviceId: string;
  storeId: string | null;
  online: boolean;
  lastSeen: number;
  pending: number | null;
  oldestPendingTs: number | null;
  /** now − oldestPendingTs, when something is pending. */
  oldestPendingAgeMs: number | null;
  deadline: DeadlineBand;
  /** When the oldest pending record misses the deadline. */
  deadlineAt: number | null;
  lastAckedSeq: number;
  lastZ: { zNo: number; closedAt: number; discrepancyMinor: number } | null;
  clock: ClockState;
  /**
   * The device's clock minus the ledger's, ms (transit included): from a status that arrived promptly
   * (fleet/status-timing.ts), never from a last will or a retained status handed over late.
   */
  clockSkewMs: number | null;
  version: string | null;
}

export interface SalesSeries {
  storeId: string;
  currency: string;
  /** One per bucket over the window, oldest first; empty hours are zero. */
  buckets: { t: number; totalMinor: number; count: number }[];
}

export interface LagSeries {
  storeId: string;
  /** Records pending in the store's registers together, at each sample, oldest first. */
  points: { t: number; pending: number }[];
}

export interface FleetOptions {
  ldb: LedgerDb;
  /** The fleet's now: ages and windows are measured against it (tests inject one). */
  clock?: { nowMs(): number };
  cardForwardDeadlineMs?: number;
}

/** An exception as the page lists it. */
export type FleetException = ExceptionView;

export class FleetMonitor {
  private readonly clock: { nowMs(): number };
  readonly deadlineMs: number;
  /** deviceId → store and pending samples (minute, count), oldest first. */
  private readonly lag = new Map<
    string,
    { storeId: string | null; samples: { t: number; pending: number }[] }
  >();

  constructor(private readonly opts: FleetOptions) {
    this.clock = opts.clock ?? { nowMs: () => Date.now() };
    this.deadlineMs = opts.cardForwardDeadlineMs ?? FLEET_DEFAULTS.cardForwardDeadlineMs;
  }

  nowMs(): number {
    return this.clock.nowMs();
  }

  /** Takes a device's reported queue depth into the lag history (called for every status received). */
  recordLag(deviceId: string, storeId: string | null, pending: number | null, atMs: number): void {
    if (pending === null) return;
    let d = this.lag.get(deviceId);
    if (!d) {
      if (this.lag.size >= FLEET_DEFAULTS.maxLagDevices) this.lag.delete(this.lag.keys().next().value!);
      d = { storeId, samples: [] };
      this.lag.set(deviceId, d);
    }
    d.storeId = storeId ?? d.storeId;
    const t = atMs - (atMs % FLEET_DEFAULTS.lagSampleMs);
    const last = d.samples[d.samples.length - 1];
    if (last && last.t === t) last.pending = pending;
    else if (!last || last.t < t) d.samples.push({ t, pending });
    const from = this.nowMs() - FLEET_DEFAULTS.chartWindowMs;
    // Keep one sample before the window: it says what the queue was when the window starts.
    while (d.samples.length > 1 && d.samples[1]!.t <= from) d.samples.shift();
    const max = FLEET_DEFAULTS.chartWindowMs / FLEET_DEFAULTS.lagSampleMs + 1;
    if (d.samples.length > max) d.samples.splice(0, d.samples.length - max);
  }

  async devices(): Promise<DeviceCard[]> {
    const now = this.nowMs();
    const [rows, zs] = await Promise.all([
      this.opts.ldb.db.selectFrom('devices').selectAll().orderBy('device_id').limit(10_000).execute(),
      this.opts.ldb.db
        .selectFrom('z_reports')
        .select(['device_id', 'z_no', 'closed_at', 'discrepancy_minor'])
        .where(({ eb, selectFrom }) =>
          eb(
            'closed_at',
            '=',
            selectFrom('z_reports as z2')
              .select((e) => e.fn.max('z2.closed_at').as('m'))
              .whereRef('z2.device_id', '=', 'z_reports.device_id'),
          ),
        )
        .limit(10_000)
        .execute(),
    ]);
    const lastZ = new Map(zs.map((z) => [z.device_id, z]));
    return rows.map((r) => {
      const pendingAge =
        r.pending && r.pending > 0 && r.oldest_pending_ts !== null
          ? Math.max(0, now - r.oldest_pending_ts)
          : null;
      // Judged as each status arrived: a last will or a late retained status leaves it as it was.
      const skew = r.clock_skew_ms;
      const clock: ClockState =
        r.clock_trusted === 0
          ? 'untrusted'
          : skew !== null && Math.abs(skew) > FLEET_DEFAULTS.clockDriftMs
            ? 'drifting'
            : r.clock_trusted === 1
              ? 'trusted'
              : 'unknown';
      const z = lastZ.get(r.device_id);
      return {
        deviceId: r.device_id,
        storeId: r.store_id,
        online: r.online === 1,
        lastSeen: r.last_seen,
        pending: r.pending,
        oldestPendingTs: r.oldest_pending_ts,
        oldestPendingAgeMs: pendingAge,
        deadline: deadlineBand(pendingAge, this.deadlineMs),
        deadlineAt: pendingAge === null ? null : r.oldest_pending_ts! + this.deadlineMs,
        lastAckedSeq: r.last_acked_seq,
        lastZ: z ? { zNo: z.z_no, closedAt: z.closed_at, discrepancyMinor: z.discrepancy_minor } : null,
        clock,
        clockSkewMs: skew,
        version: r.version,
      };
    });
  }

  /** Each store's sales (per currency) in hourly buckets over the last 24 h. */
  async salesSeries(): Promise<SalesSeries[]> {
    const now = this.nowMs();
    const bucketMs = FLEET_DEFAULTS.salesBucketMs;
    const last = Math.floor(now / bucketMs);
    const first = last - FLEET_DEFAULTS.chartWindowMs / bucketMs + 1;
    const bucket = sql<number>`completed_at / ${sql.lit(bucketMs)}`;
    const rows = await this.opts.ldb.db
      .selectFrom('sales')
      .select((eb) => [
        'store_id',
        'currency',
        bucket.as('bucket'),
        eb.fn.sum<number>('total_minor').as('total'),
        eb.fn.countAll<number>().as('n'),
      ])
      .where('completed_at', '>=', first * bucketMs)
      .where('completed_at', '<', (last + 1) * bucketMs)
      .groupBy(['store_id', 'currency', bucket])
      .limit(100_000)
      .execute();
    const series = new Map<string, SalesSeries>();
    for (const r of rows) {
      const storeId = r.store_id ?? '(no store)';
      const key = `${storeId}\u0000${r.currency}`;
      let s = series.get(key);
      if (!s) {
        s = {
          storeId,
          currency: r.currency,
          buckets: Array.from({ length: last - first + 1 }, (_, i) => ({
            t: (first + i) * bucketMs,
            totalMinor: 0,
            count: 0,
          })),
        };
        series.set(key, s);
      }
      const b = s.buckets[Number(r.bucket) - first];
      if (b) {
        b.totalMinor += Number(r.total);
        b.count += Number(r.n);
      }
    }
    return [...series.values()].sort(
      (a, b) => a.storeId.localeCompare(b.storeId) || a.currency.localeCompare(b.currency),
    );
  }

  /** Each store's pending records over the last 24 h, from the statuses its registers sent. */
  lagSeries(): LagSeries[] {
    const from = this.nowMs() - FLEET_DEFAULTS.chartWindowMs;
    const byStore = new Map<string, { deviceId: string; samples: { t: number; pending: number }[] }[]>();
    for (const [deviceId, d] of this.lag) {
      const storeId = d.storeId ?? '(no store)';
      const list = byStore.get(storeId) ?? [];
      list.push({ deviceId, samples: d.samples });
      byStore.set(storeId, list);
    }
    const out: LagSeries[] = [];
    for (const [storeId, devices] of byStore) {
      const times = [...new Set(devices.flatMap((d) => d.samples.map((s) => Math.max(s.t, from))))].sort(
        (a, b) => a - b,
      );
      const points = times.map((t) => ({
        t,
        pending: devices.reduce((sum, d) => {
          let v = 0;
          for (const s of d.samples) if (s.t <= t || (s.t < from && t === from)) v = s.pending;
          return sum + v;
        }, 0),
      }));
      out.push({ storeId, points });
    }
    return out.sort((a, b) => a.storeId.localeCompare(b.storeId));
  }

  /** Open exceptions by what the page does with them. */
  async openExceptions(): Promise<{
    oversells: FleetException[];
    quarantine: FleetException[];
    alarms: FleetException[];
    safDeclines: FleetException[];
  }> {
    const { ldb } = this.opts;
    const limit = FLEET_DEFAULTS.listRows;
    const [oversells, quarantine, chain, gaps, safDeclines] = await Promise.all([
      listExceptions(ldb, { kind: 'oversell', open: true, limit }),
      listExceptions(ldb, { kind: 'quarantine', open: true, limit }),
      listExceptions(ldb, { kind: 'chain_break', open: true, limit }),
      listExceptions(ldb, { kind: 'gap', open: true, limit }),
      listExceptions(ldb, { kind: 'saf_declined', open: true, limit }),
    ]);
    return { oversells, quarantine, alarms: [...chain, ...gaps].sort((a, b) => b.id - a.id), safDeclines };
  }

  async stock() {
    return listStock(this.opts.ldb, { limit: 500 });
  }

  async recentSales(limit = 20) {
    return (await listSales(this.opts.ldb, { limit })).sales;
  }

  /**
   * What time alone changes on the register cards, as one string: each card's band and its oldest
   * pending record's age in whole minutes. The live page is told when it changes, though no message
   * arrived (time passing turns a card amber), at most once a minute while something is pending.
   */
  async bandSignature(): Promise<string> {
    return (await this.devices())
      .map(
        (d) =>
          `${d.deviceId}:${d.deadline}:${d.online ? 1 : 0}:${d.oldestPendingAgeMs === null ? '' : Math.floor(d.oldestPendingAgeMs / 60_000)}`,
      )
      .join(',');
  }

  /** The sale's receipt as the register printed it, as SVG; null when there is no such sale. */
  async receiptSvg(saleId: string): Promise<string | null> {
    const doc = await this.receiptDoc(saleId);
    if (!doc) return null;
    const svg = renderReceiptSvg(doc, { columns: 42 });
    // ReceiptLine names a web font to fetch from a CDN; the page fetches nothing from outside.
    return svg.replace(/<style[^>]*>[\s\S]*?<\/style>/g, '');
  }

  /** The document the printer was handed, rebuilt from the books. */
  async receiptDoc(saleId: string): Promise<ReceiptDoc | null> {
    const { ldb } = this.opts;
    const sale = await getSale(ldb, saleId);
    if (!sale) return null;
    const [record, catalog] = await Promise.all([
      ldb.db
        .selectFrom('inbox')
        .select('hash')
        .where('device_id', '=', sale.deviceId)
        .where('epoch', '=', sale.epoch)
        .where('seq', '=', sale.seq)
        .executeTakeFirst(),
      sale.storeId ? getStoreDocument(ldb, sale.storeId, 'catalog') : Promise.resolve(null),
    ]);
    const storeName = (catalog?.body as { storeName?: string } | undefined)?.storeName;
    return {
      kind: 'sale',
      offline: false,
      storeId: sale.storeId ?? '',
      storeName: storeName ?? sale.storeId ?? 'Store',
      receiptNo: sale.receiptNo,
      time: sale.completedAt,
      clock: sale.clock,
      currency: sale.currency,
      chain: (record?.hash ?? '').slice(0, 12),
      seq: sale.seq,
      saleId: sale.saleId,
      cashier: sale.cashierName,
      lines: sale.lines.map((l) => ({
        name: l.name,
        sku: l.sku,
        qty: l.qty,
        unitMinor: l.unitMinor,
        amountMinor: l.netMinor,
        discountMinor: l.discountMinor,
        taxClass: l.taxClass,
      })),
      subtotalMinor: sale.subtotalMinor,
      discountMinor: sale.discountMinor,
      taxes: sale.taxes as Extract<ReceiptDoc, { kind: 'sale' }>['taxes'],
      taxMinor: sale.taxMinor,
      totalMinor: sale.totalMinor,
      roundingMinor: sale.roundingMinor,
      tenders: sale.tenders.map((t) =>
        t.kind === 'cash'
          ? { kind: 'cash' as const, amountMinor: t.amountMinor }
          : {
              kind: 'card' as const,
              amountMinor: t.amountMinor,
              brand: t.brand ?? undefined,
              maskedPan: t.maskedPan ?? undefined,
              authCode: t.authCode ?? undefined,
              mode: (t.mode ?? undefined) as 'online' | 'offline' | undefined,
            },
      ),
      changeMinor: sale.changeMinor,
      refunded: {},
    } as ReceiptDoc;
  }
}
