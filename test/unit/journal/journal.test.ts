import t from 'tap';
import { Journal } from '../../../appliance/journal/journal.js';
import { FIRST_FRAME_OFFSET, alignUp, encodeHeader, segmentName } from '../../../appliance/journal/format.js';
import { scanJournal } from '../../../appliance/journal/scan.js';
import { genesisHash, recordHash } from '../../../cloud-bridge/protocol/record.js';
import { FaultFs } from '../../support/fault-fs.js';
import { Rng } from '../../support/rng.js';
import { JOURNAL_DIR, openTally, sale } from '../../support/journal-fixtures.js';

const seg = (i: number) => `${JOURNAL_DIR}/${segmentName(i)}`;

function snapshot(io: FaultFs): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of io.list(JOURNAL_DIR))
    out.set(name, io.readFile(`${JOURNAL_DIR}/${name}`).toString('hex'));
  return out;
}

t.test('records are chained, gapless, folded, and survive a reopen', async (t) => {
  const io = new FaultFs(new Rng(1));
  const j = openTally(io);
  t.equal(j.recovery.created, true);
  const r1 = j.append(sale(1));
  const r2 = j.append(sale(2));
  t.equal(r1.seq, 1);
  t.equal(r1.prevHash, genesisHash('till-1', 1));
  t.equal(r2.prevHash, r1.hash);
  t.equal(r2.hash, recordHash(r1.hash, r2));
  t.same(j.state, { records: 2, lastSeq: 2, totalMinor: 101 + 201 });
  j.close();

  const again = openTally(io);
  t.equal(again.recovery.created, false);
  t.equal(again.lastSeq, 2);
  t.equal(again.lastHash, r2.hash);
  t.same(again.state, { records: 2, lastSeq: 2, totalMinor: 302 });
  t.same(
    [...again.read()].map((r) => r.hash),
    [r1.hash, r2.hash],
  );
  t.same(
    [...again.read(2)].map((r) => r.seq),
    [2],
  );
});

t.test('segments rotate at the size bound and the chain crosses them', async (t) => {
  const io = new FaultFs(new Rng(2));
  const j = openTally(io, { segmentMaxBytes: 1024 });
  for (let i = 1; i <= 40; i++) j.append(sale(i, 50));
  t.ok(j.segmentCount > 3, `rotated into ${j.segmentCount} segments`);
  for (const name of io.list(JOURNAL_DIR)) {
    if (name.endsWith('.seg')) t.ok(io.size(`${JOURNAL_DIR}/${name}`) <= 1024, `${name} within the bound`);
  }
  j.close();
  const again = openTally(io, { segmentMaxBytes: 1024 });
  t.equal(again.lastSeq, 40);
  t.equal([...again.read()].length, 40);
  t.same(
    [...again.read(33)].map((r) => r.seq),
    [33, 34, 35, 36, 37, 38, 39, 40],
  );
});

t.test('a checkpoint bounds recovery and prune keeps what it must', async (t) => {
  const io = new FaultFs(new Rng(3));
  const opts = { segmentMaxBytes: 1536, checkpointEveryRecords: 25 };
  const j = openTally(io, opts);
  for (let i = 1; i <= 60; i++) j.append(sale(i, 50));
  const expected = j.state;
  j.close();
  const again = openTally(io, opts);
  t.equal(again.recovery.checkpointSeq, 50);
  t.equal(again.recovery.replayed, 10);
  t.same(again.state, expected);

  const before = again.segmentCount;
  // Two records (a sector each, after the header's sector) fit in a segment here: seqs 1-10 fill segments 1-5.
  t.equal(again.prune(10), 5, 'whole segments at or below seq 10 go');
  t.equal(again.segmentCount, before - 5);
  t.equal([...again.read()][0]!.seq, 11, 'old records are gone');
  again.prune(60);
  t.equal([...again.read()][0]!.seq, 49, 'pruning stops at the checkpointed record (seq 50)');
  again.close();
  const third = openTally(io, opts);
  t.same(third.state, expected, 'state comes from the checkpoint once old segments are gone');
  t.equal(third.append(sale(61)).seq, 61);
});

t.test('prune never goes past the checkpoint', async (t) => {
  const io = new FaultFs(new Rng(4));
  const j = openTally(io, { segmentMaxBytes: 512, checkpointEveryRecords: 0 });
  for (let i = 1; i <= 30; i++) j.append(sale(i, 40));
  t.equal(j.prune(30), 0, 'no checkpoint yet: nothing may go');
  j.checkpoint();
  t.ok(j.prune(30) > 0);
});

t.test('a torn tail is cut off, reported, and recovery is idempotent', async (t) => {
  const io = new FaultFs(new Rng(5));
  const j = openTally(io);
  j.append(sale(1));
  j.append(sale(2));
  j.close();
  const end = scanJournal(io, JOURNAL_DIR, { useCheckpoint: false }).end!.offset;
  io.corrupt(seg(1), end, Buffer.from([0x40, 0, 0, 0, 1, 2, 3])); // half a frame, in preallocated space
  const a = openTally(io);
  t.equal(a.recovery.truncatedBytes, 7);
  t.equal(a.lastSeq, 2);
  a.close();
  const b = openTally(io);
  t.equal(b.recovery.truncatedBytes, 0, 'a second recovery changes nothing');
  t.equal(b.lastSeq, 2);
});

t.test('damage before the tail is corruption: refused, copied aside, nothing changed', async (t) => {
  const io = new FaultFs(new Rng(6));
  const j = openTally(io);
  for (let i = 1; i <= 5; i++) j.append(sale(i));
  j.close();
  io.corrupt(seg(1), FIRST_FRAME_OFFSET + 30, Buffer.from('X'));
  const before = snapshot(io);
  t.throws(() => openTally(io), { code: 'JOURNAL_CORRUPT' });
  t.same(snapshot(io), before, 'the journal directory is untouched');
  const copies = io.list(`${JOURNAL_DIR}-quarantine`);
  t.equal(copies.length, 1, 'a copy of the damaged segment is kept');
  t.throws(() => openTally(io), { code: 'JOURNAL_CORRUPT' });
  t.equal(io.list(`${JOURNAL_DIR}-quarantine`).length, 1, 'refusing again makes no second copy');

  const scan = scanJournal(io, JOURNAL_DIR, { useCheckpoint: false });
  t.equal(scan.problem?.finding, 'bad-frame');
  t.equal(scan.problem?.offset, FIRST_FRAME_OFFSET);
});

t.test('a damaged frame in a closed segment is corruption even at its end', async (t) => {
  const io = new FaultFs(new Rng(7));
  const j = openTally(io, { segmentMaxBytes: 1024 });
  for (let i = 1; i <= 12; i++) j.append(sale(i, 60));
  j.close();
  // One record per segment here; damage the last bytes of segment 1's only record.
  const data = io.readFile(seg(1));
  const end = FIRST_FRAME_OFFSET + 8 + data.readUInt32LE(FIRST_FRAME_OFFSET);
  io.corrupt(seg(1), end - 3, Buffer.from('zzz'));
  t.throws(() => openTally(io, { segmentMaxBytes: 1024 }), { code: 'JOURNAL_CORRUPT' });
});

t.test('a content change that keeps the CRC valid still breaks the chain', async (t) => {
  const io = new FaultFs(new Rng(8));
  const j = openTally(io);
  j.append(sale(1));
  const r2 = j.append(sale(2));
  j.close();
  // Rewrite record 2 with a new amount and a correct frame, as a forger would.
  const forged = { ...r2, events: [{ ...r2.events[0]!, amountMinor: 1 }] };
  const { encodeFrame } = await import('../../../appliance/journal/format.js');
  const data = io.readFile(seg(1));
  const second = alignUp(FIRST_FRAME_OFFSET + 8 + data.readUInt32LE(FIRST_FRAME_OFFSET));
  io.put(
    seg(1),
    Buffer.concat([data.subarray(0, second), encodeFrame(Buffer.from(JSON.stringify(forged)), true)]),
  );
  t.throws(() => openTally(io), { code: 'JOURNAL_CORRUPT', message: /hash/ });
});

t.test(
  'bad input: the state dir of another device, epoch or version, or with a stranger in it',
  async (t) => {
    const make = () => {
      const io = new FaultFs(new Rng(9));
      const j = openTally(io);
      j.append(sale(1));
      j.close();
      return io;
    };
    const refused = (io: FaultFs, code: string, extra = {}) => {
      const before = snapshot(io);
      t.throws(() => openTally(io, extra), { code }, code);
      t.same(snapshot(io), before, `${code}: nothing changed`);
    };
    refused(make(), 'JOURNAL_FOREIGN_DEVICE', { deviceId: 'till-2' });
    refused(make(), 'JOURNAL_EPOCH_MISMATCH', { epoch: 2 });

    const stranger = make();
    stranger.put(`${JOURNAL_DIR}/notes.txt`, Buffer.from('hello'));
    refused(stranger, 'JOURNAL_FOREIGN_FILE');

    const zip = make();
    zip.put(
      `${JOURNAL_DIR}/${segmentName(2)}`,
      Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(200)]),
    );
    refused(zip, 'JOURNAL_FOREIGN_FILE');

    const future = make();
    future.put(
      `${JOURNAL_DIR}/${segmentName(2)}`,
      encodeHeader({ version: 9, deviceId: 'till-1', epoch: 1, index: 2, firstSeq: 2 }),
    );
    refused(future, 'JOURNAL_UNKNOWN_VERSION');

    const gap = make();
    gap.put(
      `${JOURNAL_DIR}/${segmentName(3)}`,
      encodeHeader({ version: 1, deviceId: 'till-1', epoch: 1, index: 3, firstSeq: 2 }),
    );
    refused(gap, 'JOURNAL_CORRUPT');

    t.throws(() => openTally(new FaultFs(new Rng(1)), { deviceId: 'till/1' }), { code: 'CONFIG_INVALID' });
    t.throws(() => openTally(new FaultFs(new Rng(1)), { epoch: 0 }), { code: 'CONFIG_INVALID' });
    t.throws(
      () => openTally(new FaultFs(new Rng(1)), { epoch: undefined }),
      { code: 'CONFIG_INVALID' },
      'a new journal needs an epoch',
    );
  },
);

t.test('a full disk refuses the record, keeps the journal usable and loses nothing', async (t) => {
  const io = new FaultFs(new Rng(10));
  const j = openTally(io, { segmentMaxBytes: 1024 });
  j.append(sale(1));
  // Segments are preallocated, so a full disk shows when the next one cannot be made…
  io.capacityBytes = io.usedBytes() + 20;
  t.throws(() => j.append(sale(2, 1000)), { code: 'JOURNAL_DISK_FULL' });
  t.equal(j.lastSeq, 1);
  // …or when one record outgrows the preallocated space.
  t.throws(() => j.append(sale(2, 1200)), { code: 'JOURNAL_DISK_FULL' });
  io.capacityBytes = Infinity;
  t.equal(j.append(sale(2)).seq, 2, 'appends again once there is room');
  const freshIo = new FaultFs(new Rng(10));
  const fresh = openTally(freshIo, { segmentMaxBytes: 1024 });
  freshIo.capacityBytes = freshIo.usedBytes() + 100;
  t.throws(
    () => fresh.append(sale(1, 2000)),
    { code: 'JOURNAL_DISK_FULL' },
    'a write past the preallocation',
  );
  t.equal(fresh.lastSeq, 0);
  freshIo.capacityBytes = Infinity;
  t.equal(fresh.append(sale(1)).seq, 1);
  j.close();
  const again = openTally(io, { segmentMaxBytes: 1024 });
  t.equal(again.lastSeq, 2);
  t.equal(again.recovery.truncatedBytes, 0);
  t.same(again.state.totalMinor, 101 + 201);
});

t.test('an fsync error is fatal: never retried, never acknowledged', async (t) => {
  const io = new FaultFs(new Rng(11));
  const j = openTally(io);
  j.append(sale(1));
  io.failNext('fdatasync', 'EIO');
  t.throws(() => j.append(sale(2)), { code: 'JOURNAL_FATAL' });
  t.equal(j.lastSeq, 1, 'the record was not acknowledged');
  t.throws(() => j.append(sale(3)), { code: 'JOURNAL_FATAL' }, 'stays dead');
  io.crash();
  const again = openTally(io);
  t.equal(again.lastSeq, 1, 'after the reboot the unacknowledged record is not there');
});

t.test('bad records are refused before anything is written', async (t) => {
  const io = new FaultFs(new Rng(12));
  const j = openTally(io);
  const used = io.usedBytes();
  const bad = (events: unknown, code: string) => t.throws(() => j.append(events as never), { code }, code);
  bad([], 'JOURNAL_BAD_RECORD');
  bad([{ amountMinor: 1 }], 'JOURNAL_BAD_RECORD');
  bad([{ type: 'x', amountMinor: NaN }], 'JOURNAL_BAD_RECORD');
  bad([{ type: 'x', blob: 'y'.repeat(300 * 1024) }], 'JOURNAL_RECORD_TOO_LARGE');
  t.equal(io.usedBytes(), used);
  t.equal(j.lastSeq, 0);
  j.close();
  t.throws(() => j.append(sale(1)), { code: 'JOURNAL_CLOSED' });
});

t.test('leftover temp files are removed and a damaged checkpoint is replayed around', async (t) => {
  const io = new FaultFs(new Rng(13));
  const j = openTally(io, { checkpointEveryRecords: 3 });
  for (let i = 1; i <= 7; i++) j.append(sale(i));
  const state = j.state;
  j.close();
  io.put(`${JOURNAL_DIR}/${segmentName(2)}.tmp`, Buffer.from('half a header'));
  io.corrupt(`${JOURNAL_DIR}/checkpoint`, 20, Buffer.from('!!'));
  const again = openTally(io, { checkpointEveryRecords: 3 });
  t.same(again.recovery.removedTempFiles, [`${segmentName(2)}.tmp`]);
  t.ok(again.recovery.checkpointIgnored, 'the damaged checkpoint was noticed');
  t.equal(again.recovery.replayed, 7);
  t.same(again.state, state);
  t.notOk(io.list(JOURNAL_DIR).some((n) => n.endsWith('.tmp')));
});

t.test('Journal.open on a real directory', async (t) => {
  const dir = t.testdir();
  const j = Journal.open({ dir: `${dir}/journal`, deviceId: 'till-1', epoch: 1 });
  j.append(sale(1));
  j.close();
  const again = Journal.open({ dir: `${dir}/journal`, deviceId: 'till-1' });
  t.equal(again.lastSeq, 1);
  t.equal(again.epoch, 1);
  again.close();
});

t.test('a checkpoint that cannot be written never fails the append it rides on', async (t) => {
  const io = new FaultFs(new Rng(14));
  const j = openTally(io, { checkpointEveryRecords: 2 });
  j.append(sale(1));
  io.failNext('syncDir', 'EIO'); // the checkpoint's rename is what needs the directory sync
  t.equal(j.append(sale(2)).seq, 2, 'acknowledged although its checkpoint failed');
  t.equal(j.append(sale(3)).seq, 3, 'and the journal goes on');
  t.equal(j.append(sale(4)).seq, 4);
  io.capacityBytes = io.usedBytes();
  t.throws(() => j.checkpoint(), { code: 'JOURNAL_DISK_FULL' }, 'an explicit checkpoint reports it');
  io.capacityBytes = Infinity;
  t.equal(j.append(sale(5)).seq, 5);
});

t.test('segments gone but a checkpoint left: refused, never restarted at seq 1', async (t) => {
  const io = new FaultFs(new Rng(15));
  const j = openTally(io, { checkpointEveryRecords: 1 });
  j.append(sale(1));
  j.close();
  io.put(`${JOURNAL_DIR}/${segmentName(1)}`, Buffer.alloc(0));
  const { unlink } = io;
  unlink.call(io, `${JOURNAL_DIR}/${segmentName(1)}`);
  t.throws(() => openTally(io), { code: 'JOURNAL_CORRUPT' });
});

t.test('a new journal takes newEpoch when no epoch is pinned', async (t) => {
  const io = new FaultFs(new Rng(16));
  const j = openTally(io, { epoch: undefined, newEpoch: () => 77 });
  t.equal(j.epoch, 77);
  j.append(sale(1));
  j.close();
  t.equal(
    openTally(io, { epoch: undefined, newEpoch: () => 78 }).epoch,
    77,
    'an existing journal keeps its own',
  );
});

t.test('after an fsync error the journal is not reopened until a reboot', async (t) => {
  const io = new FaultFs(new Rng(17));
  let j = openTally(io);
  j.append(sale(1));
  io.failNext('fdatasync', 'EIO');
  t.throws(() => j.append(sale(2)), { code: 'JOURNAL_FATAL' });
  // Linux may have marked the failed pages clean: the cache shows record 2, the disk may not have it.
  t.throws(() => openTally(io), { code: 'JOURNAL_FATAL', message: /reboot/ });
  io.crash();
  j = openTally(io);
  t.equal(
    j.lastSeq,
    1,
    'after the reboot, the record whose fsync failed is gone, as it was never acknowledged',
  );
  t.equal(j.append(sale(2)).seq, 2);
});

t.test('a write cut short in its padding still leaves the next record on a sector boundary', async (t) => {
  const io = new FaultFs(new Rng(18));
  const j = openTally(io, { segmentMaxBytes: 4096 });
  j.append(sale(1));
  j.close();
  // A process killed while a full disk cut its last write short in the zero padding: the frame is
  // whole, the file ends before the sector boundary.
  const file = seg(1);
  const data = io.readFile(file);
  const frameEnd = FIRST_FRAME_OFFSET + 8 + data.readUInt32LE(FIRST_FRAME_OFFSET);
  io.put(file, data.subarray(0, frameEnd + 10));
  const again = openTally(io, { segmentMaxBytes: 4096 });
  t.equal(again.lastSeq, 1);
  again.append(sale(2));
  again.close();
  const verify = scanJournal(io, JOURNAL_DIR, { useCheckpoint: false });
  t.equal(verify.problem, undefined, 'every frame is where a reader looks for it');
  t.equal(verify.lastSeq, 2);
});
