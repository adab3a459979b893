// registerctl journal export / import: moving a register's journal to a new card without losing or
// altering a sale, refusing every archive or target it cannot trust, and never leaving a shorter
// journal behind (a power cut at any step of an import leaves no journal or the whole one).
import t from 'tap';
import { createServer } from 'node:net';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { EXIT_PARTIAL, main, type Io } from '../../../appliance/control/registerctl.js';
import { Journal } from '../../../appliance/journal/journal.js';
import { FIRST_FRAME_OFFSET, encodeFrame, readFrame } from '../../../appliance/journal/format.js';
import { nodeFs } from '../../../appliance/journal/fs.js';
import { scanJournal } from '../../../appliance/journal/scan.js';
import { verifyJournal } from '../../../appliance/journal/verify.js';
import {
  ARCHIVE_MAGIC,
  importJournal,
  readArchive,
  type ArchiveHeader,
} from '../../../appliance/journal/archive.js';
import { isRegisterError } from '../../../appliance/errors.js';
import type { JournalRecord } from '../../../cloud-bridge/protocol/record.js';
import { manualClock } from '../../../appliance/clock.js';
import { sale, tally } from '../../support/journal-fixtures.js';
import { FaultFs, PowerCut } from '../../support/fault-fs.js';
import { Rng } from '../../support/rng.js';

const DEVICE = 'till-9';
const EPOCH = 4;
/** Small segments and frequent checkpoints, so a few records span several segments and a checkpoint. */
const SMALL = { segmentMaxBytes: 4096, checkpointEveryRecords: 6 };

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), env: {} };
  return { io, out, err, json: () => JSON.parse(out[0]!) };
}

/** A state dir with a journal of n sales, and the bridge's sync.json when ackedThrough is given. */
function stateWith(stateDir: string, n: number, ackedThrough?: number, deviceId = DEVICE, epoch = EPOCH) {
  const j = Journal.open({ dir: path.join(stateDir, 'journal'), deviceId, epoch, reducer: tally, ...SMALL });
  for (let i = 1; i <= n; i++) j.append(sale(i));
  const state = j.state;
  j.close();
  if (ackedThrough !== undefined) {
    writeFileSync(
      path.join(stateDir, 'sync.json'),
      JSON.stringify({ v: 1, deviceId, epoch, ackedThrough, lastAckAt: 1764201600000 }),
    );
  }
  return state;
}

function records(dir: string): JournalRecord[] {
  const all: JournalRecord[] = [];
  const report = verifyJournal(nodeFs, dir, (r) => all.push(r));
  if (!report.ok) throw new Error(`${dir}: ${JSON.stringify(report.problem)}`);
  return all;
}

/** Every file under a directory with its bytes' hash: "nothing changed" means this is equal. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, name);
    out[name] = statSync(p).isDirectory()
      ? 'dir'
      : createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return out;
}

async function exportTo(journalDir: string, out: string) {
  const c = capture();
  const code = await main(['journal', 'export', journalDir, '--out', out], c.io);
  return { code, ...c };
}

async function importInto(file: string, stateDir: string) {
  const c = capture();
  const code = await main(['journal', 'import', file, '--state-dir', stateDir], c.io);
  return { code, ...c };
}

t.test(
  'export then import gives the same journal: records, hashes, files, fold and sync state',
  async (t) => {
    const root = t.testdir();
    const oldCard = path.join(root, 'old');
    const state = stateWith(oldCard, 20, 12);
    const journalDir = path.join(oldCard, 'journal');
    t.ok(readdirSync(journalDir).length >= 4, 'several segments and a checkpoint');
    const before = snapshot(oldCard);
    const archive = path.join(root, 'till-9.regjournal');

    const ex = await exportTo(journalDir, archive);
    t.equal(ex.code, 0, ex.err.join('\n'));
    t.match(ex.json(), {
      ok: true,
      complete: true,
      deviceId: DEVICE,
      epoch: EPOCH,
      firstSeq: 1,
      lastSeq: 20,
      records: 20,
      checkpointSeq: 18,
      tornTailBytes: 0,
      ackedThrough: 12,
      unsynced: 8,
      leftOut: null,
    });
    t.same(snapshot(oldCard), before, 'the old card was only read');
    t.same(readdirSync(root).sort(), ['old', 'till-9.regjournal'], 'no temp file left');
    t.ok(readFileSync(archive).subarray(0, 8).equals(ARCHIVE_MAGIC));

    const newCard = path.join(root, 'new');
    const im = await importInto(archive, newCard);
    t.equal(im.code, 0, im.err.join('\n'));
    t.match(im.json(), { ok: true, imported: true, deviceId: DEVICE, epoch: EPOCH, lastSeq: 20, toSend: 8 });

    t.same(records(path.join(newCard, 'journal')), records(journalDir), 'every record, hash and prevHash');
    for (const name of readdirSync(journalDir)) {
      t.ok(
        readFileSync(path.join(newCard, 'journal', name)).equals(readFileSync(path.join(journalDir, name))),
        `${name} byte for byte, preallocated size included`,
      );
    }
    t.same(readdirSync(newCard).sort(), ['journal', 'sync.json'], 'no staging directory left');
    t.match(JSON.parse(readFileSync(path.join(newCard, 'sync.json'), 'utf8')), {
      v: 1,
      deviceId: DEVICE,
      epoch: EPOCH,
      ackedThrough: 12,
    });

    // What registerd does on the new card: recover, fold, and go on with the next seq on the same chain.
    const j = Journal.open({
      dir: path.join(newCard, 'journal'),
      deviceId: DEVICE,
      reducer: tally,
      clock: manualClock(),
      ...SMALL,
    });
    t.equal(j.epoch, EPOCH);
    t.equal(j.lastSeq, 20);
    t.same(j.state, state, 'the same fold');
    const next = j.append(sale(21));
    t.equal(next.seq, 21);
    t.equal(next.prevHash, records(journalDir)[19]!.hash, 'chained to the old card’s last record');
    j.close();
  },
);

t.test('a pruned journal (early segments gone, a checkpoint) moves too', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  const dir = path.join(card, 'journal');
  const j = Journal.open({ dir, deviceId: DEVICE, epoch: EPOCH, reducer: tally, ...SMALL });
  for (let i = 1; i <= 20; i++) j.append(sale(i));
  t.ok(j.prune(18) > 0, 'segments pruned');
  const state = j.state;
  j.close();
  t.notOk(existsSync(path.join(dir, '00000001.seg')));
  const archive = path.join(root, 'a');
  const ex = await exportTo(dir, archive);
  t.equal(ex.code, 0, ex.err.join('\n'));
  t.match(ex.json(), { complete: true, lastSeq: 20, checkpointSeq: 18 });
  const newCard = path.join(root, 'new');
  t.equal((await importInto(archive, newCard)).code, 0);
  const moved = Journal.open({
    dir: path.join(newCard, 'journal'),
    deviceId: DEVICE,
    reducer: tally,
    ...SMALL,
  });
  t.equal(moved.lastSeq, 20);
  t.same(moved.state, state, 'folded from the checkpoint on');
  moved.close();
  t.match((await importInto(archive, newCard)).json(), { imported: false }, 'again: a no-op');
});

t.test('a damaged checkpoint is left behind when every record is there: the fold is replayed', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  const state = stateWith(card, 20);
  const cp = path.join(card, 'journal', 'checkpoint');
  const bytes = readFileSync(cp);
  bytes[bytes.length - 3] ^= 0xff;
  writeFileSync(cp, bytes);
  const archive = path.join(root, 'a');
  const ex = await exportTo(path.join(card, 'journal'), archive);
  t.equal(ex.code, 0, ex.err.join('\n'));
  t.match(ex.json(), { complete: true, lastSeq: 20, checkpointSeq: null });
  const newCard = path.join(root, 'new');
  t.equal((await importInto(archive, newCard)).code, 0);
  t.notOk(existsSync(path.join(newCard, 'journal', 'checkpoint')));
  const j = Journal.open({ dir: path.join(newCard, 'journal'), deviceId: DEVICE, reducer: tally, ...SMALL });
  t.same(j.state, state);
  t.equal(j.recovery.replayed, 20);
  j.close();
});

t.test('a journal without sync state exports, and says everything will be resent', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 3);
  writeFileSync(
    path.join(card, 'sync.json'),
    JSON.stringify({ v: 1, deviceId: 'other', epoch: 1, ackedThrough: 9 }),
  );
  const archive = path.join(root, 'a');
  const ex = await exportTo(path.join(card, 'journal'), archive);
  t.equal(ex.code, 0);
  t.match(ex.json(), { ackedThrough: null, unsynced: 3, syncSkipped: /another journal/ });
  t.match(ex.err.join('\n'), /resend every record; harmless/);
  const newCard = path.join(root, 'new');
  t.equal((await importInto(archive, newCard)).code, 0);
  t.notOk(existsSync(path.join(newCard, 'sync.json')), 'no sync state invented');
});

t.test('a damaged archive is refused before anything is written', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 20, 5);
  const archive = path.join(root, 'a');
  t.equal((await exportTo(path.join(card, 'journal'), archive)).code, 0);
  const good = readFileSync(archive);
  const payloadAt = readFrameEnd(good);
  const cases: [string, Buffer][] = [
    ['magic', flip(good, 2)],
    ['header', flip(good, 20)],
    ['first segment header', flip(good, payloadAt + 40)],
    ['a record', flip(good, payloadAt + FIRST_FRAME_OFFSET + 30)],
    ['last byte', flip(good, good.length - 1)],
    ['truncated', good.subarray(0, good.length - 100)],
    ['extended', Buffer.concat([good, Buffer.alloc(1)])],
  ];
  for (const [what, bytes] of cases) {
    const file = path.join(root, `bad-${what}`);
    writeFileSync(file, bytes);
    const newCard = path.join(root, `new-${what}`);
    const im = await importInto(file, newCard);
    t.equal(im.code, 1, what);
    t.match(im.json(), { error: { code: 'JOURNAL_ARCHIVE_BAD' } }, what);
    t.notOk(existsSync(newCard), `${what}: nothing written`);
  }
});

t.test(
  'checksums are not trusted alone: a re-sealed archive with an altered record is refused',
  async (t) => {
    const root = t.testdir();
    const card = path.join(root, 'old');
    stateWith(card, 20);
    const archive = path.join(root, 'a');
    t.equal((await exportTo(path.join(card, 'journal'), archive)).code, 0);
    const { header, files } = readArchive(readFileSync(archive));
    // Change one sale's amount and give the frame a valid CRC: only the hash chain can tell.
    const seg = Buffer.from(files.get('00000002.seg')!);
    const frame = readFrame(seg, FIRST_FRAME_OFFSET);
    t.equal(frame.kind, 'ok');
    const text = (frame as { payload: Buffer }).payload.toString('utf8');
    const altered = text.replace(
      /"amountMinor":(\d)/,
      (_m, d: string) => `"amountMinor":${(Number(d) + 1) % 10}`,
    );
    t.not(altered, text);
    encodeFrame(altered).copy(seg, FIRST_FRAME_OFFSET);
    files.set('00000002.seg', seg);
    const resealed = reseal(header, files);
    const file = path.join(root, 'resealed');
    writeFileSync(file, resealed);
    const newCard = path.join(root, 'new');
    const im = await importInto(file, newCard);
    t.equal(im.code, 1);
    t.match(im.json(), { error: { code: 'JOURNAL_ARCHIVE_BAD', message: /does not verify.*hash/ } });
    t.notOk(existsSync(newCard));
  },
);

t.test('import refuses a target holding another journal, and re-importing the same is a no-op', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 10, 10);
  const archive = path.join(root, 'a');
  t.equal((await exportTo(path.join(card, 'journal'), archive)).code, 0);

  for (const [what, deviceId, epoch] of [
    ['another device', 'till-2', EPOCH],
    ['another epoch', DEVICE, EPOCH + 1],
  ] as const) {
    const other = path.join(root, what);
    stateWith(other, 2, undefined, deviceId, epoch);
    const before = snapshot(other);
    const im = await importInto(archive, other);
    t.equal(im.code, 1, what);
    t.match(im.json(), { error: { code: 'JOURNAL_IMPORT_TARGET_IN_USE' } }, what);
    t.same(snapshot(other), before, `${what}: untouched`);
  }

  const foreign = path.join(root, 'foreign');
  mkdirSync(path.join(foreign, 'journal'), { recursive: true });
  writeFileSync(path.join(foreign, 'journal', 'notes.txt'), 'x');
  t.match((await importInto(archive, foreign)).json(), { error: { code: 'JOURNAL_IMPORT_TARGET_IN_USE' } });

  const newCard = path.join(root, 'new');
  t.equal((await importInto(archive, newCard)).code, 0);
  const after = snapshot(newCard);
  const again = await importInto(archive, newCard);
  t.equal(again.code, 0);
  t.match(again.json(), { ok: true, imported: false, lastSeq: 10 });
  t.same(snapshot(newCard), after, 'nothing rewritten');

  // The register went on selling on the new card: the archive is still its journal, still a no-op.
  const j = Journal.open({ dir: path.join(newCard, 'journal'), deviceId: DEVICE, ...SMALL });
  j.append(sale(11));
  j.close();
  const later = await importInto(archive, newCard);
  t.equal(later.code, 0);
  t.match(later.json(), { imported: false });
  t.equal(verifyJournal(nodeFs, path.join(newCard, 'journal')).lastSeq, 11, 'the new sale kept');
});

t.test('import replaces a journal with no records (registerd started once on the new card)', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 5, 2);
  const archive = path.join(root, 'a');
  t.equal((await exportTo(path.join(card, 'journal'), archive)).code, 0);
  const newCard = path.join(root, 'new');
  stateWith(newCard, 0, 0, DEVICE, 77);
  const im = await importInto(archive, newCard);
  t.equal(im.code, 0, im.err.join('\n'));
  t.match(im.json(), { imported: true, replaced: ['00000001.seg'] });
  t.same(records(path.join(newCard, 'journal')), records(path.join(card, 'journal')));
  t.match(JSON.parse(readFileSync(path.join(newCard, 'sync.json'), 'utf8')), {
    epoch: EPOCH,
    ackedThrough: 2,
  });
});

t.test('import refuses while registerd answers on the state dir', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 2);
  const archive = path.join(root, 'a');
  t.equal((await exportTo(path.join(card, 'journal'), archive)).code, 0);
  // Unix socket paths are limited to 108 bytes: keep them short.
  const newCard = mkdtempSync(path.join(tmpdir(), 'reg-'));
  t.teardown(() => rmSync(newCard, { recursive: true, force: true }));
  const server = createServer((c) => c.end());
  await new Promise<void>((r) => server.listen(path.join(newCard, 'control.sock'), r));
  let im = await importInto(archive, newCard);
  t.equal(im.code, 1);
  t.match(im.json(), { error: { code: 'JOURNAL_IMPORT_TARGET_IN_USE', message: /registerd is running/ } });
  t.same(readdirSync(newCard), ['control.sock'], 'nothing written');
  await new Promise<void>((r) => server.close(() => r()));
  // A socket file left by a registerd that is gone refuses connections: not in use.
  writeFileSync(path.join(newCard, 'control.sock'), '');
  im = await importInto(archive, newCard);
  t.equal(im.code, 0, im.err.join('\n'));
});

t.test('a torn tail is left out of the export and said so; nothing acknowledged is missing', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 9);
  const journalDir = path.join(card, 'journal');
  const scan = scanJournal(nodeFs, journalDir, { useCheckpoint: false });
  const last = path.join(journalDir, scan.segments.at(-1)!.name);
  const bytes = readFileSync(last);
  Buffer.from([200, 0, 0, 0, 7, 7, 7]).copy(bytes, scan.end!.offset); // a frame that never finished
  writeFileSync(last, bytes);
  const archive = path.join(root, 'a');
  const ex = await exportTo(journalDir, archive);
  t.equal(ex.code, 0);
  t.match(ex.json(), { complete: true, lastSeq: 9, tornTailBytes: 7, leftOut: null });
  t.match(ex.err.join('\n'), /torn tail of 7 bytes.*never acknowledged/);
  t.ok(readFileSync(last).equals(bytes), 'the torn bytes stay on the old card');

  const newCard = path.join(root, 'new');
  t.equal((await importInto(archive, newCard)).code, 0);
  const check = verifyJournal(nodeFs, path.join(newCard, 'journal'));
  t.match(check, { ok: true, lastSeq: 9, tornTailBytes: 0 });
});

t.test(
  'damage in the middle: the good prefix is exported and flagged partial; import refuses it',
  async (t) => {
    const root = t.testdir();
    const card = path.join(root, 'old');
    stateWith(card, 20, 20);
    const journalDir = path.join(card, 'journal');
    const full = records(journalDir);
    const seg2 = path.join(journalDir, '00000002.seg');
    const firstOfSeg2 = readFileSync(seg2).readBigUInt64LE(24);
    const bytes = readFileSync(seg2);
    bytes[FIRST_FRAME_OFFSET + 512 + 40] ^= 0xff; // the second record of segment 2: a failing card
    writeFileSync(seg2, bytes);

    const archive = path.join(root, 'a');
    const ex = await exportTo(journalDir, archive);
    t.equal(ex.code, EXIT_PARTIAL);
    const report = ex.json();
    const lastGood = Number(firstOfSeg2);
    t.match(report, {
      ok: false,
      complete: false,
      lastSeq: lastGood,
      records: lastGood,
      leftOut: {
        finding: 'bad-frame',
        code: 'JOURNAL_CORRUPT',
        file: '00000002.seg',
        offset: FIRST_FRAME_OFFSET + 512,
      },
      // The ledger's ack (20) is past what the archive holds: not carried, the ledger will say so.
      ackedThrough: null,
      syncSkipped: /past the archive/,
    });
    t.ok(report.leftOut.bytes > 0);
    t.same(report.leftOut.files, ['00000002.seg', '00000003.seg']);
    t.match(ex.err.join('\n'), new RegExp(`PARTIAL archive: records after seq ${lastGood} were left out`));

    const { header, files } = readArchive(readFileSync(archive));
    t.equal(header.complete, false);
    const kept: JournalRecord[] = [];
    verifyJournal(fakeDir(files), '/j', (r) => kept.push(r));
    t.same(kept, full.slice(0, lastGood), 'what verifies, exactly');

    const newCard = path.join(root, 'new');
    const im = await importInto(archive, newCard);
    t.equal(im.code, 1);
    t.match(im.json(), { error: { code: 'JOURNAL_ARCHIVE_PARTIAL' } });
    t.notOk(existsSync(newCard));
  },
);

t.test('a journal with nothing that verifies exports nothing', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 3);
  const seg1 = path.join(card, 'journal', '00000001.seg');
  const bytes = readFileSync(seg1);
  bytes[40] ^= 0xff; // the header of the first segment
  writeFileSync(seg1, bytes);
  const out = path.join(root, 'a');
  const ex = await exportTo(path.join(card, 'journal'), out);
  t.equal(ex.code, 1);
  t.match(ex.json(), { error: { code: 'JOURNAL_EXPORT_FAILED', message: /JOURNAL_BAD_HEADER/ } });
  t.notOk(existsSync(out));
  const empty = path.join(root, 'empty');
  mkdirSync(empty);
  t.match((await exportTo(empty, out)).json(), { error: { code: 'JOURNAL_EXPORT_FAILED' } });
});

t.test('command line mistakes exit 2 and write nothing', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 1);
  const dir = path.join(card, 'journal');
  const existing = path.join(root, 'exists');
  writeFileSync(existing, 'keep me');
  for (const argv of [
    ['journal', 'export', dir],
    ['journal', 'export', dir, '--out'],
    ['journal', 'export', dir, '--out', path.join(dir, 'x')],
    ['journal', 'export', dir, '--out', existing],
    ['journal', 'export', path.join(root, 'nope'), '--out', path.join(root, 'x')],
    ['journal', 'export', dir, '--out', path.join(root, 'no', 'x')],
    ['journal', 'import', existing],
    ['journal', 'import', path.join(root, 'nope'), '--state-dir', card],
    ['journal', 'import', existing, '--state-dir', existing],
  ]) {
    const c = capture();
    t.equal(await main(argv, c.io), 2, argv.join(' '));
    t.match(c.json(), { error: { code: 'USAGE' } });
  }
  t.equal(readFileSync(existing, 'utf8'), 'keep me');

  // Not a command line mistake but a write that fails: a clear code, and no archive.
  const out = path.join(root, 'blocked');
  mkdirSync(`${out}.tmp`);
  writeFileSync(path.join(`${out}.tmp`, 'x'), '');
  const c = capture();
  t.equal(await main(['journal', 'export', dir, '--out', out], c.io), 1);
  t.match(c.json(), { error: { code: 'JOURNAL_EXPORT_FAILED', message: /cannot write/ } });
  t.notOk(existsSync(out));
  t.same(
    readdirSync(dir),
    readdirSync(dir).filter((n) => n !== 'x'),
  );
});

t.test('a power cut at any step of an import leaves no journal or the whole one', async (t) => {
  const root = t.testdir();
  const card = path.join(root, 'old');
  stateWith(card, 20, 7);
  const archiveFile = path.join(root, 'a');
  t.equal((await exportTo(path.join(card, 'journal'), archiveFile)).code, 0);
  const archive = readArchive(readFileSync(archiveFile));
  const { header } = archive;

  for (const withEmptyJournal of [false, true]) {
    for (let cut = 1; ; cut++) {
      const io = new FaultFs(new Rng(cut * 2 + Number(withEmptyJournal)));
      if (withEmptyJournal) {
        Journal.open({ dir: '/data/journal', deviceId: DEVICE, epoch: 99, fs: io }).close();
      }
      io.cutPowerAfter(cut);
      let finished = false;
      try {
        importJournal(io, archive, '/data');
        finished = true;
      } catch (err) {
        if (!(err instanceof PowerCut)) throw err;
      }
      io.crash();
      const scan = scanJournal(io, '/data/journal', { useCheckpoint: false });
      const label = `cut at op ${cut}${withEmptyJournal ? ' over an empty journal' : ''}`;
      if (scan.segments.length && scan.epoch === EPOCH) {
        t.notOk(scan.problem, label);
        t.equal(scan.lastSeq, header.lastSeq, `${label}: the whole journal`);
        t.equal(scan.lastHash, header.lastHash, label);
      } else if (scan.segments.length) {
        t.equal(scan.lastSeq, 0, `${label}: only the empty journal, no record`);
      }
      // Running it again always ends with the whole journal.
      const again = importJournal(io, archive, '/data');
      t.ok(io.size('/data/sync.json') >= 0, `${label}: the sync state too`);
      t.equal(verifyJournal(io, '/data/journal').lastHash, header.lastHash, `${label}: again`);
      t.ok(again.imported || scan.lastSeq === header.lastSeq, label);
      if (finished) break;
    }
  }
});

// ---- helpers ----

function flip(buf: Buffer, at: number): Buffer {
  const copy = Buffer.from(buf);
  copy[at] ^= 0x01;
  return copy;
}

function readFrameEnd(archive: Buffer): number {
  const frame = readFrame(archive, ARCHIVE_MAGIC.length);
  if (frame.kind !== 'ok') throw new Error('bad fixture');
  return frame.end;
}

/** An archive with fresh checksums over the given files (what a careless or hostile tool could make). */
function reseal(header: ArchiveHeader, files: Map<string, Buffer>): Buffer {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const parts = header.files.map((f) => files.get(f.name)!);
  const payload = Buffer.concat(parts);
  const h = {
    ...header,
    files: header.files.map((f) => ({ ...f, sha256: sha(files.get(f.name)!) })),
    payloadSha256: sha(payload),
  };
  return Buffer.concat([ARCHIVE_MAGIC, encodeFrame(JSON.stringify(h)), payload]);
}

/** A FaultFs holding the archive's files in /j, for reading them with the journal's own scanner. */
function fakeDir(files: Map<string, Buffer>): FaultFs {
  const io = new FaultFs(new Rng(1));
  for (const [name, b] of files) io.put(`/j/${name}`, b);
  return io;
}

t.test('errors are RegisterErrors with documented codes', async (t) => {
  try {
    readArchive(Buffer.from('not an archive'));
    t.fail('accepted');
  } catch (err) {
    t.ok(isRegisterError(err, 'JOURNAL_ARCHIVE_BAD'));
  }
});
