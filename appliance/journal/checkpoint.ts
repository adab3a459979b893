// The checkpoint: the folded state as of one record, so recovery reads only what came after it.
// Written temp → fdatasync → rename → fsync dir; a damaged one is never trusted.
import * as path from 'node:path';
import { CHECKPOINT_MAGIC, FORMAT_VERSION, encodeFrame, readFrame } from './format.js';
import { writeFileAtomic, type JournalFs } from './fs.js';

export const CHECKPOINT_FILE = 'checkpoint';

export interface Checkpoint<S = unknown> {
  v: number;
  deviceId: string;
  epoch: number;
  /** The last record folded into `state`. */
  seq: number;
  hash: string;
  /** Where that record's frame starts. */
  segment: number;
  offset: number;
  state: S;
}

export function writeCheckpoint(io: JournalFs, dir: string, cp: Checkpoint): void {
  const frame = encodeFrame(Buffer.from(JSON.stringify(cp)));
  writeFileAtomic(io, path.join(dir, CHECKPOINT_FILE), Buffer.concat([CHECKPOINT_MAGIC, frame]));
}

export type CheckpointRead =
  { kind: 'none' } | { kind: 'ok'; checkpoint: Checkpoint } | { kind: 'bad'; why: string };

export function readCheckpoint(io: JournalFs, dir: string): CheckpointRead {
  const file = path.join(dir, CHECKPOINT_FILE);
  if (io.size(file) < 0) return { kind: 'none' };
  const buf = io.readFile(file);
  if (!buf.subarray(0, CHECKPOINT_MAGIC.length).equals(CHECKPOINT_MAGIC))
    return { kind: 'bad', why: 'magic' };
  const frame = readFrame(buf, CHECKPOINT_MAGIC.length);
  if (frame.kind !== 'ok' || frame.end !== buf.length) return { kind: 'bad', why: 'frame' };
  let cp: Checkpoint;
  try {
    cp = JSON.parse(frame.payload.toString('utf8')) as Checkpoint;
  } catch {
    return { kind: 'bad', why: 'json' };
  }
  if (
    cp.v !== FORMAT_VERSION ||
    !Number.isInteger(cp.seq) ||
    cp.seq < 1 ||
    typeof cp.hash !== 'string' ||
    !Number.isInteger(cp.segment) ||
    !Number.isInteger(cp.offset)
  ) {
    return { kind: 'bad', why: 'fields' };
  }
  return { kind: 'ok', checkpoint: cp };
}
