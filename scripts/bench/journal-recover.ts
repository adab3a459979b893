// The journal benchmark's recovery child: `node journal-recover.mjs DIR` opens the journal in DIR once
// and prints one JSON line of figures. The benchmark (journal.ts) runs it bundled, with plain node, as
// the built appliance runs: the child's memory is then the journal's, not the TypeScript loader's (tsx
// alone adds ~35 MB of RSS).
import { Journal } from '../../appliance/journal/journal.js';
import {
  BENCH_DEVICE_ID,
  BENCH_EPOCH,
  salesReducer,
  type RecoveryFigures,
  type SalesState,
} from './journal-workload.js';

const MIB = 1024 * 1024;

function recoverOnce(dir: string): RecoveryFigures {
  const rssBefore = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const journal = Journal.open<SalesState>({
    dir,
    deviceId: BENCH_DEVICE_ID,
    epoch: BENCH_EPOCH,
    reducer: salesReducer,
  });
  const openNs = process.hrtime.bigint() - t0;
  // Read while the journal is still open: its state and the garbage of recovery are both still here.
  const mem = process.memoryUsage();
  const figures: RecoveryFigures = {
    openMs: Number(openNs) / 1e6,
    rssBeforeMb: rssBefore / MIB,
    rssMb: mem.rss / MIB,
    heapUsedMb: mem.heapUsed / MIB,
    arrayBuffersMb: mem.arrayBuffers / MIB,
    replayed: journal.recovery.replayed,
    checkpointSeq: journal.recovery.checkpointSeq,
    lastSeq: journal.lastSeq,
    state: journal.state,
  };
  journal.close();
  return figures;
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: journal-recover DIR\n');
  process.exit(2);
}
process.stdout.write(JSON.stringify(recoverOnce(dir)) + '\n');
