// The sd_notify client without systemd: an injected spawner records each systemd-notify run and the
// test says when it finishes; injected timers and a virtual monotonic clock drive the health loop.
import t from 'tap';
import type { Timers } from '../../../appliance/devices/device.js';
import type { Logger } from '../../../appliance/log.js';
import {
  SystemdNotifier,
  statusLine,
  type NotifyOutcome,
  type NotifySpawner,
} from '../../../appliance/systemd/notify.js';
import {
  HealthWatchdog,
  journalWritable,
  watchdogTimeoutMs,
  type HealthCheck,
} from '../../../appliance/systemd/watchdog.js';

/** A systemd-notify that never runs: each call is kept until the test finishes it. */
class FakeSpawner {
  readonly runs: { args: string[]; socket: string; done: (o: NotifyOutcome) => void; killed: boolean }[] = [];
  readonly spawn: NotifySpawner = (args, socket, done) => {
    const run = { args: [...args], socket, done, killed: false };
    this.runs.push(run);
    return { kill: () => (run.killed = true) };
  };
  /** Finish the oldest run still going. */
  finish(outcome: NotifyOutcome = { ok: true }): void {
    const run = this.running[0];
    if (!run) throw new Error('no run in flight');
    this.finished.add(run);
    run.done(outcome);
  }
  private readonly finished = new Set<object>();
  get running() {
    return this.runs.filter((r) => !this.finished.has(r));
  }
  /** Every assignment sent, run by run. */
  sent(): string[][] {
    return this.runs.map((r) => r.args);
  }
}

/** Virtual time: timers fire only as the test advances the clock, each at its due time. */
class VirtualTime implements Timers {
  now = 1_000;
  private nextId = 1;
  private readonly pending = new Map<number, { fn: () => void; at: number }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { fn, at: this.now + ms });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** Move time forward, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const next = [...this.pending].filter(([, p]) => p.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!next) break;
      this.pending.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }
  /** The event loop was blocked: time passes and nothing fires; what fell due fires on the next advance. */
  stall(ms: number): void {
    const end = this.now + ms;
    for (const p of this.pending.values()) if (p.at < end) p.at = end;
    this.now = end;
  }
  get count(): number {
    return this.pending.size;
  }
}

function recordingLog() {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const log: Logger = {
    info: (fields, msg) => lines.push({ level: 'info', msg, fields }),
    warn: (fields, msg) => lines.push({ level: 'warn', msg, fields }),
    error: (fields, msg) => lines.push({ level: 'error', msg, fields }),
  };
  return { log, lines };
}

const SOCKET = '/run/systemd/notify';

function setup(env: Record<string, string | undefined> = { NOTIFY_SOCKET: SOCKET }) {
  const spawner = new FakeSpawner();
  const time = new VirtualTime();
  const { log, lines } = recordingLog();
  const notifier = new SystemdNotifier({
    env,
    spawn: spawner.spawn,
    timers: time,
    log,
    childTimeoutMs: 10_000,
  });
  return { spawner, time, notifier, lines };
}

t.test('without NOTIFY_SOCKET every call is a no-op and nothing is spawned', async (t) => {
  for (const env of [{}, { NOTIFY_SOCKET: '' }]) {
    const { spawner, notifier } = setup(env);
    t.equal(notifier.enabled, false);
    notifier.ready();
    notifier.status('hello');
    notifier.watchdog();
    notifier.stopping();
    t.same(spawner.runs, []);
    await notifier.idle(); // resolves at once
  }
});

t.test('ready is sent once, to the socket systemd named', async (t) => {
  const { spawner, notifier } = setup();
  t.equal(notifier.enabled, true);
  notifier.ready();
  notifier.ready();
  spawner.finish();
  notifier.ready();
  t.same(spawner.sent(), [['READY=1']]);
  t.equal(spawner.runs[0]!.socket, SOCKET);
  await notifier.idle();
});

t.test('one child at a time: what comes meanwhile is merged into the next run', async (t) => {
  const { spawner, notifier } = setup();
  notifier.ready();
  notifier.status('recovering');
  notifier.status('selling');
  notifier.watchdog();
  notifier.watchdog();
  t.equal(spawner.running.length, 1, 'never more than one systemd-notify');
  spawner.finish();
  t.equal(spawner.running.length, 1);
  notifier.watchdog();
  spawner.finish();
  t.same(spawner.sent(), [['READY=1'], ['STATUS=selling', 'WATCHDOG=1']], 'the newest status wins');
  t.equal(notifier.counts.pingsDropped, 2, 'a ping while one is queued or on its way says nothing new');
  t.equal(notifier.counts.sent, 2);
  await notifier.idle();
});

t.test('a ping while a non-ping message is in flight still goes, after it', async (t) => {
  const { spawner, notifier } = setup();
  notifier.status('a');
  notifier.watchdog();
  spawner.finish();
  spawner.finish();
  t.same(spawner.sent(), [['STATUS=a'], ['WATCHDOG=1']]);
  t.equal(notifier.counts.pingsDropped, 0);
});

t.test('stopping is sent once, and ready after stopping is not', async (t) => {
  const { spawner, notifier } = setup();
  notifier.stopping();
  notifier.stopping();
  notifier.ready();
  spawner.finish();
  t.same(spawner.sent(), [['STOPPING=1']]);
  const idle = notifier.idle();
  await idle;
});

t.test('idle waits for the run in flight and what was queued behind it', async (t) => {
  const { spawner, notifier } = setup();
  notifier.ready();
  notifier.stopping();
  let idle = false;
  const done = notifier.idle().then(() => (idle = true));
  spawner.finish();
  await Promise.resolve();
  t.equal(idle, false, 'STOPPING=1 still to go');
  spawner.finish();
  await done;
  t.equal(idle, true);
  t.same(spawner.sent(), [['READY=1'], ['STOPPING=1']]);
});

t.test('a child that hangs is killed at its timeout and the queue moves on', async (t) => {
  const { spawner, time, notifier, lines } = setup();
  notifier.ready();
  notifier.status('next');
  time.advance(9_999);
  t.equal(spawner.runs[0]!.killed, false);
  time.advance(1);
  t.equal(spawner.runs[0]!.killed, true);
  t.equal(notifier.counts.failed, 1);
  t.same(spawner.sent(), [['READY=1'], ['STATUS=next']]);
  t.match(lines, [
    { level: 'error', msg: 'systemd notification failed', fields: { detail: /no answer in 10000 ms/ } },
  ]);
  // The killed child's late exit changes nothing.
  spawner.runs[0]!.done({ ok: true });
  t.equal(spawner.running.length, 2, 'the first is gone from our books, not from the fake');
  spawner.finish({ ok: false, detail: 'late' }); // the killed one's own callback: ignored
  t.equal(notifier.counts.failed, 1);
});

t.test('failures are logged once per run of failures, and recovery once', async (t) => {
  const { spawner, notifier, lines } = setup();
  for (let i = 0; i < 5; i++) {
    notifier.watchdog();
    spawner.finish({ ok: false, detail: 'systemd-notify: spawn systemd-notify ENOENT' });
  }
  notifier.watchdog();
  spawner.finish();
  t.equal(notifier.counts.failed, 5);
  t.same(
    lines.map((l) => l.msg),
    ['systemd notification failed', 'systemd notification works again'],
  );
});

t.test('a spawner that throws counts as a failure and does not wedge the queue', async (t) => {
  let calls = 0;
  const notifier = new SystemdNotifier({
    env: { NOTIFY_SOCKET: SOCKET },
    spawn: () => {
      calls++;
      throw new Error('EAGAIN');
    },
    timers: new VirtualTime(),
  });
  notifier.ready();
  notifier.watchdog();
  await notifier.idle();
  t.equal(calls, 2);
  t.equal(notifier.counts.failed, 2);
});

t.test('STATUS text is one bounded line', async (t) => {
  t.equal(statusLine('a\nb\tc\u0000d'), 'a b c d');
  t.equal(statusLine('x'.repeat(1000)).length, 200);
  const { spawner, notifier } = setup();
  notifier.status('journal\nWATCHDOG=1');
  t.same(spawner.sent(), [['STATUS=journal WATCHDOG=1']], 'no smuggled assignment');
});

t.test('watchdogTimeoutMs reads WATCHDOG_USEC for this process only', async (t) => {
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '30000000' }, 42), 30_000);
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 30_000);
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '41' }, 42), undefined);
  t.equal(watchdogTimeoutMs({}, 42), undefined);
  for (const bad of ['', '0', '-5', '1e6', 'abc', '30s'])
    t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: bad }, 42), undefined, `WATCHDOG_USEC=${bad}`);
});

function watchdogSetup(checks: HealthCheck[], timeoutMs = 30_000) {
  const s = setup();
  const wd = new HealthWatchdog({
    notifier: s.notifier,
    timeoutMs,
    checks,
    timers: s.time,
    nowMs: () => s.time.now,
    log: recordingLog().log,
  });
  /** The spawner answers at once, as systemd-notify does in a few ms. */
  const answer = () => {
    while (s.spawner.running.length) s.spawner.finish();
  };
  return { ...s, wd, answer };
}

t.test('the health loop pings at half of WatchdogSec, and not before', async (t) => {
  const { wd, time, spawner, answer } = watchdogSetup([() => undefined]);
  t.equal(wd.intervalMs, 15_000);
  wd.start();
  wd.start(); // idempotent: one loop
  time.advance(14_999);
  t.same(spawner.sent(), []);
  time.advance(1);
  answer();
  t.same(spawner.sent(), [['WATCHDOG=1']]);
  time.advance(15_000);
  answer();
  time.advance(15_000);
  answer();
  t.equal(spawner.sent().length, 3);
  t.equal(wd.counts.pinged, 3);
  wd.stop();
  t.equal(time.count, 0, 'stop leaves no timer');
  time.advance(60_000);
  t.equal(spawner.sent().length, 3);
});

t.test('no ping while a check fails; a status says why; pings resume when it passes', async (t) => {
  let why: string | undefined;
  const { wd, time, spawner, answer } = watchdogSetup([() => undefined, () => why]);
  wd.start();
  time.advance(15_000);
  answer();
  why = 'journal not writable: EROFS';
  time.advance(15_000);
  answer();
  time.advance(15_000);
  answer();
  t.same(spawner.sent(), [['WATCHDOG=1'], ['STATUS=unhealthy: journal not writable: EROFS']]);
  t.equal(wd.counts.withheld, 2);
  why = undefined;
  time.advance(15_000);
  answer();
  t.same(spawner.sent().slice(2), [['WATCHDOG=1'], ['STATUS=healthy']]);
  wd.stop();
});

t.test('a check that throws is a failed check', async (t) => {
  const { wd, time, spawner, answer } = watchdogSetup([
    () => {
      throw new Error('boom');
    },
  ]);
  wd.start();
  time.advance(15_000);
  answer();
  t.same(spawner.sent(), [['STATUS=unhealthy: health check threw: boom']]);
  wd.stop();
});

t.test('a stalled event loop withholds the ping: the timer fired too late', async (t) => {
  const { wd, time, spawner, answer } = watchdogSetup([() => undefined]);
  t.equal(wd.maxLagMs, 7_500);
  wd.start();
  time.advance(10_000);
  time.stall(12_500); // due at 15 s, the loop comes back at 22.5 s: 7.5 s late, still within bound
  time.advance(0);
  answer();
  t.same(spawner.sent(), [['WATCHDOG=1']]);
  time.advance(10_000);
  time.stall(12_501); // due at 37.5 s, back at 45.001 s: 7.501 s late
  time.advance(0);
  answer();
  t.same(spawner.sent(), [['WATCHDOG=1'], ['STATUS=unhealthy: event loop stalled 7501 ms']]);
  time.advance(15_000); // on time again
  answer();
  t.same(spawner.sent().slice(2), [['WATCHDOG=1'], ['STATUS=healthy']]);
  wd.stop();
});

t.test('journalWritable: a writable directory passes, a missing one names the errno', async (t) => {
  const dir = t.testdir({});
  t.equal(journalWritable(dir)(), undefined);
  t.equal(journalWritable(`${dir}/missing`)(), 'journal not writable: ENOENT');
});

t.test('a ping cut short by the stop signal is not an alarm', async (t) => {
  const { spawner, notifier, lines } = setup();
  notifier.watchdog();
  // systemd stops the service: SIGTERM to the whole control group, the ping's child included.
  spawner.finish({ ok: false, interrupted: true, detail: 'systemd-notify exited SIGTERM: ' });
  notifier.stopping();
  spawner.finish();
  t.equal(notifier.counts.failed, 0);
  t.equal(notifier.counts.interrupted, 1);
  t.same(
    lines.map((l) => l.level),
    ['info'],
  );
  t.match(lines[0], { msg: /cut short by SIGTERM/, fields: { sent: ['WATCHDOG=1'] } });
  t.same(spawner.sent(), [['WATCHDOG=1'], ['STOPPING=1']]);
});
