// The till benchmark's replay child: `node till-replay.mjs DIR DEVICE_ID EPOCH` recovers the register's
// journal in DIR once, as registerd does at boot, and prints one JSON line of figures. The benchmark
// (till.ts) runs it bundled, with plain node, in a fresh process each time: what is timed is a boot's
// Journal.open, not a loader's start-up or a process that has already compiled the fold.
import { Journal } from '../../appliance/journal/journal.js';
import { registerReducer, type RegisterState } from '../../appliance/till/state.js';

const MIB = 1024 * 1024;

/** What the child reports to the parent. */
export interface ReplayFigures {
  openMs: number;
  /** Records folded; equal to lastSeq when no checkpoint was used (a full replay). */
  replayed: number;
  checkpointSeq: number;
  lastSeq: number;
  segments: number;
  /** From the folded state: the parent checks the day came back whole. */
  receiptNo: number;
  zNo: number;
  rssMb: number;
}

function replayOnce(dir: string, deviceId: string, epoch: number): ReplayFigures {
  const t0 = process.hrtime.bigint();
  const journal = Journal.open<RegisterState>({
    dir,
    deviceId,
    epoch,
    reducer: registerReducer,
    // Nothing is appended here; 0 only makes sure this open never leaves a checkpoint behind for the
    // next run to start from.
    checkpointEveryRecords: 0,
  });
  const openNs = process.hrtime.bigint() - t0;
  const figures: ReplayFigures = {
    openMs: Number(openNs) / 1e6,
    replayed: journal.recovery.replayed,
    checkpointSeq: journal.recovery.checkpointSeq,
    lastSeq: journal.lastSeq,
    segments: journal.recovery.segments,
    receiptNo: journal.state.receiptNo,
    zNo: journal.state.zNo,
    rssMb: process.memoryUsage().rss / MIB,
  };
  journal.close();
  return figures;
}

const [dir, deviceId, epoch] = process.argv.slice(2);
if (!dir || !deviceId || !epoch) {
  process.stderr.write('usage: till-replay DIR DEVICE_ID EPOCH\n');
  process.exit(2);
}
process.stdout.write(JSON.stringify(replayOnce(dir, deviceId, Number(epoch))) + '\n');
