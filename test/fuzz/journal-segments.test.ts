// Bad input on the flash itself: bytes flipped in closed journal segments (a worn card, a bad sector,
// a hand edit). Each flip must be found, by `registerctl journal verify` and by recovery, and named:
// never a journal that opens as if nothing happened, never a record silently changed. Nothing valid may
// be lost on the way: recovery changes no segment, and copies the damaged one aside for the operator.
// A damaged checkpoint is only a lost shortcut: the journal opens from the segments, state intact.
// Seeds are printed; replay one with `FUZZ_SEED=<seed> npx tap test/fuzz/journal-segments.test.ts`.
import t from 'tap';
import * as path from 'node:path/posix';
import { verifyJournal } from '../../appliance/journal/verify.js';
import { isRegisterError } from '../../appliance/errors.js';
import type { Journal } from '../../appliance/journal/journal.js';
import { readCheckpoint } from '../../appliance/journal/checkpoint.js';
import { FaultFs } from '../support/fault-fs.js';
import { JOURNAL_DIR, openTally, sale, type TallyState } from '../support/journal-fixtures.js';
import { Rng, seedFromEnv } from '../support/rng.js';

const replaying = Boolean(process.env.FUZZ_SEED);
const ROUNDS = replaying ? 1 : 400;
const baseSeed = seedFromEnv('FUZZ_SEED');
/** Small segments, so that one journal has many closed ones with frames, padding and headers. */
const SEGMENT_MAX_BYTES = 2048;

/** A closed journal of a few dozen records over many segments, and its files as written. */
function journal(seed: number) {
  const io = new FaultFs(new Rng(seed));
  const rng = new Rng(seed);
  // Half the journals checkpoint often (recovery then starts late and reads little), half never.
  const checkpointEveryRecords = seed % 2 === 0 ? 10 : 100_000;
  const j = openTally(io, { segmentMaxBytes: SEGMENT_MAX_BYTES, checkpointEveryRecords });
  const n = rng.int(20, 60);
  for (let i = 1; i <= n; i++) j.append(sale(i, rng.int(0, 300)));
  const state = j.state;
  const records = [...j.read(1)];
  j.close();
  const files = new Map<string, Buffer>();
  for (const f of io.list(JOURNAL_DIR)) files.set(f, io.readFile(path.join(JOURNAL_DIR, f)));
  return { io, state, files, records };
}

/** Where the checkpoint's record is: recovery reads the segments from there on. */
function checkpointAt(io: FaultFs): { segment: string; offset: number } {
  const c = readCheckpoint(io, JOURNAL_DIR);
  if (c.kind !== 'ok') return { segment: '', offset: 0 };
  return { segment: `${String(c.checkpoint.segment).padStart(8, '0')}.seg`, offset: c.checkpoint.offset };
}

t.test(`flipped bytes in closed segments are found and named (${ROUNDS} rounds)`, async (t) => {
  t.comment(`seeds ${baseSeed}…${baseSeed + ROUNDS - 1}; replay one with FUZZ_SEED=<seed>`);
  const codes = new Map<string, number>();
  let opens = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const seed = baseSeed + round;
    const rng = new Rng(seed ^ 0x5eed);
    const { io, files, records } = journal(seed);
    const segments = [...files.keys()].filter((f) => f.endsWith('.seg')).sort();
    const closed = segments.slice(0, -1); // the last one is open: its tail is the torn-write case
    if (!closed.length) throw new Error(`seed ${seed}: no closed segment`);
    const victim = rng.pick(closed);
    const original = files.get(victim)!;
    // One to four bytes anywhere: header, frames, alignment padding, or the preallocated zeros.
    const damaged = Buffer.from(original);
    const flips: number[] = [];
    for (let k = rng.int(1, 4); k > 0; k--) {
      const at = rng.int(0, damaged.length - 1);
      damaged[at]! ^= rng.int(1, 255);
      flips.push(at);
    }
    if (damaged.equals(original)) continue; // two flips of one byte undid each other
    io.put(path.join(JOURNAL_DIR, victim), damaged);

    const report = verifyJournal(io, JOURNAL_DIR);
    if (report.ok) {
      t.fail(`seed ${seed}: verify accepted a flipped ${victim}`);
      continue;
    }
    // Recovery refuses, naming the segment; or, when the damage lies wholly before the checkpoint (which
    // recovery trusts instead of reading those segments again), it opens, and reading the records back
    // gives each one unchanged or stops on the damage, never an altered record.
    const cp = checkpointAt(io);
    const covered = victim < cp.segment || (victim === cp.segment && Math.max(...flips) < cp.offset);
    let opened: Journal<TallyState> | null = null;
    try {
      opened = openTally(io, { segmentMaxBytes: SEGMENT_MAX_BYTES });
    } catch (err) {
      if (!isRegisterError(err)) throw err;
      codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
      if (!err.message.includes(victim) && (err.details as { file?: string } | undefined)?.file !== victim)
        t.fail(`seed ${seed}: the error does not name ${victim}: ${err.code} ${err.message}`);
      if (
        err.code === 'JOURNAL_CORRUPT' &&
        !io.list(`${JOURNAL_DIR}-quarantine`).some((f) => f.startsWith(victim))
      )
        t.fail(`seed ${seed}: no copy of ${victim} set aside`);
    }
    if (opened) {
      opens++;
      if (!covered) t.fail(`seed ${seed}: the journal opened over a flipped ${victim}`);
      try {
        for (const r of opened.read(1))
          if (JSON.stringify(r) !== JSON.stringify(records[r.seq - 1]))
            t.fail(`seed ${seed}: record ${r.seq} reads back altered`);
      } catch (err) {
        if (!isRegisterError(err, 'JOURNAL_CORRUPT')) throw err;
        codes.set('read: JOURNAL_CORRUPT', (codes.get('read: JOURNAL_CORRUPT') ?? 0) + 1);
      }
      opened.close();
    }
    // Nothing valid lost: every segment as it was (the damaged one as damaged).
    for (const [name, bytes] of files) {
      if (!name.endsWith('.seg')) continue;
      const now = io.readFile(path.join(JOURNAL_DIR, name));
      if (!now.equals(name === victim ? damaged : bytes)) t.fail(`seed ${seed}: recovery changed ${name}`);
    }
  }
  t.comment(
    `refusals: ${JSON.stringify(Object.fromEntries(codes))}; opened over damage the checkpoint covers: ${opens}`,
  );
  if (ROUNDS > 1) t.ok(codes.size > 0, 'recovery refused with stable codes');
});

t.test('a flipped checkpoint costs a full scan, never a record', async (t) => {
  for (let round = 0; round < 50; round++) {
    const seed = baseSeed + round;
    const rng = new Rng(seed ^ 0xc0de);
    const { io, state, files } = journal(seed);
    const checkpoint = [...files.keys()].find((f) => f.includes('checkpoint'));
    if (!checkpoint) continue; // a journal that never checkpoints
    const bytes = Buffer.from(files.get(checkpoint)!);
    bytes[rng.int(0, bytes.length - 1)]! ^= rng.int(1, 255);
    io.put(path.join(JOURNAL_DIR, checkpoint), bytes);
    const j = openTally(io, { segmentMaxBytes: SEGMENT_MAX_BYTES });
    const same = JSON.stringify(j.state) === JSON.stringify(state);
    j.close();
    if (!same) t.fail(`seed ${seed}: state after a flipped checkpoint differs`);
  }
  t.pass('flipped checkpoints, the same state each time');
});
