// What `registerctl journal verify` and `journal dump` report: a read-only look at a journal directory
// (a live register's, or one copied off a card from a dead one). Nothing here writes.
import { DECISIONS, scanJournal } from './scan.js';
import type { JournalFs } from './fs.js';
import type { JournalRecord } from '../../cloud-bridge/protocol/record.js';

export interface VerifyReport {
  ok: boolean;
  dir: string;
  deviceId: string | null;
  epoch: number | null;
  segments: number;
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  lastHash: string | null;
  checkpointSeq: number | null;
  checkpointIgnored: string | null;
  /** Bytes a power cut left half-written; the next start cuts them off. Not a problem. */
  tornTailBytes: number;
  problem: {
    finding: string;
    code: string;
    message: string;
    file: string | null;
    offset: number | null;
  } | null;
}

/** Check every record from the first: CRC, seq, chain, checkpoint agreement, torn tail. */
export function verifyJournal(
  io: JournalFs,
  dir: string,
  onRecord?: (r: JournalRecord) => void,
): VerifyReport {
  const scan = scanJournal(io, dir, { useCheckpoint: false, onRecord });
  const p = scan.problem;
  const empty = scan.segments.length === 0;
  return {
    ok: p === undefined && !empty,
    dir,
    deviceId: scan.deviceId ?? null,
    epoch: scan.epoch ?? null,
    segments: scan.segments.length,
    records: scan.records,
    firstSeq: empty ? null : scan.firstSeq,
    lastSeq: empty ? null : scan.lastSeq,
    lastHash: empty ? null : scan.lastHash,
    checkpointSeq: scan.checkpoint?.seq ?? null,
    checkpointIgnored: scan.checkpointIgnored ?? null,
    tornTailBytes: scan.tornTail?.bytes ?? 0,
    problem: p
      ? {
          finding: p.finding,
          code: DECISIONS[p.finding].code ?? 'JOURNAL_CORRUPT',
          message: p.message,
          file: p.file ?? null,
          offset: p.offset ?? null,
        }
      : empty
        ? {
            finding: 'empty',
            code: 'JOURNAL_CORRUPT',
            message: `no journal segments in ${dir}`,
            file: null,
            offset: null,
          }
        : null,
  };
}
