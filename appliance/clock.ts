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

export function systemClock(opts: { assumeTrusted?: boolean; marker?: string } = {}): Clock {
  const marker = opts.marker ?? TIMESYNC_MARKER;
  let synced = opts.assumeTrusted ?? false;
  return {
    nowMs: () => Date.now(),
    // Once synchronised it stays so until reboot; until then the check is a cheap stat.
    trusted: () => (synced ||= existsSync(marker)),
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
