// The wire protocol ◆ between a register and the ledger, over MQTT 3.1.1 (aedes speaks no MQTT 5):
// topics and payload schemas, checked on both ends. Everything either side needs is in the payload;
// the ledger takes the device's identity from the topic and refuses a payload that disagrees.
import { z } from 'zod';
import type { JournalRecord } from './record.js';

export const WIRE_VERSION = 1;

/** A device or store id as it may appear in a topic: no MQTT wildcards or separators. */
export const WireId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/);

export const topics = {
  /** device → cloud, QoS 1: batches of journal records. */
  journal: (deviceId: string) => `pos/v1/d/${deviceId}/journal`,
  /** cloud → device, QoS 1, retained: the ledger's cumulative ack for the device's current epoch. */
  ack: (deviceId: string) => `pos/v1/d/${deviceId}/ack`,
  /** device → cloud, QoS 1, retained, also the last will: online, queue depth. */
  status: (deviceId: string) => `pos/v1/d/${deviceId}/status`,
  /** cloud → devices, QoS 1, retained: the store's catalog and cashier list. */
  catalog: (storeId: string) => `pos/v1/s/${storeId}/catalog`,
  cashiers: (storeId: string) => `pos/v1/s/${storeId}/cashiers`,
  /** The ledger's subscriptions; `$share/ledger/` in front spreads devices over several consumers. */
  allJournals: 'pos/v1/d/+/journal',
  allStatus: 'pos/v1/d/+/status',
} as const;

const DEVICE_TOPIC = /^pos\/v1\/d\/([A-Za-z0-9._-]{1,64})\/(journal|ack|status)$/;

/** The device id and kind a device topic names, or null for any other topic. */
export function parseDeviceTopic(
  topic: string,
): { deviceId: string; kind: 'journal' | 'ack' | 'status' } | null {
  const m = DEVICE_TOPIC.exec(topic);
  return m ? { deviceId: m[1]!, kind: m[2] as 'journal' | 'ack' | 'status' } : null;
}

/**
 * Bounds on a batch: a few hundred records keep one MQTT message well under brokers' default limits
 * (Mosquitto accepts 256 MiB, but memory on both ends is what this bounds) and one ledger transaction
 * short. A record itself is at most 256 KiB (the journal's own limit).
 */
export const BATCH_LIMITS = {
  maxRecords: 500,
  maxBytes: 4 * 1024 * 1024,
} as const;

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

export const WireRecordSchema = z
  .object({
    seq: z.number().int().min(1),
    ts: z.number().int().min(0),
    clock: z.enum(['trusted', 'untrusted']),
    prevHash: Hex64,
    hash: Hex64,
    events: z
      .array(z.object({ type: z.string().min(1).max(64) }).loose())
      .min(1)
      .max(1000),
  })
  .strict();

const HEX64 = /^[0-9a-f]{64}$/;
const RECORD_KEYS = new Set(['seq', 'ts', 'clock', 'prevHash', 'hash', 'events']);

/**
 * The same answer as `WireRecordSchema.safeParse(raw).success` for a value from JSON.parse, without the
 * copy zod makes: the ledger checks every record it receives, and zod's copy of a batch cost more than
 * the rest of the check (property-tested against the schema, test/unit/protocol/wire-record.test.ts).
 */
export function isWireRecord(raw: unknown): raw is JournalRecord {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const r = raw as Record<string, unknown>;
  let keys = 0;
  for (const key in r) {
    if (!RECORD_KEYS.has(key)) return false;
    keys++;
  }
  if (keys !== RECORD_KEYS.size) return false;
  const { seq, ts, clock, prevHash, hash, events } = r;
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) return false;
  if (!Number.isSafeInteger(ts) || (ts as number) < 0) return false;
  if (clock !== 'trusted' && clock !== 'untrusted') return false;
  if (typeof prevHash !== 'string' || !HEX64.test(prevHash)) return false;
  if (typeof hash !== 'string' || !HEX64.test(hash)) return false;
  if (!Array.isArray(events) || events.length < 1 || events.length > 1000) return false;
  for (const e of events) {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return false;
    const type = (e as { type?: unknown }).type;
    // zod measures a string in code points: past 64 UTF-16 units, surrogate pairs are counted as one.
    if (typeof type !== 'string' || type.length < 1 || (type.length > 64 && codePoints(type) > 64)) {
      return false;
    }
  }
  return true;
}

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** device → cloud on `journal`: consecutive records of one epoch, in seq order. */
export const JournalBatchSchema = z
  .object({
    v: z.literal(WIRE_VERSION),
    deviceId: WireId,
    epoch: z.number().int().min(1).max(0xffffffff),
    records: z.array(WireRecordSchema).min(1).max(BATCH_LIMITS.maxRecords),
  })
  .strict();
export type JournalBatch = { v: 1; deviceId: string; epoch: number; records: JournalRecord[] };

/** Why the ledger would not book a record (it keeps it in quarantine and acks it as rejected). */
export const RejectCode = z.enum([
  'BAD_JSON',
  'BAD_SCHEMA',
  'TOO_LARGE',
  'DEVICE_MISMATCH',
  'BAD_HASH',
  'CHAIN_BREAK',
  'UNKNOWN_EVENT',
  'CANNOT_APPLY',
]);
export type RejectCode = z.infer<typeof RejectCode>;

/**
 * cloud → device on `ack`, retained: everything of `epoch` up to `ackedThrough` is in the books (or
 * rejected, listed). Cumulative, so one lost ack is repaired by the next; the device drops its
 * "pending" mark only for what this covers, never on a broker's PUBACK.
 */
export const AckSchema = z
  .object({
    v: z.literal(WIRE_VERSION),
    epoch: z.number().int().min(1).max(0xffffffff),
    ackedThrough: z.number().int().min(0),
    /** The most recent rejections of this epoch (bounded), for the device's log and status. */
    rejected: z.array(z.object({ seq: z.number().int().min(1), code: RejectCode }).strict()).max(100),
    /** Exceptions the ledger raised on this device's records (oversells, SAF declines), most recent. */
    exceptions: z
      .array(
        z
          .object({ seq: z.number().int().min(1), kind: z.string().max(40), ref: z.string().max(80) })
          .strict(),
      )
      .max(100),
  })
  .strict();
export type Ack = z.infer<typeof AckSchema>;

/** device → cloud on `status`, retained; the last will says `online: false`. */
export const DeviceStatusSchema = z
  .object({
    v: z.literal(WIRE_VERSION),
    online: z.boolean(),
    /** The store the register sells for: its sales are booked to it. */
    storeId: WireId.optional(),
    epoch: z.number().int().min(1).max(0xffffffff).optional(),
    lastSeq: z.number().int().min(0).optional(),
    lastAckedSeq: z.number().int().min(0).optional(),
    pending: z.number().int().min(0).optional(),
    /** Wall-clock ms of the oldest record not yet acked, null when none. */
    oldestPendingTs: z.number().int().min(0).nullable().optional(),
    clockTrusted: z.boolean().optional(),
    version: z.string().max(40).optional(),
    ts: z.number().int().min(0).optional(),
  })
  .strict();
export type DeviceStatus = z.infer<typeof DeviceStatusSchema>;

/** Largest payload either side accepts on any topic, bytes: a full batch, with headroom. */
export const MAX_PAYLOAD_BYTES = BATCH_LIMITS.maxBytes + 64 * 1024;
