// Shared pieces for journal tests: a small reducer whose state proves the fold, and a quick opener.
import type { JournalRecord } from '../../cloud-bridge/protocol/record.js';
import { manualClock } from '../../appliance/clock.js';
import { Journal, type JournalOptions, type Reducer } from '../../appliance/journal/journal.js';
import type { JournalFs } from '../../appliance/journal/fs.js';

export interface TallyState {
  records: number;
  lastSeq: number;
  totalMinor: number;
}

/** Folds records into a count and a sum, so a lost, doubled or reordered record changes the state. */
export const tally: Reducer<TallyState> = {
  initial: () => ({ records: 0, lastSeq: 0, totalMinor: 0 }),
  apply: (s, r: JournalRecord) => {
    if (r.seq !== s.lastSeq + 1 && s.lastSeq !== 0)
      throw new Error(`fold out of order: ${r.seq} after ${s.lastSeq}`);
    let total = s.totalMinor;
    for (const e of r.events) total += typeof e.amountMinor === 'number' ? e.amountMinor : 0;
    return { records: s.records + 1, lastSeq: r.seq, totalMinor: total };
  },
};

export const JOURNAL_DIR = '/state/journal';

export function openTally(
  io: JournalFs,
  extra: Partial<JournalOptions<TallyState>> = {},
): Journal<TallyState> {
  return Journal.open<TallyState>({
    dir: JOURNAL_DIR,
    deviceId: 'till-1',
    epoch: 1,
    fs: io,
    clock: manualClock(),
    reducer: tally,
    ...extra,
  });
}

export function sale(n: number, pad = 0) {
  return [{ type: 'sale.completed', saleId: `s-${n}`, amountMinor: n * 100 + 1, note: 'x'.repeat(pad) }];
}
