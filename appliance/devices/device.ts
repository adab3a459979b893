// What every device driver shares: a health the status line shows, a bounded jittered backoff for
// reconnecting, and an injectable timer so tests drive retries without sleeping.

/** What the cashier's status line shows for one device. */
export interface DeviceHealth {
  /** `ok`: working. `down`: unplugged or unreachable, retrying by itself. `fault`: attached but unusable (paper out, cover open). */
  state: 'ok' | 'down' | 'fault' | 'none';
  /** Short, for the cashier: "paper out", "no answer from /dev/pos/terminal". */
  detail?: string;
  /** When the state last changed (ms since epoch), from the driver's clock. */
  sinceMs?: number;
}

export const NO_DEVICE: DeviceHealth = { state: 'none' };

/** setTimeout's shape, injectable (tests hand in a manual scheduler). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface BackoffOptions {
  /** First retry after about this long (ms): a replugged USB device enumerates in ~0.5 s. */
  initialMs?: number;
  /** Never wait longer than this (ms) between tries: a cashier replugging a cable expects it back soon. */
  maxMs?: number;
  /** Uniform in [0, 1); seeded in tests. */
  random?: () => number;
}

export const BACKOFF_DEFAULTS = { initialMs: 250, maxMs: 5000 } as const;

/**
 * Exponential backoff with "equal jitter": attempt n waits between half and all of
 * min(maxMs, initialMs·2ⁿ), so a fleet rebooting together does not retry in lockstep.
 */
export function backoffDelayMs(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? BACKOFF_DEFAULTS.initialMs;
  const max = opts.maxMs ?? BACKOFF_DEFAULTS.maxMs;
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
