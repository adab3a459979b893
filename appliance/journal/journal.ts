// The write-ahead journal: the single writer of the register's history on flash (◆ docs/journal.md).
// An append returns only after its record is fdatasync'd; opening a journal is recovering it.
import * as path from 'node:path';
import { RegisterError, isRegisterError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock } from '../clock.js';
import {
  genesisHash,
  sealRecord,
  type JournalEvent,
  type JournalRecord,
} from '../../cloud-bridge/protocol/record.js';
import { writeCheckpoint } from './checkpoint.js';
import {
  FIRST_FRAME_OFFSET,
  FORMAT_VERSION,
  MAX_RECORD_BYTES,
  alignUp,
  encodeFrame,
  encodeHeader,
  isValidDeviceId,
  isValidEpoch,
  readFrame,
  segmentName,
} from './format.js';
import { ensureDurableDir, nodeFs, writeFileAtomic, type JournalFs } from './fs.js';
import {
  DECISIONS,
  endOfData,
  scanJournal,
  type Position,
  type Problem,
  type ScanResult,
  type SegmentInfo,
} from './scan.js';

/**
 * How much of a segment read() takes at a time: 1 MiB, more than the largest frame (a 256 KiB record
 * and its header), so a window that starts at a frame always holds it whole.
 */
export const READ_WINDOW_BYTES = 1024 * 1024;

/** State = fold(records). The state must survive a JSON round trip: checkpoints store it as JSON. */
export interface Reducer<S> {
  initial(): S;
  /** Pure: returns the next state (it may reuse the old object). Must not throw for a journaled record. */
  apply(state: S, record: JournalRecord): S;
}

export interface JournalOptions<S> {
  /** The journal directory, `<stateDir>/journal`. */
  dir: string;
  deviceId: string;
  /** When given, an existing journal must match it, and a new one gets it. */
  epoch?: number;
  /**
   * The epoch for a new journal when `epoch` is not given. A journal made anew (a wiped or replaced
   * card) must never reuse an epoch: its seqs restart at 1 and the ledger would take them for
   * duplicates. registerd passes a random one.
   */
  newEpoch?: () => number;
  fs?: JournalFs;
  clock?: Clock;
  reducer?: Reducer<S>;
  /** Rotate to a new segment past this size. Default 8 MiB: about 30,000 sales, and a recovery read
   *  of one segment stays a fraction of a second on a Pi's SD card. */
  segmentMaxBytes?: number;
  /** Write a checkpoint every this many records. Default 5,000: bounds recovery to reading and
   *  folding at most that many records, about 150 ms on a Pi 4. 0 disables automatic checkpoints. */
  checkpointEveryRecords?: number;
  /** Where damaged segments are copied before recovery refuses. Default `<dir>-quarantine`. */
  quarantineDir?: string;
  log?: Logger;
}

export interface RecoveryReport {
  created: boolean;
  segments: number;
  /** Records read and folded (those after the checkpoint). */
  replayed: number;
  lastSeq: number;
  checkpointSeq: number;
  checkpointIgnored?: string;
  removedTempFiles: string[];
  truncatedBytes: number;
}

const DEFAULT_SEGMENT_MAX_BYTES = 8 * 1024 * 1024;
const DEFAULT_CHECKPOINT_EVERY = 5000;
/** Bound on events per record: one command is one record, and no till command needs more. */
export const MAX_EVENTS_PER_RECORD = 1000;

const nullReducer: Reducer<undefined> = { initial: () => undefined, apply: () => undefined };

export class Journal<S = undefined> {
  readonly dir: string;
  readonly deviceId: string;
  readonly epoch: number;
  readonly recovery: RecoveryReport;

  private readonly io: JournalFs;
  private readonly clock: Clock;
  private readonly reducer: Reducer<S>;
  private readonly segmentMaxBytes: number;
  private readonly checkpointEvery: number;
  private readonly log: Logger;
  private segments: SegmentInfo[];
  private fd: number;
  /** Committed (durable) size of the open, last segment. */
  private size: number;
  private seq: number;
  private hash: string;
  private lastRecordAt: Position | undefined;
  private foldedState: S;
  private checkpointSeq: number;
  private nextCheckpointSeq: number;
  private failed: RegisterError | undefined;
  private closed = false;

  private constructor(init: {
    opts: JournalOptions<S>;
    io: JournalFs;
    epoch: number;
    scan: ScanResult;
    state: S;
    fd: number;
    size: number;
    recovery: RecoveryReport;
  }) {
    const { opts, scan } = init;
    this.dir = opts.dir;
    this.deviceId = opts.deviceId;
    this.epoch = init.epoch;
    this.io = init.io;
    this.clock = opts.clock ?? systemClock();
    this.reducer = opts.reducer ?? (nullReducer as unknown as Reducer<S>);
    this.segmentMaxBytes = opts.segmentMaxBytes ?? DEFAULT_SEGMENT_MAX_BYTES;
    this.checkpointEvery = opts.checkpointEveryRecords ?? DEFAULT_CHECKPOINT_EVERY;
    this.log = opts.log ?? silentLogger;
    this.segments = scan.segments;
    this.fd = init.fd;
    this.size = init.size;
    this.seq = scan.lastSeq;
    this.hash = scan.lastHash;
    this.lastRecordAt = scan.lastRecordAt;
    this.foldedState = init.state;
    this.checkpointSeq = init.recovery.checkpointSeq;
    this.nextCheckpointSeq = this.checkpointSeq + this.checkpointEvery;
    this.recovery = init.recovery;
  }

  /**
   * Open (and so recover) the journal in `opts.dir`, creating it when the directory has no segment.
   * Refuses with a RegisterError, changing nothing in the directory, when it finds anything but a torn
   * tail or leftover temp files (see DECISIONS in scan.ts).
   */
  static open<S = undefined>(opts: JournalOptions<S>): Journal<S> {
    const io = opts.fs ?? nodeFs;
    const log = opts.log ?? silentLogger;
    const reducer = opts.reducer ?? (nullReducer as unknown as Reducer<S>);
    if (!isValidDeviceId(opts.deviceId)) {
      throw new RegisterError('CONFIG_INVALID', `invalid device id ${JSON.stringify(opts.deviceId)}`);
    }
    if (opts.epoch !== undefined && !isValidEpoch(opts.epoch)) {
      throw new RegisterError(
        'CONFIG_INVALID',
        `invalid epoch ${opts.epoch}: a whole number from 1 to 2^32-1`,
      );
    }
    if (fatalBoots.get(io)?.get(path.resolve(opts.dir)) === bootOf(io)) {
      throw new RegisterError(
        'JOURNAL_FATAL',
        'this journal had an fsync error in this boot: reboot before reopening it',
      );
    }
    ensureDurableDir(io, opts.dir);

    let state = reducer.initial();
    const scan = scanJournal(io, opts.dir, {
      deviceId: opts.deviceId,
      epoch: opts.epoch,
      useCheckpoint: true,
      onCheckpoint: (cp) => {
        state = cp.state as S;
      },
      onRecord: (record) => {
        state = reducer.apply(state, record);
      },
    });
    if (scan.problem) Journal.refuse(io, opts, scan.problem, log);

    const recovery: RecoveryReport = {
      created: false,
      segments: scan.segments.length,
      replayed: scan.records,
      lastSeq: scan.lastSeq,
      checkpointSeq: scan.startedFromCheckpoint ? scan.checkpoint!.seq : 0,
      checkpointIgnored: scan.checkpointIgnored,
      removedTempFiles: [...scan.tempFiles],
      truncatedBytes: 0,
    };

    // Everything checked: now the only two changes recovery ever makes.
    for (const name of scan.tempFiles) io.unlink(path.join(opts.dir, name));
    if (scan.tempFiles.length) {
      io.syncDir(opts.dir);
      log.info({ files: scan.tempFiles, why: DECISIONS['temp-file'].why }, 'removed temp files');
    }

    const epoch = scan.epoch ?? opts.epoch ?? (scan.segments.length === 0 ? opts.newEpoch?.() : undefined);
    let fd: number;
    let size: number;
    if (scan.segments.length === 0) {
      if (epoch === undefined || !isValidEpoch(epoch)) {
        throw new RegisterError('CONFIG_INVALID', 'an epoch (or newEpoch) is needed to create a journal');
      }
      const seg = createSegment(
        io,
        opts.dir,
        { deviceId: opts.deviceId, epoch, index: 1, firstSeq: 1 },
        opts.segmentMaxBytes ?? DEFAULT_SEGMENT_MAX_BYTES,
      );
      scan.segments.push(seg);
      scan.lastSeq = 0;
      scan.lastHash = genesisHash(opts.deviceId, epoch);
      recovery.created = true;
      recovery.segments = 1;
      fd = io.open(path.join(opts.dir, seg.name), 'update');
      size = FIRST_FRAME_OFFSET;
    } else {
      const last = scan.segments[scan.segments.length - 1]!;
      fd = io.open(path.join(opts.dir, last.name), 'update');
      size = scan.end?.segment === last.index ? scan.end.offset : FIRST_FRAME_OFFSET;
      if (scan.tornTail) {
        try {
          io.truncate(fd, scan.tornTail.offset);
          io.fdatasync(fd);
        } catch (err) {
          io.close(fd);
          throw new RegisterError('JOURNAL_FATAL', `could not cut the torn tail of ${last.name}`, {}, err);
        }
        recovery.truncatedBytes = scan.tornTail.bytes;
        log.warn(
          { segment: last.name, offset: scan.tornTail.offset, bytes: scan.tornTail.bytes },
          'cut a torn tail',
        );
      }
      try {
        makeDurable(io, opts.dir, fd);
      } catch (err) {
        io.close(fd);
        throw new RegisterError('JOURNAL_FATAL', `could not make the recovered journal durable`, {}, err);
      }
    }
    return new Journal<S>({ opts, io, epoch: epoch!, scan, state, fd, size, recovery });
  }

  /** Copy the damaged segment aside (once), raise the alarm, and refuse to open. */
  private static refuse<S>(io: JournalFs, opts: JournalOptions<S>, problem: Problem, log: Logger): never {
    const decision = DECISIONS[problem.finding];
    const details: Record<string, unknown> = {
      finding: problem.finding,
      file: problem.file,
      offset: problem.offset,
    };
    if (problem.file && decision.code === 'JOURNAL_CORRUPT') {
      const qdir = opts.quarantineDir ?? `${opts.dir}-quarantine`;
      const copy = path.join(qdir, `${problem.file}.${problem.offset ?? 0}.bad`);
      try {
        if (io.size(copy) < 0) {
          ensureDurableDir(io, qdir);
          writeFileAtomic(io, copy, io.readFile(path.join(opts.dir, problem.file)));
        }
        details.copy = copy;
      } catch (err) {
        details.copyFailed = String(err);
      }
    }
    log.error({ alarm: 'journal', ...details, why: decision.why }, problem.message);
    throw new RegisterError(decision.code ?? 'JOURNAL_CORRUPT', problem.message, details);
  }

  get lastSeq(): number {
    return this.seq;
  }

  get lastHash(): string {
    return this.hash;
  }

  /** The fold of every durable record. */
  get state(): S {
    return this.foldedState;
  }

  /**
   * Append one record holding `events` (atomic together) and return it once it is durable.
   * On a write error nothing is recorded and the journal stays usable; on an fdatasync error the
   * journal is dead (JOURNAL_FATAL) and must be reopened: a failed fsync is never retried and acked.
   */
  append(events: JournalEvent[]): JournalRecord {
    this.assertWritable();
    if (!Array.isArray(events) || events.length === 0 || events.length > MAX_EVENTS_PER_RECORD) {
      throw new RegisterError('JOURNAL_BAD_RECORD', `a record holds 1 to ${MAX_EVENTS_PER_RECORD} events`);
    }
    for (const e of events) {
      if (typeof e !== 'object' || e === null || typeof e.type !== 'string' || e.type === '') {
        throw new RegisterError('JOURNAL_BAD_RECORD', 'every event needs a string type');
      }
    }
    const body = {
      seq: this.seq + 1,
      ts: Math.trunc(this.clock.nowMs()),
      clock: this.clockQuality(),
      events,
    };
    let sealed: ReturnType<typeof sealRecord>;
    try {
      sealed = sealRecord(this.hash, body);
    } catch (err) {
      throw new RegisterError('JOURNAL_BAD_RECORD', `events have no canonical JSON form: ${String(err)}`);
    }
    const { record, payload } = sealed;
    const frame = encodeFrame(payload, true);
    const bytes = frame.readUInt32LE(0);
    if (bytes > MAX_RECORD_BYTES) {
      throw new RegisterError('JOURNAL_RECORD_TOO_LARGE', `record of ${bytes} bytes`, {
        bytes,
        max: MAX_RECORD_BYTES,
      });
    }
    if (this.size + frame.length > this.segmentMaxBytes && this.size > FIRST_FRAME_OFFSET)
      this.rotate(record.seq);

    const at = this.size;
    try {
      this.io.write(this.fd, frame, at);
    } catch (err) {
      this.undoWrite(at, err);
    }
    try {
      this.io.fdatasync(this.fd);
    } catch (err) {
      this.fail(err, 'fdatasync failed');
    }
    this.size = at + frame.length;
    this.seq = record.seq;
    this.hash = record.hash;
    this.lastRecordAt = { segment: this.currentSegment.index, offset: at };
    // Fold what recovery will fold: the record as stored, not the caller's objects (a Date, a getter
    // or an undefined field would otherwise fold differently live and after a restart).
    const stored = JSON.parse(payload) as JournalRecord;
    this.foldedState = this.reducer.apply(this.foldedState, stored);
    if (this.checkpointEvery > 0 && this.seq >= this.nextCheckpointSeq) {
      try {
        this.checkpoint();
      } catch (err) {
        // The record is durable and acknowledged whatever happens to the checkpoint, which is only a
        // cache of the fold: try again a while later.
        this.nextCheckpointSeq = this.seq + Math.ceil(this.checkpointEvery / 10);
        this.log.warn({ err: String(err) }, 'checkpoint failed; the journal goes on without it');
      }
    }
    return stored;
  }

  /**
   * Write the folded state as of the last record, so recovery starts there. A failure (a full disk)
   * is reported but harms nothing: the previous checkpoint, or none, stays valid.
   */
  checkpoint(): void {
    this.assertWritable();
    if (this.seq === 0 || !this.lastRecordAt || this.seq === this.checkpointSeq) return;
    try {
      writeCheckpoint(this.io, this.dir, {
        v: FORMAT_VERSION,
        deviceId: this.deviceId,
        epoch: this.epoch,
        seq: this.seq,
        hash: this.hash,
        segment: this.lastRecordAt.segment,
        offset: this.lastRecordAt.offset,
        state: this.foldedState,
      });
    } catch (err) {
      const full = (err as NodeJS.ErrnoException)?.code === 'ENOSPC';
      throw new RegisterError(
        full ? 'JOURNAL_DISK_FULL' : 'JOURNAL_WRITE_FAILED',
        'checkpoint not written',
        {},
        err,
      );
    }
    this.checkpointSeq = this.seq;
    this.nextCheckpointSeq = this.seq + this.checkpointEvery;
  }

  /**
   * Records from `fromSeq` on, in order, as durable on flash. Reads segment by segment, so memory
   * stays bounded by one segment whatever the journal's length.
   */
  *read(fromSeq = 1): Generator<JournalRecord> {
    for (const { seq, payload } of this.readPayloads(fromSeq)) {
      const record = JSON.parse(payload) as JournalRecord;
      if (record.seq !== seq) {
        throw new RegisterError(
          'JOURNAL_CORRUPT',
          `${this.segmentOf(seq)}: record ${record.seq} where ${seq} belongs`,
          {
            file: this.segmentOf(seq),
          },
        );
      }
      yield record;
    }
  }

  /**
   * As read(), the records' payloads as on flash: each one the JCS text of its record, the form the
   * cloud bridge sends. Not parsed: a reader that only passes records on spends nothing on them.
   */
  *readPayloads(fromSeq = 1): Generator<{ seq: number; payload: string }> {
    let start = 0;
    for (let i = 0; i < this.segments.length; i++) {
      if (this.segments[i]!.header.firstSeq <= fromSeq) start = i;
    }
    for (let i = start; i < this.segments.length; i++) {
      const seg = this.segments[i]!;
      const file = path.join(this.dir, seg.name);
      const end = i === this.segments.length - 1 ? this.size : this.io.size(file);
      // Records in a segment are consecutive from its first seq, so frames before fromSeq are only
      // counted, not parsed; and a reader that comes back for what follows (the cloud bridge, every
      // few records) starts where the last read stopped instead of at the top of an 8 MiB segment.
      const hint = this.readHint?.segment === seg.name && this.readHint.seq <= fromSeq ? this.readHint : null;
      const from = hint?.offset ?? FIRST_FRAME_OFFSET;
      let seq = hint?.seq ?? seg.header.firstSeq;
      // Read a window at a time: a reader that stops after a few records reads little past them.
      let windowStart = from;
      let buf = this.readRange(file, windowStart, Math.min(end, windowStart + READ_WINDOW_BYTES));
      let offset = 0;
      while (windowStart + offset < end) {
        let frame = readFrame(buf, offset);
        if (frame.kind === 'short' && windowStart + buf.length < end) {
          // The frame runs past the window: the next window starts at it, and holds any frame whole.
          windowStart += offset;
          buf = this.readRange(file, windowStart, Math.min(end, windowStart + READ_WINDOW_BYTES));
          offset = 0;
          frame = readFrame(buf, offset);
        }
        if (frame.kind !== 'ok') {
          // Only preallocated zeros end a closed segment; anything else changed since recovery checked it.
          if (endOfData(this.readRange(file, windowStart + offset, end), 0) === 0) break;
          throw new RegisterError(
            'JOURNAL_CORRUPT',
            `${seg.name} byte ${windowStart + offset} no longer reads back`,
            {
              file: seg.name,
              offset: windowStart + offset,
            },
          );
        }
        const frameAt = windowStart + offset;
        offset = alignUp(frame.end);
        if (seq > this.seq) return;
        if (seq >= fromSeq) {
          // At this record, not past it: a reader that stops on a record it did not use (the bridge, when
          // its batches in flight are full) comes back for that same record.
          this.readHint = { segment: seg.name, seq, offset: frameAt };
          yield { seq, payload: frame.payload.toString('utf8') };
        }
        seq++;
      }
    }
  }

  /** The name of the segment that holds `seq`. */
  private segmentOf(seq: number): string {
    let name = this.segments[0]?.name ?? '';
    for (const seg of this.segments) if (seg.header.firstSeq <= seq) name = seg.name;
    return name;
  }

  /** Where the last read() stopped: the last record it gave, its seq and its offset in that segment. */
  private readHint: { segment: string; seq: number; offset: number } | null = null;

  /** Bytes [from, end) of a segment file. */
  private readRange(file: string, from: number, end: number): Buffer {
    // Uninitialised is fine: only the bytes read are returned.
    const buf = Buffer.allocUnsafe(Math.max(0, end - from));
    if (!buf.length) return buf;
    const fd = this.io.open(file, 'read');
    try {
      let got = 0;
      while (got < buf.length) {
        const n = this.io.read(fd, buf.subarray(got), from + got);
        if (n <= 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      this.io.close(fd);
    }
  }

  /**
   * Remove whole segments whose records are all at or below `throughSeq` (e.g. acked by the ledger)
   * and covered by the checkpoint. The open segment is never removed. Oldest first, each removal made
   * durable before the next, so a power cut leaves a contiguous run of segments.
   */
  prune(throughSeq: number): number {
    this.assertWritable();
    // The checkpointed record itself stays: recovery reads it to check the checkpoint's hash.
    const limit = Math.min(throughSeq, this.checkpointSeq - 1);
    let removed = 0;
    while (this.segments.length > 1 && this.segments[1]!.header.firstSeq - 1 <= limit) {
      const seg = this.segments[0]!;
      try {
        this.io.unlink(path.join(this.dir, seg.name));
        this.io.syncDir(this.dir);
      } catch (err) {
        this.fail(err, `could not remove ${seg.name}`);
      }
      this.segments.shift();
      removed++;
    }
    return removed;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.io.close(this.fd);
    } catch {
      // Closing cannot lose anything: every acknowledged record was fdatasync'd.
    }
  }

  private get currentSegment(): SegmentInfo {
    return this.segments[this.segments.length - 1]!;
  }

  private clockQuality(): 'trusted' | 'untrusted' {
    return this.clock.trusted() ? 'trusted' : 'untrusted';
  }

  private assertWritable(): void {
    if (this.failed) throw this.failed;
    if (this.closed) throw new RegisterError('JOURNAL_CLOSED');
  }

  private rotate(firstSeq: number): void {
    const index = this.currentSegment.index + 1;
    let seg: SegmentInfo;
    let fd: number;
    try {
      seg = createSegment(
        this.io,
        this.dir,
        { deviceId: this.deviceId, epoch: this.epoch, index, firstSeq },
        this.segmentMaxBytes,
      );
      fd = this.io.open(path.join(this.dir, seg.name), 'update');
    } catch (err) {
      // Nothing was acknowledged yet; a full disk leaves at most a temp file that recovery removes.
      if ((err as NodeJS.ErrnoException)?.code === 'ENOSPC')
        throw new RegisterError('JOURNAL_DISK_FULL', undefined, {}, err);
      this.fail(err, 'could not start a new segment');
    }
    try {
      this.io.close(this.fd);
    } catch {
      // The old segment is complete and synced.
    }
    this.segments.push(seg);
    this.fd = fd;
    this.size = FIRST_FRAME_OFFSET;
    this.log.info({ segment: seg.name, firstSeq }, 'new segment');
  }

  /**
   * A failed write was never acknowledged: cut it back off, durably (a later rotation must leave no
   * torn bytes behind in a closed segment), and stay usable; or die if even that fails.
   */
  private undoWrite(at: number, err: unknown): never {
    try {
      this.io.truncate(this.fd, at);
      this.io.fdatasync(this.fd);
    } catch (err2) {
      this.fail(err2, 'could not undo a failed write');
    }
    const full = (err as NodeJS.ErrnoException)?.code === 'ENOSPC';
    this.log.error({ code: (err as NodeJS.ErrnoException)?.code, at }, 'journal write failed');
    throw new RegisterError(full ? 'JOURNAL_DISK_FULL' : 'JOURNAL_WRITE_FAILED', undefined, {}, err);
  }

  private fail(err: unknown, what: string): never {
    if (isRegisterError(err)) throw err;
    if ((err as NodeJS.ErrnoException)?.syscall !== undefined) {
      // A system call failed: the kernel's view of the file may no longer match the disk.
      const marks = fatalBoots.get(this.io) ?? new Map<string, string>();
      marks.set(path.resolve(this.dir), bootOf(this.io));
      fatalBoots.set(this.io, marks);
    }
    this.failed = new RegisterError(
      'JOURNAL_FATAL',
      `${what}: ${String((err as Error)?.message ?? err)}`,
      {},
      err,
    );
    this.log.error({ alarm: 'journal', err: String(err) }, what);
    try {
      this.io.close(this.fd);
    } catch {
      // already failing
    }
    throw this.failed;
  }
}

/**
 * What recovery read may live only in the page cache: a segment renamed by a process that died before
 * its directory fsync, a tail written but never fdatasync'd. Appending on top would acknowledge records
 * that a power cut could take away with what they chain to, so recovery fdatasyncs the last segment
 * and fsyncs the journal directory and its parent before anything new is acknowledged. (Pages that an
 * fsync error left marked clean but unwritten cannot be fixed from here: see fatalBoots.)
 */
function makeDurable(io: JournalFs, dir: string, fd: number): void {
  io.fdatasync(fd);
  io.syncDir(dir);
  io.syncDir(path.dirname(dir));
}

/**
 * Journal directories that hit an fsync error, with the boot they happened in. After one, Linux may
 * have marked the failed pages clean without writing them: the page cache shows a record the disk
 * does not have, and no later fsync will write it. Only a reboot (a fresh page cache) makes what
 * recovery reads true again, so the journal is not reopened in the same boot by this process;
 * registerd exits on JOURNAL_FATAL and its systemd unit reboots the appliance (docs/journal.md).
 */
const fatalBoots = new WeakMap<JournalFs, Map<string, string>>();

function bootOf(io: JournalFs): string {
  return io.bootId?.() ?? 'this-process';
}

/**
 * A new segment appears whole or not at all: header (and the zeros that preallocate it) written to a
 * temp file, synced, renamed, directory synced. Preallocated space makes each later append an
 * overwrite, so its fdatasync need not commit a new file size (about a quarter faster on ext4).
 */
function createSegment(
  io: JournalFs,
  dir: string,
  h: { deviceId: string; epoch: number; index: number; firstSeq: number },
  preallocateBytes: number,
): SegmentInfo {
  const name = segmentName(h.index);
  const header = { version: FORMAT_VERSION, ...h };
  const bytes = Buffer.alloc(Math.max(FIRST_FRAME_OFFSET, preallocateBytes));
  encodeHeader(header).copy(bytes, 0);
  writeFileAtomic(io, path.join(dir, name), bytes);
  return { index: h.index, name, header };
}
