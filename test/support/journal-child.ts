// The child of the kill test: recovers the journal, says what it found, then appends as fast as it can
// and reports each acknowledgement on stdout until it is killed.
//   node journal-child.mjs DIR SEED
import { writeSync } from 'node:fs';
import { Journal } from '../../appliance/journal/journal.js';
import { Rng } from './rng.js';
import { tally, type TallyState } from './journal-fixtures.js';

function say(line: string): void {
  const buf = Buffer.from(line + '\n');
  for (let done = 0; done < buf.length;) {
    try {
      done += writeSync(1, buf, done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

const [dir, seed] = process.argv.slice(2);
const rng = new Rng(Number(seed));
say('opening');
const journal = Journal.open<TallyState>({
  dir: dir!,
  deviceId: 'till-kill',
  epoch: 1,
  reducer: tally,
  segmentMaxBytes: 32 * 1024,
  checkpointEveryRecords: 150,
});
say(`recovered ${journal.lastSeq} ${journal.lastHash} ${JSON.stringify(journal.state)}`);
for (let n = journal.lastSeq + 1; ; n++) {
  const r = journal.append([
    { type: 'sale.completed', saleId: `k-${n}`, amountMinor: n, memo: 'k'.repeat(rng.int(0, 400)) },
  ]);
  say(`ack ${r.seq} ${r.hash}`);
  if (rng.chance(0.01)) journal.prune(r.seq);
}
