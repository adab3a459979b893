// read(fromSeq) serves the cloud bridge, which comes back every few records: whatever order and
// interleaving of reads and appends, across segment rotations, it yields exactly the records from
// fromSeq to the last durable one, in order.
import t from 'tap';
import { FaultFs } from '../../support/fault-fs.js';
import { Rng } from '../../support/rng.js';
import { openTally, sale } from '../../support/journal-fixtures.js';

t.test('random reads and appends agree with the records written', async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new Rng(seed);
    const io = new FaultFs(rng);
    const journal = openTally(io, { segmentMaxBytes: 64 * 1024 });
    const written: number[] = [];
    for (let step = 0; step < 120; step++) {
      if (rng.int(0, 2) > 0) {
        for (let k = rng.int(1, 20); k > 0; k--) {
          journal.append(sale(written.length + 1, rng.int(0, 900)));
          written.push(written.length + 1);
        }
        continue;
      }
      const from = rng.int(1, written.length + 2);
      // A reader may stop early (the bridge reads one window) and come back later.
      const take = rng.int(1, 50);
      const got: number[] = [];
      for (const r of journal.read(from)) {
        got.push(r.seq);
        if (got.length === take) break;
      }
      const want = written.filter((s) => s >= from).slice(0, take);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        t.same(got, want, `seed ${seed} step ${step}: read(${from})`);
        return;
      }
    }
    t.ok(journal.lastSeq > 0, `seed ${seed}: ${journal.lastSeq} records over several segments agree`);
    journal.close();
  }
});

t.test('records larger than a read window apart: windows refill at frame boundaries', async (t) => {
  for (let seed = 1; seed <= 3; seed++) {
    const rng = new Rng(seed);
    const journal = openTally(new FaultFs(rng), { segmentMaxBytes: 4 * 1024 * 1024 });
    const padOf: number[] = [0];
    for (let n = 1; n <= 40; n++) {
      padOf.push(rng.int(0, 200_000)); // up to most of a record's 256 KiB: frames straddle the 1 MiB windows
      journal.append(sale(n, padOf[n]!));
    }
    for (const from of [1, rng.int(2, 39), 40]) {
      const got = [...journal.read(from)].map((r) => [r.seq, String(r.events[0]!.note).length]);
      const want = padOf.slice(from).map((pad, k) => [from + k, pad]);
      t.same(got, want, `seed ${seed}: read(${from}) returns every record whole`);
    }
    journal.close();
  }
});
