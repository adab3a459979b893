// The journal benchmark's workload: a till's five-line sales, and the kind of fold the register keeps
// of them. Shared by the benchmark (journal.ts) and its recovery child (journal-recover.ts).
import type { JournalEvent, JournalRecord } from '../../cloud-bridge/protocol/record.js';
import type { Reducer } from '../../appliance/journal/journal.js';

export const BENCH_DEVICE_ID = 'till-bench';
export const BENCH_EPOCH = 1;

const CATALOGUE = [
  { sku: '4006381333931', name: 'Espresso beans 250 g', unitMinor: 649 },
  { sku: '5000112637922', name: 'Sparkling water 1.5 l', unitMinor: 89 },
  { sku: '4311501659359', name: 'Rye bread sliced', unitMinor: 239 },
  { sku: '8710398500000', name: 'Dish soap lemon', unitMinor: 195 },
  { sku: '4008400401621', name: 'Chocolate bar 100 g', unitMinor: 129 },
] as const;

/** One completed five-line sale, as one event; `n` varies the ids, quantities and payment. */
export function saleEvents(n: number): JournalEvent[] {
  const lines = CATALOGUE.map((item, i) => ({ ...item, qty: 1 + ((n + i) % 3) }));
  const amountMinor = lines.reduce((sum, line) => sum + line.qty * line.unitMinor, 0);
  return [
    {
      type: 'sale.completed',
      saleId: `S-${String(n).padStart(8, '0')}`,
      cashierId: 'cashier-07',
      currency: 'EUR',
      lines,
      amountMinor,
      payment: { method: n % 4 === 0 ? 'cash' : 'card', amountMinor },
    },
  ];
}

export interface SalesState {
  sales: number;
  units: number;
  totalMinor: number;
  cashMinor: number;
  lastSeq: number;
}

/** The kind of fold a register keeps: the day's count, units and takings, and the cash in the drawer. */
export const salesReducer: Reducer<SalesState> = {
  initial: () => ({ sales: 0, units: 0, totalMinor: 0, cashMinor: 0, lastSeq: 0 }),
  apply: (s, record: JournalRecord) => {
    let { sales, units, totalMinor, cashMinor } = s;
    for (const e of record.events) {
      if (e.type !== 'sale.completed') continue;
      const amount = typeof e.amountMinor === 'number' ? e.amountMinor : 0;
      sales++;
      totalMinor += amount;
      if ((e.payment as { method?: string } | undefined)?.method === 'cash') cashMinor += amount;
      if (Array.isArray(e.lines)) for (const line of e.lines as { qty: number }[]) units += line.qty;
    }
    return { sales, units, totalMinor, cashMinor, lastSeq: record.seq };
  },
};

/** What the child reports to the parent. */
export interface RecoveryFigures {
  openMs: number;
  /** RSS just before Journal.open (node and the bundled code) and right after it, in MiB. */
  rssBeforeMb: number;
  rssMb: number;
  heapUsedMb: number;
  /** Buffers (segment reads) outside the JS heap: most of recovery's RSS. */
  arrayBuffersMb: number;
  replayed: number;
  checkpointSeq: number;
  lastSeq: number;
  state: SalesState;
}
