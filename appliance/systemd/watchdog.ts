// The daemon's health loop: pings systemd's watchdog at half of WatchdogSec, and only while the daemon
// is healthy. A ping that does not come makes systemd kill and restart registerd (Restart=always), so a
// wedged event loop or a journal that can no longer be written ends in a clean restart, not a dead till.
import { accessSync, constants } from 'node:fs';
import { realTimers, type Timers } from '../devices/device.js';
import { silentLogger, type Logger } from '../log.js';
import type { SystemdNotifier } from './notify.js';

/**
 * The watchdog timeout systemd asks for, ms, or undefined when there is none for this process:
 * WATCHDOG_USEC unset, not a positive integer, or WATCHDOG_PID naming another process (the variables
 * were inherited, not meant for us). As sd_watchdog_enabled(3).
 */
export function watchdogTimeoutMs(env: Record<string, string | undefined>, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d{1,15}$/.test(usec) || Number(usec) === 0) return undefined;
  const forPid = env.WATCHDOG_PID;
  if (forPid !== undefined && forPid !== '' && forPid !== String(pid)) return undefined;
  return Number(usec) / 1000;
}

/** A health check: undefined when healthy, else why not (in a few words, for the log and `systemctl status`). */
export type HealthCheck = () => string | undefined;

/**
 * The journal directory can still be written: access(2) with W_OK fails with EROFS once ext4 has
 * remounted the data partition read-only after an I/O error, and with EACCES if ownership went wrong.
 * It writes nothing, so it costs no flash wear.
 */
export function journalWritable(dir: string): HealthCheck {
  return () => {
    try {
      accessSync(dir, constants.W_OK);
      return undefined;
    } catch (err) {
      return `journal not writable: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    }
  };
}

export interface WatchdogOptions {
  notifier: Pick<SystemdNotifier, 'watchdog' | 'status'>;
  /** systemd's WatchdogSec, ms (from watchdogTimeoutMs). Pings go at half of it. */
  timeoutMs: number;
  checks: HealthCheck[];
  /**
   * How late the loop's own timer may fire before the event loop counts as stalled, ms. A quarter of
   * the timeout by default: an SD card's fdatasync can block the loop for a second or two, which is
   * slow but alive; a loop that stalls this long has stopped serving the till.
   */
  maxLagMs?: number;
  timers?: Timers;
  /** Monotonic milliseconds (performance.now by default): a wall-clock step is not a stall. */
  nowMs?: () => number;
  log?: Logger;
}

/**
 * Ticks every timeoutMs / 2. A tick pings when the timer fired within maxLagMs of when it was due and
 * every check passes; otherwise it sends a STATUS saying why and skips the ping, so systemd's watchdog
 * fires at most timeoutMs / 2 later. Constructing it only assigns; start() arms the first tick.
 */
export class HealthWatchdog {
  readonly intervalMs: number;
  readonly maxLagMs: number;
  /** Pings handed to the notifier and ticks that withheld one. */
  readonly counts = { pinged: 0, withheld: 0 };

  private readonly timers: Timers;
  private readonly nowMs: () => number;
  private readonly log: Logger;
  private handle: unknown;
  private dueMs = 0;
  private running = false;
  private unhealthy: string | undefined;

  constructor(private readonly opts: WatchdogOptions) {
    this.intervalMs = Math.max(1, Math.floor(opts.timeoutMs / 2));
    this.maxLagMs = opts.maxLagMs ?? Math.floor(opts.timeoutMs / 4);
    this.timers = opts.timers ?? realTimers;
    this.nowMs = opts.nowMs ?? (() => performance.now());
    this.log = opts.log ?? silentLogger;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    this.timers.clearTimeout(this.handle);
    this.handle = undefined;
  }

  private arm(): void {
    this.dueMs = this.nowMs() + this.intervalMs;
    this.handle = this.timers.setTimeout(() => this.tick(), this.intervalMs);
  }

  private tick(): void {
    if (!this.running) return;
    const lagMs = this.nowMs() - this.dueMs;
    const why = lagMs > this.maxLagMs ? `event loop stalled ${Math.round(lagMs)} ms` : this.firstFailure();
    if (why === undefined) {
      this.opts.notifier.watchdog();
      this.counts.pinged++;
      if (this.unhealthy !== undefined) {
        this.log.info({ was: this.unhealthy }, 'healthy again: watchdog pings resumed');
        this.opts.notifier.status('healthy');
        this.unhealthy = undefined;
      }
    } else {
      this.counts.withheld++;
      if (why !== this.unhealthy) {
        this.log.error({ alarm: 'watchdog', reason: why }, 'unhealthy: withholding the watchdog ping');
        this.opts.notifier.status(`unhealthy: ${why}`);
        this.unhealthy = why;
      }
    }
    this.arm();
  }

  private firstFailure(): string | undefined {
    for (const check of this.opts.checks) {
      let why: string | undefined;
      try {
        why = check();
      } catch (err) {
        why = `health check threw: ${String((err as Error)?.message ?? err)}`;
      }
      if (why !== undefined) return why;
    }
    return undefined;
  }
}
