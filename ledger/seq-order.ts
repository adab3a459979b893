// Per-device order across several consumers. A shared subscription hands a device's batches to the
// consumers in turn, so batch 2 can reach one consumer while another is still applying batch 1. Applied
// at once it would be "past a gap": not applied, not acked, and resent only after the device's ack
// timeout (measured: a 20× slower drain with two consumers). So a batch that starts past the device's
// cursor waits, briefly and boundedly, for the cursor to reach it — the other consumer is committing
// the batch before it — and then applies in order. A real gap still ends in the gap alarm, just later.
import { applyJournalMessage, type ApplyOutcome, type CheckedJournalMessage } from './apply.js';
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
export function applyInSeqOrder(
  ldb: LedgerDb,
  topicDeviceId: string,
  message: Buffer | string | CheckedJournalMessage,
  nowMs: number,
  opts: SeqOrderOptions = {},
): Promise<ApplyOutcome> {
  const maxWaitMs = opts.maxWaitMs ?? SEQ_ORDER_DEFAULTS.maxWaitMs;
  const sleep = opts.sleep ?? realSleep;
  return applyJournalMessage(ldb, topicDeviceId, message, nowMs, {
    awaitTurn: async (deviceId, epoch, firstSeq) => {
      let waited = 0;
      let pollMs: number = SEQ_ORDER_DEFAULTS.firstPollMs;
      while (waited < maxWaitMs && (await cursorSeq(ldb, deviceId, epoch)) + 1 < firstSeq) {
        await sleep(pollMs);
        waited += pollMs;
        pollMs = Math.min(200, pollMs * 2);
      }
    },
  });
}
