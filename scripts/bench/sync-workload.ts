// The sync benchmark's registers: real journals on disk, filled by the real till (Register over a
// Journal on the node file system), so the bridge reads the segments and records a register writes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { manualClock } from '../../appliance/clock.js';
import { Journal } from '../../appliance/journal/journal.js';
import { nodeFs, type JournalFs } from '../../appliance/journal/fs.js';
import { SimulatedCardTerminal } from '../../appliance/till/card.js';
import type { Product } from '../../appliance/till/catalog.js';
import { Register } from '../../appliance/till/register.js';
import { registerReducer, type RegisterState } from '../../appliance/till/state.js';
import { PINS, demoCashiers, demoCatalog } from '../../test/support/till-fixtures.js';
import { Rng } from '../../test/support/rng.js';

/** A new journal for every run (device ids are unique per run), so the first epoch is always free. */
export const BENCH_EPOCH = 1;
/** Scanned lines per sale: with its cash tender, a sale is ten records, so 10,000 records ≈ 1,000 sales. */
export const LINES_PER_SALE = 9;
/** Register time between two scans and between two sales, ms: a brisk till, for the records' ts. */
const SCAN_GAP_MS = 2_000;
const SALE_GAP_MS = 30_000;

/** The demo catalog's products a scan rings up at their own price, in catalog order. */
export const SCANNABLE = demoCatalog.products.filter((p) => !p.openPrice && p.barcodes.length > 0);

export interface RegisterSpec {
  dir: string;
  deviceId: string;
  /** Scanned as every sale's first line, once: the SKU a fleet fights over. */
  hotSku?: string;
  /** The first record's wall-clock time, ms. */
  startMs: number;
  seed: number;
  /** Default: the journal's own (8 MiB). Each segment is preallocated whole on disk. */
  segmentMaxBytes?: number;
}

/** A journal on disk, closed and synced, as the timed drains find it. */
export interface BuiltJournal {
  deviceId: string;
  dir: string;
  lastSeq: number;
  sales: number;
  /** Units of the hot SKU the sales took (0 without one). */
  hotUnits: number;
  /** The median record's size as the bridge sends it (its JSON), bytes. */
  medianRecordBytes: number;
}

/**
 * A register ringing up its day into a journal on disk: the real till over the real journal. fdatasync
 * is skipped while building, only to build quickly (nothing here is timed); close() syncs the files so
 * writeback does not run under the timed drains. The journal stays readable while open, so a bridge can
 * sync what is there before more is rung up.
 */
export class BenchRegister {
  private readonly register: Register;
  private readonly hot: Product | undefined;
  private readonly others: Product[];
  private sales = 0;
  private hotUnits = 0;

  private constructor(
    private readonly spec: RegisterSpec,
    readonly journal: Journal<RegisterState>,
    private readonly rng: Rng,
    private readonly clock: ReturnType<typeof manualClock>,
  ) {
    this.hot = spec.hotSku ? SCANNABLE.find((p) => p.sku === spec.hotSku) : undefined;
    if (spec.hotSku && !this.hot) throw new Error(`${spec.hotSku} is not a scannable demo product`);
    this.others = SCANNABLE.filter((p) => p !== this.hot);
    this.register = new Register({
      journal,
      catalog: () => demoCatalog,
      cashiers: () => demoCashiers,
      devices: { terminal: new SimulatedCardTerminal() },
      clock,
      random: () => new Uint8Array(this.rng.bytes(16)),
    });
  }

  /** A fresh journal, the cashier logged in and a shift opened: two records. */
  static async open(spec: RegisterSpec): Promise<BenchRegister> {
    const clock = manualClock(spec.startMs);
    const noSyncFs: JournalFs = { ...nodeFs, fdatasync: () => {} };
    const journal = Journal.open<RegisterState>({
      dir: spec.dir,
      deviceId: spec.deviceId,
      epoch: BENCH_EPOCH,
      fs: noSyncFs,
      clock,
      reducer: registerReducer,
      ...(spec.segmentMaxBytes ? { segmentMaxBytes: spec.segmentMaxBytes } : {}),
    });
    const r = new BenchRegister(spec, journal, new Rng(spec.seed), clock);
    try {
      await r.call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
      await r.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
    } catch (err) {
      journal.close();
      throw err;
    }
    return r;
  }

  private call(method: string, params: object): Promise<unknown> {
    return this.register.execute(method, params);
  }

  /** Cash sales of up to LINES_PER_SALE scans until the journal's last seq is exactly `lastSeq`. */
  async sellUntil(lastSeq: number): Promise<void> {
    const { journal, clock } = this;
    if (lastSeq < journal.lastSeq + 2)
      throw new Error(`no sale fits between ${journal.lastSeq} and ${lastSeq}`);
    while (journal.lastSeq < lastSeq) {
      const left = lastSeq - journal.lastSeq;
      // A sale is its scans and a tender; never leave one record over, which no sale could fill.
      let lines = Math.min(LINES_PER_SALE, left - 1);
      if (left - (lines + 1) === 1) lines--;
      for (let line = 0; line < lines; line++) {
        const product =
          line === 0 && this.hot ? this.hot : this.others[this.rng.int(0, this.others.length - 1)]!;
        clock.advance(SCAN_GAP_MS);
        await this.call('sale.scan', { code: product.barcodes[0]! });
        if (product === this.hot) this.hotUnits++;
      }
      clock.advance(SCAN_GAP_MS);
      const paid = (await this.call('sale.tender', { kind: 'cash' })) as { completed?: boolean };
      if (!paid.completed) throw new Error(`${this.spec.deviceId}: a cash tender did not complete its sale`);
      this.sales++;
      clock.advance(SALE_GAP_MS);
    }
    await this.register.drain();
    if (journal.lastSeq !== lastSeq)
      throw new Error(`${this.spec.deviceId}: ${journal.lastSeq} records where ${lastSeq} were planned`);
  }

  /** Close the journal and make it durable; what a drain needs to know of it. */
  close(): BuiltJournal {
    const { journal } = this;
    const sizes = [...journal.read(1)].map((r) => Buffer.byteLength(JSON.stringify(r))).sort((a, b) => a - b);
    const built: BuiltJournal = {
      deviceId: this.spec.deviceId,
      dir: this.spec.dir,
      lastSeq: journal.lastSeq,
      sales: this.sales,
      hotUnits: this.hotUnits,
      medianRecordBytes: sizes[sizes.length >> 1]!,
    };
    journal.close();
    syncDirectory(this.spec.dir);
    return built;
  }
}

/** fsync every file of a directory, and the directory. */
function syncDirectory(dir: string): void {
  for (const name of [...fs.readdirSync(dir), '.']) {
    const fd = fs.openSync(path.join(dir, name), 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** A built journal opened again on the real file system, as registerd holds it while the bridge reads. */
export function openJournal(built: BuiltJournal): Journal<RegisterState> {
  const journal = Journal.open<RegisterState>({
    dir: built.dir,
    deviceId: built.deviceId,
    epoch: BENCH_EPOCH,
    fs: nodeFs,
    reducer: registerReducer,
  });
  if (journal.lastSeq !== built.lastSeq) {
    journal.close();
    throw new Error(`${built.deviceId}: reopened with ${journal.lastSeq} records, built ${built.lastSeq}`);
  }
  return journal;
}

/** Sample records (their JSON, as on the wire) for raw publishes of a record's size. */
export function recordPayloads(journal: Journal<RegisterState>, count: number): Buffer[] {
  const out: Buffer[] = [];
  for (const record of journal.read(1)) {
    out.push(Buffer.from(JSON.stringify(record)));
    if (out.length >= count) break;
  }
  return out;
}
