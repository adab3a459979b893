// A journal record as both ends of the link see it (wire protocol ◆). The device writes it once to
// flash and sends it as-is; the ledger recomputes the hash to check the chain.
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** Whether the wall clock was trusted when the record was written (a Pi has no RTC). */
export type ClockQuality = 'trusted' | 'untrusted';

/** One domain event; the journal only requires a string `type`. */
export interface JournalEvent {
  type: string;
  [field: string]: unknown;
}

export interface JournalRecord {
  /** Per-device, per-epoch, gapless, from 1. */
  seq: number;
  /** Wall-clock milliseconds since the Unix epoch when the record was written. */
  ts: number;
  clock: ClockQuality;
  prevHash: string;
  hash: string;
  events: JournalEvent[];
}

export type RecordBody = Omit<JournalRecord, 'prevHash' | 'hash'>;

/**
 * hash = SHA-256(prevHash ‖ canonical record), hex. The canonical record is the RFC 8785 (JCS) form of
 * `{seq, ts, clock, events}`, so any JCS implementation on the ledger side computes the same bytes.
 */
export function recordHash(prevHash: string, body: RecordBody): string {
  const canonical = canonicalize({ seq: body.seq, ts: body.ts, clock: body.clock, events: body.events });
  if (canonical === undefined) throw new TypeError('record has no JSON form');
  return createHash('sha256').update(prevHash).update(canonical).digest('hex');
}

/** The chain's anchor: the prevHash of seq 1, distinct per device and epoch. */
export function genesisHash(deviceId: string, epoch: number): string {
  return createHash('sha256').update(`pos/v1 genesis ${deviceId} ${epoch}`).digest('hex');
}

/** The record's identity in the books: deviceId:epoch:seq. */
export function dedupId(deviceId: string, epoch: number, seq: number): string {
  return `${deviceId}:${epoch}:${seq}`;
}

/** A short form of a chain hash for receipts and screens. */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}
