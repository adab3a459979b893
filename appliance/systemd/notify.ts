// The daemon's side of systemd's notify protocol (sd_notify(3)): READY, STOPPING, STATUS and watchdog
// pings, each sent by a `systemd-notify` child, because Node cannot send on a unix datagram socket
// (decision 0009). At most one child runs at a time; what arrives meanwhile is merged into the next one.
import { spawn } from 'node:child_process';
import { realTimers, type Timers } from '../devices/device.js';
import { silentLogger, type Logger } from '../log.js';

/** What one `systemd-notify` run came to. */
export interface NotifyOutcome {
  ok: boolean;
  /** Why not, when not ok: the exit status and the start of its stderr, or the spawn error. */
  detail?: string;
  /**
   * The child was stopped by SIGTERM: systemd stopping the service signals its whole control group,
   * children included, so a ping on the wire at that moment dies with it. Not a failure of the link.
   */
  interrupted?: boolean;
}

/** A running notify child: killed when it overruns its time. */
export interface NotifyChild {
  kill(): void;
}

/**
 * Runs `systemd-notify ARGS` with NOTIFY_SOCKET set to `socket`, and calls `done` once when it is over.
 * Injected, so tests see exactly which messages went out without systemd.
 */
export type NotifySpawner = (
  args: readonly string[],
  socket: string,
  done: (outcome: NotifyOutcome) => void,
) => NotifyChild;

/** stderr kept from a failing child, bytes: enough for systemd-notify's one-line reason. */
const STDERR_KEEP = 512;

/** The real spawner: the systemd-notify on PATH (Debian: package systemd, /usr/bin/systemd-notify). */
export function systemdNotifySpawner(command = 'systemd-notify'): NotifySpawner {
  return (args, socket, done) => {
    // No --no-block: systemd-notify then waits (BARRIER=1) until PID 1 has read the message, so the
    // sender is still alive to be attributed to our unit (systemd-notify(1), NotifyAccess=all).
    const child = spawn(command, [...args], {
      env: { NOTIFY_SOCKET: socket, PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let finished = false;
    const finish = (outcome: NotifyOutcome) => {
      if (finished) return;
      finished = true;
      done(outcome);
    };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (stderr.length < STDERR_KEEP) stderr = (stderr + chunk).slice(0, STDERR_KEEP);
    });
    child.on('error', (err) => finish({ ok: false, detail: `${command}: ${err.message}` }));
    child.on('close', (code, signal) =>
      finish(
        code === 0
          ? { ok: true }
          : {
              ok: false,
              detail: `${command} exited ${code ?? signal}: ${stderr.trim()}`,
              ...(signal === 'SIGTERM' ? { interrupted: true } : {}),
            },
      ),
    );
    return { kill: () => child.kill('SIGKILL') };
  };
}

export interface NotifierOptions {
  /** Where NOTIFY_SOCKET is read from; process.env by default. */
  env?: Record<string, string | undefined>;
  spawn?: NotifySpawner;
  timers?: Timers;
  log?: Logger;
  /**
   * A child that has not finished after this long is killed, ms. systemd-notify itself gives PID 1
   * 5 s to answer its barrier; 10 s leaves it room to say so before we cut it off.
   */
  childTimeoutMs?: number;
}

/** STATUS= is one line for `systemctl status`: control characters would end the assignment early. */
const STATUS_MAX_CHARS = 200;

export function statusLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, STATUS_MAX_CHARS);
}

/**
 * One client per process. Every method returns at once; delivery is best effort and logged when it
 * fails (systemd then acts on the missing message: a start timeout or a watchdog kill).
 */
export class SystemdNotifier {
  /** False without NOTIFY_SOCKET (not started by systemd, or Type= not notify): every call is a no-op. */
  readonly enabled: boolean;
  /** Children run, pings dropped because one was already on its way, children that failed. */
  readonly counts = { sent: 0, pingsDropped: 0, failed: 0, interrupted: 0 };

  private readonly socket: string;
  private readonly spawn: NotifySpawner;
  private readonly timers: Timers;
  private readonly log: Logger;
  private readonly childTimeoutMs: number;
  /** Assignments waiting for the child in flight to finish; one per variable, so bounded. */
  private readonly pending = new Map<string, string>();
  private inFlight: { vars: ReadonlyMap<string, string> } | undefined;
  private readySent = false;
  private stoppingSent = false;
  private idleWaiters: (() => void)[] = [];
  private failureLogged = false;

  constructor(opts: NotifierOptions = {}) {
    const env = opts.env ?? process.env;
    this.socket = env.NOTIFY_SOCKET ?? '';
    this.enabled = this.socket !== '';
    this.spawn = opts.spawn ?? systemdNotifySpawner();
    this.timers = opts.timers ?? realTimers;
    this.log = opts.log ?? silentLogger;
    this.childTimeoutMs = opts.childTimeoutMs ?? 10_000;
  }

  /** Start-up is complete. Sent once; later calls, and any after stopping(), do nothing. */
  ready(): void {
    if (this.readySent || this.stoppingSent) return;
    this.readySent = true;
    this.send([['READY', '1']]);
  }

  /** Shutdown has begun. Sent once. */
  stopping(): void {
    if (this.stoppingSent) return;
    this.stoppingSent = true;
    this.send([['STOPPING', '1']]);
  }

  /** A watchdog ping. Dropped while a ping is already on its way: a second one would say nothing new. */
  watchdog(): void {
    if (!this.enabled) return;
    if (this.inFlight?.vars.has('WATCHDOG') || this.pending.has('WATCHDOG')) {
      this.counts.pingsDropped++;
      return;
    }
    this.send([['WATCHDOG', '1']]);
  }

  /** A one-line status for `systemctl status registerd`; a newer one replaces one not yet sent. */
  status(text: string): void {
    this.send([['STATUS', statusLine(text)]]);
  }

  /** Resolves when no child runs and nothing waits to be sent (for shutdown, and tests). */
  idle(): Promise<void> {
    if (!this.inFlight && this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private send(vars: [string, string][]): void {
    if (!this.enabled) return;
    for (const [k, v] of vars) this.pending.set(k, v);
    if (!this.inFlight) this.flush();
  }

  private flush(): void {
    if (this.pending.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
      return;
    }
    const vars = new Map(this.pending);
    this.pending.clear();
    this.inFlight = { vars };
    this.counts.sent++;
    const args = [...vars].map(([k, v]) => `${k}=${v}`);
    let timer: unknown = undefined;
    let over = false;
    const done = (outcome: NotifyOutcome) => {
      if (over) return;
      over = true;
      this.timers.clearTimeout(timer);
      this.inFlight = undefined;
      if (!outcome.ok && outcome.interrupted) {
        this.counts.interrupted++;
        this.log.info({ sent: args }, 'systemd notification cut short by SIGTERM (the service is stopping)');
      } else if (!outcome.ok) this.failed(args, outcome.detail ?? 'failed');
      else if (this.failureLogged) {
        this.failureLogged = false;
        this.log.info({ sent: args }, 'systemd notification works again');
      }
      this.flush();
    };
    let child: NotifyChild;
    try {
      child = this.spawn(args, this.socket, done);
    } catch (err) {
      done({ ok: false, detail: String((err as Error)?.message ?? err) });
      return;
    }
    if (over) return; // the spawner finished at once (a test's, or a failed spawn)
    timer = this.timers.setTimeout(() => {
      child.kill();
      done({ ok: false, detail: `no answer in ${this.childTimeoutMs} ms` });
    }, this.childTimeoutMs);
  }

  private failed(args: string[], detail: string): void {
    this.counts.failed++;
    // One error per run of failures, not one per ping: a missing systemd-notify would fill the log.
    if (this.failureLogged) return;
    this.failureLogged = true;
    this.log.error({ alarm: 'systemd', sent: args, detail }, 'systemd notification failed');
  }
}
