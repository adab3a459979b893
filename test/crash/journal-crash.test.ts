// Seeded power-cut scenarios against the journal on the fault-injecting file system: append bursts,
// rotations, checkpoints, prunes, full disks and fsync errors, with the power cut at any step,
// including during recovery. After every recovery: each acknowledged record is there exactly once and
// in order, nothing half-written appears, seq and chain verify, the fold is right, and recovering
// again changes nothing.
//
// Replay one seed:  CRASH_SEED=1234 npx tap test/crash/journal-crash.test.ts
// Another sweep:    CRASH_SEED_BASE=50000 CRASH_SCENARIOS=20000 npx tap test/crash/journal-crash.test.ts
import t from 'tap';
import { isDeepStrictEqual } from 'node:util';
import type { JournalEvent, JournalRecord } from '../../cloud-bridge/protocol/record.js';
import { isRegisterError } from '../../appliance/errors.js';
import type { Journal } from '../../appliance/journal/journal.js';
import { scanJournal } from '../../appliance/journal/scan.js';
import { FaultFs, PowerCut } from '../support/fault-fs.js';
import { Rng } from '../support/rng.js';
import { JOURNAL_DIR, openTally, tally, type TallyState } from '../support/journal-fixtures.js';
import { must, runCampaign, scenarioCount } from '../support/campaign.js';

/** CRASH_TRACE=1 with CRASH_SEED: print each step of the scenario to stderr. */
const trace = process.env.CRASH_TRACE ? (...a: unknown[]) => console.error(...a) : () => {};

interface Stats {
  powerCuts: number;
  processKills: number;
  cutsDuringRecovery: number;
  tornTails: number;
  acked: number;
  rotations: number;
  diskFull: number;
  fsyncErrors: number;
}

function runScenario(seed: number, stats: Stats): void {
  const rng = new Rng(seed);
  const io = new FaultFs(new Rng(seed ^ 0x5eed));
  const opts = {
    segmentMaxBytes: rng.pick([400, 1024, 4096]),
    checkpointEveryRecords: rng.pick([0, 3, 10]),
  };
  const acked: JournalRecord[] = [];
  let inFlight: JournalEvent[] | undefined;
  let n = 0;
  /** The highest seq prune was allowed to remove through: everything above it must stay. */
  let prunedThrough = 0;

  const expectedState = (): TallyState => acked.reduce(tally.apply, tally.initial());

  const filesNow = () => {
    const out: Record<string, string> = {};
    for (const name of io.list(JOURNAL_DIR))
      out[name] = io.readFile(`${JOURNAL_DIR}/${name}`).toString('base64');
    return out;
  };

  /** Open after a power cut, cutting the power again during recovery now and then. */
  const recover = (): Journal<TallyState> => {
    for (let attempt = 0; ; attempt++) {
      if (attempt < 3 && rng.chance(0.3)) io.cutPowerAfter(rng.int(1, 6));
      try {
        const j = openTally(io, opts);
        io.cutPowerAfter(Infinity);
        return j;
      } catch (err) {
        must(io.isDead, `recovery failed without a power cut: ${String(err)}`);
        stats.cutsDuringRecovery++;
        io.crash();
      }
    }
  };

  const check = (j: Journal<TallyState>): void => {
    trace(`  recovered ${JSON.stringify(j.recovery)}`);
    if (j.recovery.truncatedBytes > 0) stats.tornTails++;
    const records = [...j.read()];
    const lastAcked = acked.length ? acked[acked.length - 1]!.seq : 0;
    must(
      j.lastSeq >= lastAcked,
      `lost acknowledged records: journal ends at ${j.lastSeq}, acked ${lastAcked}`,
    );
    must(j.lastSeq <= lastAcked + 1, `journal ends at ${j.lastSeq}, beyond the one record in flight`);
    if (j.lastSeq === lastAcked + 1) {
      const extra = records[records.length - 1]!;
      must(inFlight !== undefined, `record ${extra.seq} appeared that was never attempted`);
      must(
        isDeepStrictEqual(extra.events, JSON.parse(JSON.stringify(inFlight))),
        'a half-written record appeared',
      );
      acked.push(extra); // durable now: part of history from here on
    }
    inFlight = undefined;
    const first = records.length ? records[0]!.seq : j.lastSeq + 1;
    must(
      first <= prunedThrough + 1,
      `records from ${prunedThrough + 1} were kept from pruning, found from ${first}`,
    );
    must(records.length === j.lastSeq - first + 1, 'records are not gapless');
    records.forEach((r, i) => {
      must(r.seq === first + i, `seq ${r.seq} at position ${i}`);
      const mine = acked[r.seq - 1]!;
      must(mine.hash === r.hash && isDeepStrictEqual(mine.events, r.events), `record ${r.seq} differs`);
      if (i > 0) must(r.prevHash === records[i - 1]!.hash, `chain broken at ${r.seq}`);
    });
    must(isDeepStrictEqual(j.state, expectedState()), 'folded state differs from the fold of acked records');
    const verify = scanJournal(io, JOURNAL_DIR, { useCheckpoint: false });
    must(verify.problem === undefined, `verify: ${verify.problem?.message}`);

    // Recovering again, with no crash in between, changes nothing.
    const before = filesNow();
    j.close();
    const again = openTally(io, opts);
    must(
      again.recovery.truncatedBytes === 0 && again.recovery.removedTempFiles.length === 0,
      'second recovery acted',
    );
    must(again.lastSeq === j.lastSeq && isDeepStrictEqual(again.state, j.state), 'second recovery differs');
    must(isDeepStrictEqual(filesNow(), before), 'second recovery changed files');
    again.close();
  };

  let j = openTally(io, opts);
  const steps = rng.int(3, 8);
  for (let step = 0; step < steps; step++) {
    const action = rng.pick([
      'burst',
      'burst',
      'burst',
      'checkpoint',
      'prune',
      'restart',
      'disk-full',
      'eio',
    ]);
    trace(`step ${step}: ${action}, lastSeq ${j.lastSeq}, segments ${j.segmentCount}`);
    if (action === 'restart') {
      j.close();
      j = openTally(io, opts);
      check(j);
      j = openTally(io, opts);
      continue;
    }
    if (rng.chance(0.6)) io.cutPowerAfter(rng.int(1, 40));
    if (action === 'disk-full') io.capacityBytes = io.usedBytes() + rng.int(0, 1500);
    if (action === 'eio') io.failNext(rng.pick(['fdatasync', 'write', 'syncDir']), 'EIO');
    try {
      if (action === 'checkpoint') {
        try {
          j.checkpoint();
        } catch (err) {
          // A checkpoint that cannot be written is reported and harms nothing.
          const harmless =
            isRegisterError(err, 'JOURNAL_DISK_FULL') || isRegisterError(err, 'JOURNAL_WRITE_FAILED');
          if (io.isDead || !harmless) throw err;
        }
      } else if (action === 'prune') {
        const through = rng.int(0, j.lastSeq);
        prunedThrough = Math.max(prunedThrough, through); // a prune cut short may still have removed some
        j.prune(through);
      }
      const burst = action === 'checkpoint' || action === 'prune' ? 0 : rng.int(1, 15);
      for (let i = 0; i < burst; i++) {
        n++;
        const events: JournalEvent[] = [
          {
            type: 'sale.completed',
            saleId: `s${seed}-${n}`,
            amountMinor: n,
            memo: 'm'.repeat(rng.int(0, 300)),
          },
        ];
        inFlight = events;
        const segments = j.segmentCount;
        try {
          acked.push(j.append(events));
        } catch (err) {
          if (isRegisterError(err, 'JOURNAL_DISK_FULL') || isRegisterError(err, 'JOURNAL_WRITE_FAILED')) {
            stats.diskFull++;
            inFlight = undefined; // refused and undone: it must never appear
            continue;
          }
          throw err;
        }
        inFlight = undefined;
        stats.acked++;
        trace(`  acked ${acked[acked.length - 1]!.seq} (segments ${j.segmentCount})`);
        if (j.segmentCount > segments) stats.rotations++;
      }
      // The power may have gone in a checkpoint the journal rightly shrugged off: the machine is down.
      if (io.isDead) throw new PowerCut();
      io.clearFaults();
    } catch (err) {
      io.clearFaults();
      if (isRegisterError(err, 'JOURNAL_FATAL') && !io.isDead) {
        must(action === 'eio', `JOURNAL_FATAL without an I/O error: ${err.message}`);
        stats.fsyncErrors++;
        // The page cache may now show what the disk does not have: no reopening before a reboot.
        try {
          openTally(io, opts);
          must(false, 'reopened a journal in the boot of its fsync error');
        } catch (reopen) {
          must(isRegisterError(reopen, 'JOURNAL_FATAL'), `reopen refused with ${String(reopen)}`);
        }
      } else must(io.isDead || err instanceof PowerCut, `unexpected error: ${String(err)}`);
      trace(`  error ${String(err)}; dead ${io.isDead}`);
      if (io.isDead && rng.chance(0.3)) {
        // Only the process died (SIGKILL, OOM): the page cache lives on, unsynced writes and all, and
        // the next process recovers from it. The power cut comes later, at the end of the scenario.
        stats.processKills++;
        io.kill();
        j = openTally(io, opts);
        check(j);
        j = openTally(io, opts);
        continue;
      }
      if (io.isDead) stats.powerCuts++;
      io.crash();
      j = recover();
      check(j);
      j = openTally(io, opts);
    }
  }
  // The end: one last power cut with no warning, then everything acknowledged must be there.
  io.crash();
  j = recover();
  check(j);
}

t.test(`journal survives ${scenarioCount(2000)} seeded power-cut scenarios`, async (t) => {
  const stats: Stats = {
    powerCuts: 0,
    processKills: 0,
    cutsDuringRecovery: 0,
    tornTails: 0,
    acked: 0,
    rotations: 0,
    diskFull: 0,
    fsyncErrors: 0,
  };
  runCampaign(t, {
    defaultScenarios: 2000,
    stats,
    replay: 'test/crash/journal-crash.test.ts',
    scenario: runScenario,
  });
});
