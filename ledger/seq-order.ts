// Per-device order across several consumers. A shared subscription hands a device's batches to the
// consumers in turn, so batch 2 can reach one consumer while another is still applying batch 1. Applied
// at once it would be "past a gap": not applied, not acked, and resent only after the device's ack
// timeout (measured: a 20× slower drain with two consumers). So a batch that starts past the device's
// cursor waits, briefly and boundedly, for the cursor to reach it — the other consumer is committing
// the batch before it — and then applies in order. A real gap still ends in the gap alarm, just later.
import { applyJournalMessage, type ApplyOutcome } from './apply.js';
import type { LedgerDb } from './db/open.js';

export const SEQ_ORDER_DEFAULTS = {
  /** Longest a batch waits for the one before it, ms: a batch applies in well under 100 ms. */
  maxWaitMs: 2000,
  /** First re-check of the cursor, ms; doubles up to 200. */
  firstPollMs: 10,
} as const;

export interface SeqOrderOptions {
  maxWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Where a batch starts, if the payload says (anything malformed goes straight to apply's refusals). */
function batchStart(payload: Buffer | string): { deviceId: string; epoch: number; firstSeq: number } | null {
  try {
    const body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8')) as {
      deviceId?: unknown;
      epoch?: unknown;
      records?: { seq?: unknown }[];
    };
    const firstSeq = body.records?.[0]?.seq;
    if (typeof body.deviceId !== 'string' || typeof body.epoch !== 'number' || typeof firstSeq !== 'number')
      return null;
    return { deviceId: body.deviceId, epoch: body.epoch, firstSeq };
  } catch {
    return null;
  }
}

async function cursorSeq(ldb: LedgerDb, deviceId: string, epoch: number): Promise<number> {
  const row = await ldb.db
    .selectFrom('device_cursors')
    .select('last_seq')
    .where('device_id', '=', deviceId)
    .where('epoch', '=', epoch)
    .executeTakeFirst();
  return row ? Number(row.last_seq) : 0;
}

/** applyJournalMessage, after waiting (bounded) until the batch is next in the device's order. */
export async function applyInSeqOrder(
  ldb: LedgerDb,
  topicDeviceId: string,
  payload: Buffer | string,
  nowMs: () => number,
  opts: SeqOrderOptions = {},
): Promise<ApplyOutcome> {
  const start = batchStart(payload);
  if (start && start.deviceId === topicDeviceId) {
    const maxWaitMs = opts.maxWaitMs ?? SEQ_ORDER_DEFAULTS.maxWaitMs;
    const sleep = opts.sleep ?? realSleep;
    let waited = 0;
    let pollMs: number = SEQ_ORDER_DEFAULTS.firstPollMs;
    while (waited < maxWaitMs && (await cursorSeq(ldb, topicDeviceId, start.epoch)) + 1 < start.firstSeq) {
      await sleep(pollMs);
      waited += pollMs;
      pollMs = Math.min(200, pollMs * 2);
    }
  }
  return applyJournalMessage(ldb, topicDeviceId, payload, nowMs());
}
