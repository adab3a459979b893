// Time is injected everywhere so tests are deterministic. A Raspberry Pi has no real-time clock: until
// NTP has synchronised, the wall clock may be anywhere, and records say so.
import { existsSync } from 'node:fs';

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Whether the wall clock is known to be right (synchronised since boot). */
  trusted(): boolean;
}

/** systemd-timesyncd creates this file once the clock has been synchronised. */
export const TIMESYNC_MARKER = '/run/systemd/timesync/synchronized';

/** How often to look for the marker while the clock is not yet trusted. */
const MARKER_CHECK_INTERVAL_MS = 1000;

export function systemClock(opts: { assumeTrusted?: boolean; marker?: string } = {}): Clock {
  const marker = opts.marker ?? TIMESYNC_MARKER;
  let synced = opts.assumeTrusted ?? false;
  let checkedAt = -Infinity;
  return {
    nowMs: () => Date.now(),
    // Once synchronised it stays so until reboot; until then a stat at most once a second, not one
    // per record on the commit path.
    trusted: () => {
      if (synced) return true;
      const now = performance.now();
      if (now - checkedAt >= MARKER_CHECK_INTERVAL_MS) {
        checkedAt = now;
        synced = existsSync(marker);
      }
      return synced;
    },
  };
}

/** A clock that moves only when told to: for tests and simulations. */
export function manualClock(startMs = Date.UTC(2026, 0, 1), trusted = true) {
  let now = startMs;
  return {
    nowMs: () => now,
    trusted: () => trusted,
    advance(ms: number) {
      now += ms;
    },
    set(ms: number) {
      now = ms;
    },
  };
}
