// Reading a journal directory without changing it: the scanner behind recovery, `journal verify` and
// `journal dump`. It reports what it finds as findings; what to do about each is the decision table.
import * as path from 'node:path';
import type { ErrorCode } from '../errors.js';
import {
  canonicalJson,
  checkSealedPayload,
  genesisHash,
  type JournalRecord,
} from '../../cloud-bridge/protocol/record.js';
import { CHECKPOINT_FILE, readCheckpoint, type Checkpoint } from './checkpoint.js';
import {
  FIRST_FRAME_OFFSET,
  HEADER_BYTES,
  alignUp,
  decodeHeader,
  findFrameAfter,
  parseSegmentName,
  readFrame,
  segmentName,
  type SegmentHeader,
} from './format.js';
import type { JournalFs } from './fs.js';

export type Finding =
  | 'empty' // no segment at all
  | 'temp-file' // a *.tmp left by a write that never reached its rename
  | 'foreign-file' // a name or content that is not ours
  | 'segment-gap' // segment numbers are not contiguous
  | 'bad-header' // a segment header with a bad CRC, too short, or naming another index
  | 'unknown-version'
  | 'foreign-device'
  | 'epoch-mismatch'
  | 'bad-checkpoint-replayable' // damaged checkpoint, but every record from seq 1 is still here
  | 'bad-checkpoint' // damaged or missing checkpoint and the early segments were pruned
  | 'checkpoint-mismatch' // the checkpoint names a record the journal does not have
  | 'torn-tail' // short or bad-CRC frame in the last segment with nothing valid after it
  | 'bad-frame' // a bad frame anywhere else, or one followed by a valid frame
  | 'bad-record' // CRC-valid frame whose content is not a well-formed record
  | 'seq-gap'
  | 'chain-broken';

export type Action = 'initialize' | 'remove' | 'replay-from-start' | 'truncate' | 'refuse';

/**
 * The recovery decision table. A torn tail is what a power cut leaves and is cut off; anything else
 * wrong means bytes that were once durable changed, or the directory is not this device's journal:
 * recovery refuses (keeping a copy of a damaged segment) rather than guess.
 */
export const DECISIONS: Record<Finding, { action: Action; code?: ErrorCode; why: string }> = {
  empty: { action: 'initialize', why: 'a new journal: write segment 1' },
  'temp-file': {
    action: 'remove',
    why: 'a temp file whose rename never happened holds nothing acknowledged',
  },
  'torn-tail': { action: 'truncate', why: 'the last write never finished, so it was never acknowledged' },
  'bad-checkpoint-replayable': { action: 'replay-from-start', why: 'the checkpoint is only a cache' },
  'foreign-file': { action: 'refuse', code: 'JOURNAL_FOREIGN_FILE', why: 'not ours: never delete it' },
  'segment-gap': { action: 'refuse', code: 'JOURNAL_CORRUPT', why: 'a whole segment is missing' },
  'bad-header': { action: 'refuse', code: 'JOURNAL_BAD_HEADER', why: 'headers are synced before use' },
  'unknown-version': { action: 'refuse', code: 'JOURNAL_UNKNOWN_VERSION', why: 'written by newer software' },
  'foreign-device': { action: 'refuse', code: 'JOURNAL_FOREIGN_DEVICE', why: 'another register’s sales' },
  'epoch-mismatch': { action: 'refuse', code: 'JOURNAL_EPOCH_MISMATCH', why: 'another life of this device' },
  'bad-checkpoint': { action: 'refuse', code: 'JOURNAL_BAD_CHECKPOINT', why: 'the early records are gone' },
  'checkpoint-mismatch': { action: 'refuse', code: 'JOURNAL_CORRUPT', why: 'acknowledged records missing' },
  'bad-frame': { action: 'refuse', code: 'JOURNAL_CORRUPT', why: 'a durable record went bad' },
  'bad-record': { action: 'refuse', code: 'JOURNAL_CORRUPT', why: 'a durable record went bad' },
  'seq-gap': { action: 'refuse', code: 'JOURNAL_CORRUPT', why: 'seq must be gapless' },
  'chain-broken': { action: 'refuse', code: 'JOURNAL_CORRUPT', why: 'the hash chain must hold' },
};

export interface Problem {
  finding: Finding;
  message: string;
  file?: string;
  offset?: number;
}

export interface SegmentInfo {
  index: number;
  name: string;
  header: SegmentHeader;
}

export interface Position {
  segment: number;
  offset: number;
}

export interface ScanOptions {
  /** Refuse a journal of another device. */
  deviceId?: string;
  /** Refuse a journal of another epoch. */
  epoch?: number;
  /** Start from the checkpoint (recovery) or read every record from the first (verify, dump). */
  useCheckpoint: boolean;
  /** Called when the scan starts from the checkpoint (its state is the fold so far). */
  onCheckpoint?: (checkpoint: Checkpoint) => void;
  /** Called for each record after the starting point, in order. */
  onRecord?: (record: JournalRecord, at: Position) => void;
}

export interface ScanResult {
  deviceId?: string;
  epoch?: number;
  segments: SegmentInfo[];
  tempFiles: string[];
  checkpoint?: Checkpoint;
  /** Records up to checkpoint.seq were not read: their fold is the checkpoint's state. */
  startedFromCheckpoint?: boolean;
  /** Set when a damaged checkpoint was passed over. */
  checkpointIgnored?: string;
  /** Records read (not counting those folded into the checkpoint). */
  records: number;
  firstSeq: number;
  lastSeq: number;
  lastHash: string;
  /** Where the last record's frame starts. */
  lastRecordAt?: Position;
  /** Where the next record goes: the end of the last good frame. */
  end?: Position;
  tornTail?: { segment: number; offset: number; bytes: number };
  /** The first finding that makes the journal unusable; scanning stops there. */
  problem?: Problem;
}

class Stop extends Error {
  constructor(readonly problem: Problem) {
    super(problem.message);
  }
}

function stop(finding: Finding, message: string, file?: string, offset?: number): never {
  throw new Stop({ finding, message, file, offset });
}

/** The offset just past the last non-zero byte at or after `from` (segments are preallocated with zeros). */
export function endOfData(buf: Buffer, from: number): number {
  const CHUNK = 64 * 1024;
  let end = buf.length;
  // Skip whole chunks of zeros from the end with native compares, then finish byte by byte.
  while (end - from >= CHUNK && buf.subarray(end - CHUNK, end).equals(ZEROS)) end -= CHUNK;
  while (end > from && buf[end - 1] === 0) end--;
  return end;
}
const ZEROS = Buffer.alloc(64 * 1024);

/** Reads whole segments into one buffer reused across them, so a scan holds one segment's size. */
class SegmentReader {
  private buf = Buffer.alloc(0);

  constructor(private readonly io: JournalFs) {}

  read(file: string): Buffer {
    const size = Math.max(0, this.io.size(file));
    if (this.buf.length < size) this.buf = Buffer.alloc(size);
    const fd = this.io.open(file, 'read');
    try {
      return this.buf.subarray(0, this.io.read(fd, this.buf, 0, size));
    } finally {
      this.io.close(fd);
    }
  }
}

function isRecord(x: unknown): x is JournalRecord {
  const r = x as JournalRecord;
  return (
    typeof r === 'object' &&
    r !== null &&
    Number.isSafeInteger(r.seq) &&
    Number.isSafeInteger(r.ts) &&
    (r.clock === 'trusted' || r.clock === 'untrusted') &&
    typeof r.prevHash === 'string' &&
    typeof r.hash === 'string' &&
    Array.isArray(r.events)
  );
}

export function scanJournal(io: JournalFs, dir: string, opts: ScanOptions): ScanResult {
  const result: ScanResult = {
    segments: [],
    tempFiles: [],
    records: 0,
    firstSeq: 0,
    lastSeq: 0,
    lastHash: '',
  };
  try {
    scanInto(io, dir, opts, result);
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
    result.problem = err.problem;
  }
  return result;
}

function scanInto(io: JournalFs, dir: string, opts: ScanOptions, result: ScanResult): void {
  // 1. Names: every entry must be a segment, the checkpoint, or one of our temp files.
  const indexes: number[] = [];
  for (const name of io.list(dir).sort()) {
    const index = parseSegmentName(name);
    if (index !== undefined) indexes.push(index);
    else if (
      name.endsWith('.tmp') &&
      (parseSegmentName(name.slice(0, -4)) !== undefined || name === `${CHECKPOINT_FILE}.tmp`)
    ) {
      result.tempFiles.push(name);
    } else if (name !== CHECKPOINT_FILE) {
      stop('foreign-file', `unexpected file ${name} in the journal directory`, name);
    }
  }
  if (indexes.length === 0) {
    // A checkpoint with no segment: the records it summarises are gone; starting over at seq 1 in the
    // same epoch would hand the ledger ids it has already seen.
    if (io.size(path.join(dir, CHECKPOINT_FILE)) >= 0)
      stop('segment-gap', 'every segment is gone but the checkpoint is here');
    return;
  }
  indexes.sort((a, b) => a - b);
  for (let i = 1; i < indexes.length; i++) {
    if (indexes[i] !== indexes[i - 1]! + 1) {
      stop('segment-gap', `segment ${indexes[i - 1]! + 1} is missing`);
    }
  }

  // 2. Headers: all ours, one device, one epoch, one version.
  const headerBuf = Buffer.alloc(HEADER_BYTES);
  for (const index of indexes) {
    const name = segmentName(index);
    const fd = io.open(path.join(dir, name), 'read');
    let n: number;
    try {
      n = io.read(fd, headerBuf, 0, HEADER_BYTES);
    } finally {
      io.close(fd);
    }
    const decoded = decodeHeader(headerBuf.subarray(0, n));
    if (!decoded.ok) {
      if (decoded.problem === 'magic') stop('foreign-file', `${name} is not a journal segment`, name);
      if (decoded.problem === 'version')
        stop('unknown-version', `${name} has an unknown format version`, name);
      stop('bad-header', `${name} has a damaged header (${decoded.problem})`, name);
    }
    const h = decoded.header;
    if (h.index !== index) stop('bad-header', `${name} says it is segment ${h.index}`, name);
    if (opts.deviceId !== undefined && h.deviceId !== opts.deviceId) {
      stop('foreign-device', `${name} belongs to device ${h.deviceId}, not ${opts.deviceId}`, name);
    }
    const epoch = opts.epoch ?? result.epoch;
    if (epoch !== undefined && h.epoch !== epoch) {
      stop('epoch-mismatch', `${name} is from epoch ${h.epoch}, expected ${epoch}`, name);
    }
    if (result.deviceId !== undefined && h.deviceId !== result.deviceId) {
      stop('foreign-device', `${name} belongs to device ${h.deviceId}, others to ${result.deviceId}`, name);
    }
    result.deviceId = h.deviceId;
    result.epoch = h.epoch;
    result.segments.push({ index, name, header: h });
  }
  const deviceId = result.deviceId!;
  const epoch = result.epoch!;
  const first = result.segments[0]!;

  // 3. Where to start: the checkpoint, or seq firstSeq of the first segment.
  let expectSeq = first.header.firstSeq;
  let prevHash = expectSeq === 1 ? genesisHash(deviceId, epoch) : undefined;
  let startAt: Position = { segment: first.index, offset: FIRST_FRAME_OFFSET };
  let skipFirst = false;
  const cp = readCheckpoint(io, dir);
  if (cp.kind === 'ok' && (cp.checkpoint.deviceId !== deviceId || cp.checkpoint.epoch !== epoch)) {
    stop(
      'foreign-device',
      `the checkpoint belongs to ${cp.checkpoint.deviceId} epoch ${cp.checkpoint.epoch}`,
    );
  }
  if (cp.kind === 'bad') {
    if (first.header.firstSeq !== 1) stop('bad-checkpoint', `the checkpoint is damaged (${cp.why})`);
    result.checkpointIgnored = cp.why;
  }
  if (cp.kind === 'none' && first.header.firstSeq !== 1) {
    stop('bad-checkpoint', `records before seq ${first.header.firstSeq} are gone and there is no checkpoint`);
  }
  if (cp.kind === 'ok') {
    const c = cp.checkpoint;
    result.checkpoint = c;
    if (opts.useCheckpoint || first.header.firstSeq !== 1) {
      if (!result.segments.some((s) => s.index === c.segment)) {
        stop('checkpoint-mismatch', `the checkpoint names segment ${c.segment}, which is not here`);
      }
      startAt = { segment: c.segment, offset: c.offset };
      expectSeq = c.seq;
      prevHash = undefined; // taken from the checkpointed record itself, checked against c.hash
      skipFirst = true;
      result.startedFromCheckpoint = true;
      opts.onCheckpoint?.(c);
    }
  }
  result.firstSeq = first.header.firstSeq;

  // 4. Records, in order; the decision between torn tail and corruption happens here.
  const last = result.segments[result.segments.length - 1]!;
  const reader = new SegmentReader(io);
  for (const seg of result.segments) {
    if (seg.index < startAt.segment) continue;
    const file = path.join(dir, seg.name);
    const buf = reader.read(file);
    let offset = seg.index === startAt.segment ? startAt.offset : FIRST_FRAME_OFFSET;
    // The header's sector beyond the header is zeros as written (segments are synced before use).
    if (endOfData(buf.subarray(0, Math.min(FIRST_FRAME_OFFSET, buf.length)), HEADER_BYTES) > HEADER_BYTES)
      stop('bad-header', `${seg.name} has damaged bytes after its header`, seg.name, HEADER_BYTES);
    if (seg.index !== startAt.segment && seg.header.firstSeq !== expectSeq) {
      stop('seq-gap', `${seg.name} starts at seq ${seg.header.firstSeq}, expected ${expectSeq}`, seg.name);
    }
    while (offset < buf.length) {
      const frame = readFrame(buf, offset);
      if (frame.kind !== 'ok') {
        const used = endOfData(buf, offset);
        if (used === offset) break; // only preallocated zeros from here: a clean end
        const later = findFrameAfter(buf.subarray(0, used), offset + 1);
        if (seg !== last || later !== undefined) {
          stop(
            'bad-frame',
            `${seg.name} has a damaged record at byte ${offset}` +
              (later !== undefined ? ` with a valid record after it at byte ${later}` : ''),
            seg.name,
            offset,
          );
        }
        if (skipFirst)
          stop('checkpoint-mismatch', `the checkpointed record at byte ${offset} is torn`, seg.name);
        result.tornTail = { segment: seg.index, offset, bytes: used - offset };
        break;
      }
      let record: unknown;
      try {
        record = JSON.parse(frame.payload.toString('utf8'));
      } catch {
        stop('bad-record', `${seg.name} byte ${offset}: not JSON`, seg.name, offset);
      }
      if (!isRecord(record)) stop('bad-record', `${seg.name} byte ${offset}: not a record`, seg.name, offset);
      if (record.seq !== expectSeq) {
        stop(
          'seq-gap',
          `${seg.name} byte ${offset}: seq ${record.seq}, expected ${expectSeq}`,
          seg.name,
          offset,
        );
      }
      // The hash is checked over the payload's own bytes; a thorough scan also checks that those bytes
      // are the record's canonical form, which is what the ledger will hash.
      const sealed = checkSealedPayload(frame.payload);
      if (!sealed || !sealed.ok || sealed.hash !== record.hash || sealed.prevHash !== record.prevHash) {
        stop('chain-broken', `${seg.name} seq ${record.seq}: hash does not match content`, seg.name, offset);
      }
      if (!opts.useCheckpoint && canonicalJson(record) !== frame.payload.toString('utf8')) {
        stop('bad-record', `${seg.name} seq ${record.seq}: not in canonical form`, seg.name, offset);
      }
      if (skipFirst) {
        if (record.hash !== result.checkpoint!.hash) {
          stop('checkpoint-mismatch', `the checkpoint's record seq ${record.seq} differs`, seg.name, offset);
        }
        skipFirst = false;
      } else {
        if (prevHash !== undefined && record.prevHash !== prevHash) {
          stop('chain-broken', `${seg.name} seq ${record.seq}: prevHash does not link`, seg.name, offset);
        }
        if (result.checkpoint?.seq === record.seq && result.checkpoint.hash !== record.hash) {
          stop('checkpoint-mismatch', `the checkpoint's record seq ${record.seq} differs`, seg.name, offset);
        }
        result.records++;
        opts.onRecord?.(record, { segment: seg.index, offset });
      }
      prevHash = record.hash;
      result.lastSeq = record.seq;
      result.lastHash = record.hash;
      result.lastRecordAt = { segment: seg.index, offset };
      expectSeq = record.seq + 1;
      offset = alignUp(frame.end);
      // The padding up to the next sector is zeros as written, and no CRC covers it: a byte there that
      // is not zero is damage (a bad sector, a worn card), or the tail of the last write torn.
      const padEnd = Math.min(offset, buf.length);
      if (padEnd > frame.end && endOfData(buf.subarray(0, padEnd), frame.end) > frame.end) {
        const used = endOfData(buf, frame.end);
        if (seg !== last || findFrameAfter(buf.subarray(0, used), frame.end + 1) !== undefined) {
          stop(
            'bad-frame',
            `${seg.name} has damaged bytes in the padding after the record at byte ${result.lastRecordAt.offset}`,
            seg.name,
            frame.end,
          );
        }
        result.tornTail = { segment: seg.index, offset: frame.end, bytes: used - frame.end };
        break;
      }
    }
    if (skipFirst)
      stop('checkpoint-mismatch', `the checkpoint's record is not at ${seg.name} byte ${offset}`);
    // Aligned even when the file stops short of the boundary (a write cut in its padding): the next
    // frame starts on a sector boundary, the gap reads as zeros.
    result.end = { segment: seg.index, offset };
  }
  const c = result.checkpoint;
  if (c && !opts.useCheckpoint && c.seq > result.lastSeq) {
    stop(
      'checkpoint-mismatch',
      `the checkpoint is at seq ${c.seq} but the journal ends at ${result.lastSeq}`,
    );
  }
  if (result.lastSeq === 0) {
    result.lastSeq = first.header.firstSeq - 1;
    result.lastHash = genesisHash(deviceId, epoch);
  }
}
