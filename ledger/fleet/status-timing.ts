// Whether a device status just received says anything about the device's clock and about when it was
// last heard from. The ledger cannot see when a status was sent, only when it arrived: a retained
// status is handed over again after the ledger reconnects (hours old, perhaps), and the broker
// publishes a register's last will (which carries no `ts`) long after the register went quiet. So a
// status is judged against the one before it: a status that took as long to arrive as the one before
// (its `ts` minus receipt moved by no more than the tolerance) is prompt; one that took longer is late.

export const STATUS_TIMING = {
  /**
   * ms a status may take to arrive beyond what the status before it took, and still count as prompt:
   * 2 min, the page's clock drift threshold (a smaller difference would not change what the page says),
   * and far more than a broker's hand-over takes when the link is up.
   */
  lateAfterMs: 2 * 60 * 1000,
} as const;

/** What the ledger keeps of the last status that carried a `ts`. */
export interface StatusReceipt {
  /** The device's own time stamp of it, ms. */
  ts: number;
  /** When the ledger received it, by the ledger's clock, ms. */
  receivedAt: number;
  /** The device's clock minus the ledger's, as last established; null when not known. */
  clockSkewMs: number | null;
}

export interface StatusJudgement {
  /** The device was heard from now: its last seen moves to the receipt time. */
  heard: boolean;
  /** The device's clock minus the ledger's after this status; null when not known. */
  clockSkewMs: number | null;
}

/**
 * The decision table, for a status received at `receivedAt` carrying `ts` (undefined: none):
 *
 * | status                                  | heard | clock skew after it                            |
 * |-----------------------------------------|-------|------------------------------------------------|
 * | no ts (a last will)                     | no    | as before                                      |
 * | ts, nothing before it, ts not in the    | yes   | ts − receipt (a clock ahead cannot be explained|
 * | past beyond the tolerance               |       | by a delay)                                    |
 * | ts, nothing before it, ts in the past   | no    | unknown: a late delivery and a slow clock look |
 * | beyond the tolerance                    |       | alike (a new device gets the receipt time all  |
 * |                                         |       | the same: there is nothing else to show)       |
 * | took longer than the one before (late)  | no    | as before                                      |
 * | took as long as the one before (prompt) | yes   | ts − receipt: two statuses agree on it         |
 * | took less time than the one before      | yes   | ts − receipt unless ts is in the past beyond   |
 * |                                         |       | the tolerance, then unknown (the one before    |
 * |                                         |       | was late, or the device's clock was set        |
 * |                                         |       | forward)                                       |
 *
 * A device whose clock is set back between two statuses looks late once; the next status is prompt.
 */
export function judgeStatus(
  before: StatusReceipt | null,
  ts: number | undefined,
  receivedAt: number,
  lateAfterMs: number = STATUS_TIMING.lateAfterMs,
): StatusJudgement {
  if (ts === undefined) return { heard: false, clockSkewMs: before?.clockSkewMs ?? null };
  const skew = ts - receivedAt;
  const plausible = skew >= -lateAfterMs;
  if (!before) return { heard: plausible, clockSkewMs: plausible ? skew : null };
  // How much longer this status took to arrive than the one before: both transit times are measured
  // between the same two clocks, so the device's skew cancels out.
  const laterBy = receivedAt - ts - (before.receivedAt - before.ts);
  if (laterBy > lateAfterMs) return { heard: false, clockSkewMs: before.clockSkewMs };
  if (laterBy >= -lateAfterMs) return { heard: true, clockSkewMs: skew };
  return { heard: true, clockSkewMs: plausible ? skew : null };
}
