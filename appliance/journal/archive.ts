// Moving a journal to another card: `registerctl journal export` packs a journal directory into one
// self-checking file, `journal import` unpacks it onto a fresh data partition (docs/recover.md).
//
// The segments travel byte for byte (only the preallocated zeros after the last record are left out
// and put back on import), so the hash chain the ledger checks is the same chain, and the imported
// journal is what registerd would have recovered on the old card: same device id, epoch and seqs.
//
// Archive layout (little-endian), version 1:
//   "REGJARC\0" | u32 length | u32 crc32(length ‖ header) | header (UTF-8 JSON) | payload
// where the payload is the files named in header.files, concatenated in that order, and
// header.payloadSha256 is the SHA-256 of the whole payload (each file also carries its own).
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { RegisterError } from '../errors.js';
import { CHECKPOINT_FILE } from './checkpoint.js';
import { FIRST_FRAME_OFFSET, FORMAT_VERSION, encodeFrame, parseSegmentName, readFrame } from './format.js';
import { ensureDurableDir, writeFileAtomic, type JournalFs } from './fs.js';
import { DECISIONS, endOfData, scanJournal, type Problem, type ScanResult } from './scan.js';

export const ARCHIVE_MAGIC = Buffer.from('REGJARC\0', 'latin1');
export const ARCHIVE_VERSION = 1;
/** Header frames are bounded like records: a few hundred segments' entries fit many times over. */
const MAX_HEADER_BYTES = 256 * 1024;
/**
 * 512 MiB: the largest archive written or read (it is built and checked in memory). About 64 full
 * segments, some two million sales: far more than a register holds unsynced, since acked segments are
 * pruned. A bound so a wrong file never makes the tool allocate without limit.
 */
export const MAX_ARCHIVE_BYTES = 512 * 1024 * 1024;
/** The bridge's own file beside the journal (cloud-bridge/bridge.ts): the last ledger ack it saw. */
export const SYNC_FILE = 'sync.json';
/** Where import assembles the journal before one rename puts it in place. */
export const IMPORT_STAGING_DIR = 'journal-import.tmp';

export interface ArchiveFile {
  /** A segment name (`00000001.seg`) or `checkpoint`. */
  name: string;
  /** Bytes carried in the archive: the file without its trailing preallocated zeros. */
  bytes: number;
  /** The file's size on the card; import pads it back with zeros (segments are preallocated). */
  size: number;
  sha256: string;
}

/** The sync state the bridge keeps (`sync.json`): what the ledger had acknowledged. */
export interface ArchiveSync {
  v: 1;
  deviceId: string;
  epoch: number;
  ackedThrough: number;
  lastAckAt: number | null;
}

export interface LeftOut {
  /** What stopped the export (the scanner's finding and the code recovery would refuse with). */
  finding: string;
  code: string;
  message: string;
  file: string | null;
  offset: number | null;
  /** Segment files, or parts of them, not in the archive. */
  files: string[];
  /** Non-zero bytes of the journal not in the archive. */
  bytes: number;
}

export interface ArchiveHeader {
  v: typeof ARCHIVE_VERSION;
  kind: 'register-journal';
  /** The journal's on-flash format version (format.ts FORMAT_VERSION). */
  format: number;
  deviceId: string;
  epoch: number;
  firstSeq: number;
  lastSeq: number;
  /** Records read from the first segment (those folded into a checkpoint of a pruned journal excluded). */
  records: number;
  lastHash: string;
  checkpointSeq: number | null;
  /** false: records after lastSeq were damaged and left out; such an archive is not imported. */
  complete: boolean;
  leftOut: LeftOut | null;
  /** Bytes of a torn tail (an unfinished, never acknowledged write) left out. Not a loss. */
  tornTailBytes: number;
  sync: ArchiveSync | null;
  files: ArchiveFile[];
  payloadBytes: number;
  payloadSha256: string;
  /** ISO 8601, from the exporting machine's clock (informative only). */
  exportedAt: string;
  software: string;
  sourceDir: string;
}

export interface ExportResult {
  archive: Buffer;
  header: ArchiveHeader;
  /** Names in the journal directory that are not part of a journal (temp files, foreign files). */
  ignoredFiles: string[];
  /** Why a sync state was not carried, when there was a file but it could not be used. */
  syncSkipped: string | null;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * A read-only JournalFs over files held in memory: the scanner checks exactly the bytes that go into
 * (or came out of) the archive, not a second read of a card that may be failing or still written to.
 */
function snapshotFs(dir: string, files: Map<string, Buffer>): JournalFs {
  const open: Buffer[] = [];
  const get = (file: string): Buffer | undefined =>
    path.dirname(file) === dir ? files.get(path.basename(file)) : undefined;
  const readOnly = (): never => {
    throw new Error('a journal snapshot is read-only');
  };
  return {
    list: (d) => (d === dir ? [...files.keys()] : []),
    size: (f) => get(f)?.length ?? -1,
    readFile: (f) => {
      const b = get(f);
      if (!b) throw Object.assign(new Error(`ENOENT: ${f}`), { code: 'ENOENT' });
      return b;
    },
    open: (f, mode) => {
      const b = get(f);
      if (mode !== 'read' || !b) return readOnly();
      open.push(b);
      return open.length - 1;
    },
    read: (fd, into, position, length = into.length) => {
      const b = open[fd]!;
      return b.copy(into, 0, position, Math.min(b.length, position + length));
    },
    close: () => {},
    mkdirp: readOnly,
    write: readOnly,
    fdatasync: readOnly,
    truncate: readOnly,
    rename: readOnly,
    unlink: readOnly,
    syncDir: readOnly,
  };
}

const SNAPSHOT_DIR = '/journal';

function scanSnapshot(files: Map<string, Buffer>): ScanResult {
  return scanJournal(snapshotFs(SNAPSHOT_DIR, files), SNAPSHOT_DIR, { useCheckpoint: false });
}

function segmentNames(files: Map<string, Buffer>): string[] {
  return [...files.keys()].filter((n) => parseSegmentName(n) !== undefined).sort();
}

/**
 * Cut the snapshot back to before `problem`, so what is left verifies: a damaged record cuts its
 * segment there and drops the later ones; a damaged header or a missing segment drops from there on;
 * a checkpoint that does not agree is dropped when every record from seq 1 is here. Returns false when
 * nothing can be cut (the problem is at the very start).
 */
function cutBefore(files: Map<string, Buffer>, problem: Problem): boolean {
  const segments = segmentNames(files);
  const dropFrom = (index: number): boolean => {
    const drop = segments.filter((n) => parseSegmentName(n)! >= index);
    if (drop.length === segments.length) return false;
    for (const n of drop) files.delete(n);
    return true;
  };
  if (problem.finding === 'segment-gap') {
    const indexes = segments.map((n) => parseSegmentName(n)!);
    const gap = indexes.findIndex((ix, i) => i > 0 && ix !== indexes[i - 1]! + 1);
    return gap > 0 && dropFrom(indexes[gap]!);
  }
  if (problem.file !== undefined && parseSegmentName(problem.file) !== undefined) {
    const index = parseSegmentName(problem.file)!;
    if (problem.offset === undefined || problem.offset < FIRST_FRAME_OFFSET) return dropFrom(index);
    const later = segments.filter((n) => parseSegmentName(n)! > index);
    for (const n of later) files.delete(n);
    const buf = files.get(problem.file)!;
    if (problem.offset >= buf.length && later.length === 0) return false;
    files.set(problem.file, buf.subarray(0, problem.offset));
    return true;
  }
  // Without a file, the finding is about the checkpoint (it disagrees with the records, or names
  // another device): drop it; if early segments were pruned the rescan refuses (bad-checkpoint).
  if (problem.file === undefined && files.has(CHECKPOINT_FILE)) {
    files.delete(CHECKPOINT_FILE);
    return true;
  }
  return false;
}

export interface ExportOptions {
  /** Software version written in the header. */
  software: string;
  /** Injected for tests; default now. */
  now?: () => Date;
  /** Where the bridge's sync.json is looked for; default the journal directory's parent. */
  stateDir?: string;
}

/**
 * Read a journal directory (never writing to it), check it as `journal verify` does, and build an
 * archive of what verifies. A torn tail is left out (never acknowledged). Anything worse cuts the
 * archive back to the records before it and marks it incomplete, saying what was left out.
 */
export function exportJournal(io: JournalFs, dir: string, opts: ExportOptions): ExportResult {
  const original = new Map<string, Buffer>();
  const ignoredFiles: string[] = [];
  // The checkpoint before the segments: on a live register a checkpoint read later could name a
  // record written after its segment was read.
  const names = io.list(dir).sort();
  const ordered = names.includes(CHECKPOINT_FILE)
    ? [CHECKPOINT_FILE, ...names.filter((n) => n !== CHECKPOINT_FILE)]
    : names;
  const sizes = new Map<string, number>();
  let total = 0;
  for (const name of ordered) {
    if (name !== CHECKPOINT_FILE && parseSegmentName(name) === undefined) {
      ignoredFiles.push(name);
      continue;
    }
    const buf = io.readFile(path.join(dir, name));
    const kept = name === CHECKPOINT_FILE ? buf : buf.subarray(0, endOfData(buf, FIRST_FRAME_OFFSET));
    total += kept.length;
    if (total > MAX_ARCHIVE_BYTES) {
      throw new RegisterError(
        'JOURNAL_EXPORT_FAILED',
        `the journal holds more than ${MAX_ARCHIVE_BYTES} bytes: too large to export in one archive`,
      );
    }
    sizes.set(name, buf.length);
    original.set(name, kept);
  }
  if (segmentNames(original).length === 0) {
    throw new RegisterError('JOURNAL_EXPORT_FAILED', `no journal segments in ${dir}`);
  }

  const files = new Map(original);
  let scan = scanSnapshot(files);
  let firstProblem: Problem | undefined;
  for (let tries = 0; scan.problem && tries <= original.size + 1; tries++) {
    firstProblem ??= scan.problem;
    if (!cutBefore(files, scan.problem)) break;
    scan = scanSnapshot(files);
  }
  if (scan.problem || scan.deviceId === undefined || scan.epoch === undefined) {
    const p = scan.problem ?? firstProblem;
    const code = p ? (DECISIONS[p.finding].code ?? 'JOURNAL_CORRUPT') : 'JOURNAL_CORRUPT';
    throw new RegisterError(
      'JOURNAL_EXPORT_FAILED',
      `nothing in ${dir} verifies: ${code}: ${p?.message ?? 'no segment'}`,
      { finding: p?.finding, code, file: p?.file, offset: p?.offset },
    );
  }
  // A damaged checkpoint that recovery would pass over is not worth carrying: the records are all here.
  if (scan.checkpointIgnored !== undefined) files.delete(CHECKPOINT_FILE);
  let tornTailBytes = 0;
  if (scan.tornTail) {
    const name = scan.segments.find((s) => s.index === scan.tornTail!.segment)!.name;
    files.set(name, files.get(name)!.subarray(0, scan.tornTail.offset));
    tornTailBytes = scan.tornTail.bytes;
  }

  let leftOut: LeftOut | null = null;
  if (firstProblem) {
    const leftFiles = [...original.keys()].filter(
      (n) => n !== CHECKPOINT_FILE && files.get(n)?.length !== original.get(n)!.length,
    );
    const keptBytes = [...files.entries()]
      .filter(([n]) => n !== CHECKPOINT_FILE)
      .reduce((sum, [, b]) => sum + b.length, 0);
    const allBytes = [...original.entries()]
      .filter(([n]) => n !== CHECKPOINT_FILE)
      .reduce((sum, [, b]) => sum + b.length, 0);
    leftOut = {
      finding: firstProblem.finding,
      code: DECISIONS[firstProblem.finding].code ?? 'JOURNAL_CORRUPT',
      message: firstProblem.message,
      file: firstProblem.file ?? null,
      offset: firstProblem.offset ?? null,
      files: leftFiles,
      bytes: allBytes - keptBytes - tornTailBytes,
    };
  }

  const sync = readSync(io, opts.stateDir ?? path.dirname(dir), scan.deviceId, scan.epoch, scan.lastSeq);
  const entries: ArchiveFile[] = [];
  const parts: Buffer[] = [];
  for (const name of [...segmentNames(files), ...(files.has(CHECKPOINT_FILE) ? [CHECKPOINT_FILE] : [])]) {
    const b = files.get(name)!;
    entries.push({ name, bytes: b.length, size: Math.max(b.length, sizes.get(name)!), sha256: sha256(b) });
    parts.push(b);
  }
  const payload = Buffer.concat(parts);
  const header: ArchiveHeader = {
    v: ARCHIVE_VERSION,
    kind: 'register-journal',
    format: FORMAT_VERSION,
    deviceId: scan.deviceId,
    epoch: scan.epoch,
    firstSeq: scan.firstSeq,
    lastSeq: scan.lastSeq,
    records: scan.records,
    lastHash: scan.lastHash,
    checkpointSeq: scan.checkpoint?.seq ?? null,
    complete: leftOut === null,
    leftOut,
    tornTailBytes,
    sync: sync.sync,
    files: entries,
    payloadBytes: payload.length,
    payloadSha256: sha256(payload),
    exportedAt: (opts.now?.() ?? new Date()).toISOString(),
    software: opts.software,
    sourceDir: dir,
  };
  const archive = Buffer.concat([ARCHIVE_MAGIC, encodeFrame(JSON.stringify(header)), payload]);
  return { archive, header, ignoredFiles, syncSkipped: sync.skipped };
}

/** The bridge's sync.json (or its previous copy), when it is this journal's; never trusted past lastSeq. */
function readSync(
  io: JournalFs,
  stateDir: string,
  deviceId: string,
  epoch: number,
  lastSeq: number,
): { sync: ArchiveSync | null; skipped: string | null } {
  let skipped: string | null = null;
  for (const name of [SYNC_FILE, `${SYNC_FILE}.prev`]) {
    const file = path.join(stateDir, name);
    if (io.size(file) < 0) continue;
    let doc: Partial<ArchiveSync>;
    try {
      doc = JSON.parse(io.readFile(file).toString('utf8')) as Partial<ArchiveSync>;
    } catch {
      skipped ??= `${name} is not JSON`;
      continue;
    }
    if (doc.v !== 1 || !Number.isSafeInteger(doc.ackedThrough) || doc.ackedThrough! < 0) {
      skipped ??= `${name} is not a sync state`;
      continue;
    }
    if (doc.deviceId !== deviceId || doc.epoch !== epoch) {
      skipped ??= `${name} is for another journal (${String(doc.deviceId)} epoch ${String(doc.epoch)})`;
      continue;
    }
    if (doc.ackedThrough! > lastSeq) {
      // The ledger has records this archive does not: carrying the ack would hide that. Leave it to the
      // ledger's retained ack, which the bridge reports as an alarm (docs/sync.md).
      skipped ??= `${name} says the ledger acknowledged seq ${doc.ackedThrough}, past the archive's ${lastSeq}`;
      continue;
    }
    const lastAckAt = Number.isSafeInteger(doc.lastAckAt) ? doc.lastAckAt! : null;
    return { sync: { v: 1, deviceId, epoch, ackedThrough: doc.ackedThrough!, lastAckAt }, skipped: null };
  }
  return { sync: null, skipped };
}

function bad(message: string, details: Record<string, unknown> = {}): never {
  throw new RegisterError('JOURNAL_ARCHIVE_BAD', message, details);
}

export interface ParsedArchive {
  header: ArchiveHeader;
  /** The files, as carried (without their trailing zeros). */
  files: Map<string, Buffer>;
}

/**
 * Check an archive completely, in memory: framing, checksums, names, and the journal it holds (every
 * frame CRC, seq and hash chain, by the same scanner as recovery) against what its header claims.
 */
export function readArchive(buf: Buffer): ParsedArchive {
  if (buf.length > MAX_ARCHIVE_BYTES) bad(`larger than ${MAX_ARCHIVE_BYTES} bytes`);
  if (!buf.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC)) bad('not a journal archive (magic)');
  const frame = readFrame(buf, ARCHIVE_MAGIC.length);
  if (frame.kind !== 'ok' || frame.payload.length > MAX_HEADER_BYTES) bad('the archive header is damaged');
  let header: ArchiveHeader;
  try {
    header = JSON.parse(frame.payload.toString('utf8')) as ArchiveHeader;
  } catch {
    return bad('the archive header is not JSON');
  }
  if (typeof header !== 'object' || header === null) bad('the archive header is not an object');
  if (header.v !== ARCHIVE_VERSION || header.kind !== 'register-journal') {
    throw new RegisterError(
      'JOURNAL_UNKNOWN_VERSION',
      `archive version ${String(header.v)}: written by other software`,
    );
  }
  if (header.format !== FORMAT_VERSION) {
    throw new RegisterError(
      'JOURNAL_UNKNOWN_VERSION',
      `the archive holds journal format ${header.format}; this software writes ${FORMAT_VERSION}`,
    );
  }
  const payload = buf.subarray(frame.end);
  if (!Array.isArray(header.files) || payload.length !== header.payloadBytes) {
    bad(`the payload is ${payload.length} bytes, the header says ${header.payloadBytes}`);
  }
  if (sha256(payload) !== header.payloadSha256) bad('the payload checksum does not match');
  const files = new Map<string, Buffer>();
  let at = 0;
  for (const f of header.files) {
    if (
      (f.name !== CHECKPOINT_FILE && parseSegmentName(f.name) === undefined) ||
      files.has(f.name) ||
      !Number.isSafeInteger(f.bytes) ||
      !Number.isSafeInteger(f.size) ||
      f.bytes < 0 ||
      f.size < f.bytes ||
      f.size > MAX_ARCHIVE_BYTES ||
      at + f.bytes > payload.length
    ) {
      bad(`the archive's entry for ${JSON.stringify(f.name)} is not valid`);
    }
    const b = payload.subarray(at, at + f.bytes);
    if (sha256(b) !== f.sha256) bad(`${f.name}: checksum does not match`);
    files.set(f.name, b);
    at += f.bytes;
  }
  if (at !== payload.length) bad('the payload holds bytes no entry names');

  const scan = scanSnapshot(files);
  if (scan.problem) {
    bad(`the journal in the archive does not verify: ${scan.problem.message}`, {
      finding: scan.problem.finding,
    });
  }
  const claims: [string, unknown, unknown][] = [
    ['deviceId', scan.deviceId, header.deviceId],
    ['epoch', scan.epoch, header.epoch],
    ['firstSeq', scan.firstSeq, header.firstSeq],
    ['lastSeq', scan.lastSeq, header.lastSeq],
    ['records', scan.records, header.records],
    ['lastHash', scan.lastHash, header.lastHash],
    ['checkpointSeq', scan.checkpoint?.seq ?? null, header.checkpointSeq],
    ['torn tail', scan.tornTail?.bytes ?? 0, 0],
  ];
  for (const [what, found, claimed] of claims) {
    if (found !== claimed)
      bad(`the header says ${what} ${String(claimed)}, the journal has ${String(found)}`);
  }
  const s = header.sync;
  if (
    s !== null &&
    (typeof s !== 'object' ||
      s.deviceId !== header.deviceId ||
      s.epoch !== header.epoch ||
      !Number.isSafeInteger(s.ackedThrough) ||
      s.ackedThrough < 0 ||
      s.ackedThrough > header.lastSeq)
  ) {
    bad('the sync state in the archive does not belong to its journal');
  }
  return { header, files };
}

export type TargetState =
  | { kind: 'fresh' }
  /** A journal with no record (registerd started once on the new card): replaced by the import. */
  | { kind: 'empty-journal'; files: string[] }
  /** The archive's journal is already there (perhaps with more records after it): nothing to do. */
  | { kind: 'same'; lastSeq: number };

/** What the target's journal directory holds, refusing anything the import must not replace. */
export function inspectTarget(io: JournalFs, journalDir: string, header: ArchiveHeader): TargetState {
  const names = io.list(journalDir);
  if (names.length === 0) return { kind: 'fresh' };
  let hashAtArchiveEnd: string | undefined;
  const scan = scanJournal(io, journalDir, {
    useCheckpoint: false,
    onRecord: (r) => {
      if (r.seq === header.lastSeq) hashAtArchiveEnd = r.hash;
    },
  });
  const inUse = (why: string): never => {
    throw new RegisterError('JOURNAL_IMPORT_TARGET_IN_USE', `${journalDir} ${why}; nothing was written`, {
      deviceId: scan.deviceId ?? null,
      epoch: scan.epoch ?? null,
      lastSeq: scan.lastSeq,
    });
  };
  if (scan.problem) return inUse(`holds files that are not an intact journal (${scan.problem.message})`);
  if (scan.segments.length === 0) return inUse('holds files but no journal segment');
  if (scan.deviceId === header.deviceId && scan.epoch === header.epoch) {
    // The archive's last record is here (a checkpointed one is not passed to onRecord: compare the end).
    const atEnd = scan.lastSeq === header.lastSeq && scan.lastHash === header.lastHash;
    if (atEnd || hashAtArchiveEnd === header.lastHash) return { kind: 'same', lastSeq: scan.lastSeq };
  }
  if (scan.lastSeq === 0 && scan.firstSeq === 1 && scan.checkpoint === undefined && scan.records === 0) {
    return { kind: 'empty-journal', files: names };
  }
  return inUse(
    `already holds a journal with records (${scan.deviceId} epoch ${scan.epoch}, seq ${scan.firstSeq}–${scan.lastSeq})`,
  );
}

export interface ImportResult {
  header: ArchiveHeader;
  journalDir: string;
  /** false: the journal was already there (no-op). */
  imported: boolean;
  /** The empty journal (no records) that was replaced, if any. */
  replaced: string[];
  /** Whether sync.json was written from the archive. */
  syncWritten: boolean;
}

/**
 * Put the archive's journal in `<stateDir>/journal`, durably and all at once: the files are written to
 * a staging directory (each temp → fdatasync → rename → fsync dir), which one rename makes the journal,
 * so a power cut leaves either no journal or the whole one, never a shorter journal that registerd
 * would go on appending to (and so reuse seqs the ledger may already hold). Then the sync state.
 */
export function importJournal(io: JournalFs, archive: ParsedArchive, stateDir: string): ImportResult {
  const { header, files } = archive;
  if (!header.complete) {
    throw new RegisterError(
      'JOURNAL_ARCHIVE_PARTIAL',
      `records after seq ${header.lastSeq} were left out on export (${header.leftOut?.message ?? 'damage'}): ` +
        'a register continuing this journal would reuse seqs the ledger may already hold',
      { lastSeq: header.lastSeq, leftOut: header.leftOut },
    );
  }
  const journalDir = path.join(stateDir, 'journal');
  const target = inspectTarget(io, journalDir, header);
  if (target.kind === 'same') {
    // An import cut short after its rename: the journal is here, its sync state may not be.
    const syncFile = path.join(stateDir, SYNC_FILE);
    const syncWritten = header.sync !== null && io.size(syncFile) < 0;
    if (syncWritten) writeFileAtomic(io, syncFile, Buffer.from(JSON.stringify(header.sync)));
    return { header, journalDir, imported: false, replaced: [], syncWritten };
  }

  ensureDurableDir(io, stateDir);
  const staging = path.join(stateDir, IMPORT_STAGING_DIR);
  // Left by an import cut short: it never became the journal, so it holds nothing of value.
  for (const name of io.list(staging)) io.unlink(path.join(staging, name));
  ensureDurableDir(io, staging);
  for (const f of header.files) {
    const data = Buffer.alloc(f.size);
    files.get(f.name)!.copy(data);
    writeFileAtomic(io, path.join(staging, f.name), data);
  }
  if (target.kind === 'empty-journal') {
    // rename(2) replaces an empty directory: empty it, durably, first.
    for (const name of target.files) io.unlink(path.join(journalDir, name));
    io.syncDir(journalDir);
  }
  io.rename(staging, journalDir);
  io.syncDir(stateDir);

  let syncWritten = false;
  if (header.sync) {
    writeFileAtomic(io, path.join(stateDir, SYNC_FILE), Buffer.from(JSON.stringify(header.sync)));
    syncWritten = true;
  }
  return {
    header,
    journalDir,
    imported: true,
    replaced: target.kind === 'empty-journal' ? target.files : [],
    syncWritten,
  };
}
