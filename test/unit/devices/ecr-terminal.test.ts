// The ECR driver against the terminal simulator, joined by an in-memory serial pair, with a manual clock:
// every timeout is reached by advancing time, never by waiting. The same cases run over a real PTY in
// test/contract/terminal.test.ts; here the point is the edges (each timeout, each bound, each ack).
import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import type { Timers } from '../../../appliance/devices/device.js';
import type { OpenPort, PortLike } from '../../../appliance/devices/serial-link.js';
import {
  EcrFramer,
  encodePosMessage,
  encodeTerminalMessage,
  type PosMessage,
  type ProtocolError,
} from '../../../appliance/devices/terminal/ecr-protocol.js';
import {
  ECR_TERMINAL_DEFAULTS,
  EcrTerminal,
  Waitress,
  type EcrTerminalOptions,
} from '../../../appliance/devices/terminal/ecr-terminal.js';
import { jsonLogger } from '../../../appliance/log.js';
import type { CardRequest, TerminalEvent } from '../../../appliance/till/card.js';
import { TerminalSimulator, type TerminalSimulatorOptions } from '../../../scripts/sim/terminal-sim.js';

/** Lets every queued callback, promise and I/O-less event run: no time passes. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

/** setTimeout on a clock that only moves when told to. */
class ManualTimers implements Timers {
  nowMs = 1_000_000;
  #seq = 0;
  readonly #due = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#due.set(id, { at: this.nowMs + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#due.delete(handle as number);
  }

  /** Runs every timer due within `ms`, in order, letting the consequences of each settle. */
  async advance(ms: number): Promise<void> {
    const end = this.nowMs + ms;
    for (;;) {
      await settle();
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#due) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.#due.delete(next[0]);
      this.nowMs = next[1].at;
      next[1].fn();
    }
    this.nowMs = end;
    await settle();
  }
}

/** Two serial ports joined in memory; unplug() pulls the cable (both ends close, reopening fails). */
class MemoryPair {
  unplugged = false;
  /** The line is gone but nothing says so until a write fails (serialport on a hung-up pty). */
  hungUp = false;
  readonly written: Record<'pos' | 'terminal', Buffer[]> = { pos: [], terminal: [] };
  readonly #open: Record<'pos' | 'terminal', MemoryPort | null> = { pos: null, terminal: null };

  opener(side: 'pos' | 'terminal'): OpenPort {
    return () => new MemoryPort(this, side);
  }

  attach(port: MemoryPort): void {
    this.#open[port.side] = port;
  }

  detach(port: MemoryPort): void {
    if (this.#open[port.side] === port) this.#open[port.side] = null;
  }

  carry(from: 'pos' | 'terminal', bytes: Buffer): void {
    this.written[from].push(bytes);
    const to = this.#open[from === 'pos' ? 'terminal' : 'pos'];
    // Like a PTY: with nobody reading on the other end the bytes are lost.
    if (to?.isOpen) queueMicrotask(() => to.emit('data', bytes));
  }

  unplug(): void {
    this.unplugged = true;
    for (const port of Object.values(this.#open)) port?.pull();
  }

  replug(): void {
    this.unplugged = false;
    this.hungUp = false;
  }

  hangUpSilently(): void {
    this.unplugged = true;
    this.hungUp = true;
  }

  /** What the POS wrote, decoded. */
  posMessages(): PosMessage[] {
    const framer = new EcrFramer('pos');
    return framer
      .push(Buffer.concat(this.written.pos))
      .flatMap((e) => (e.kind === 'message' ? [e.message] : []));
  }
}

class MemoryPort extends EventEmitter implements PortLike {
  isOpen = false;

  constructor(
    private readonly pair: MemoryPair,
    readonly side: 'pos' | 'terminal',
  ) {
    super();
  }

  open(cb: (err: Error | null) => void): void {
    queueMicrotask(() => {
      if (this.pair.unplugged) return cb(new Error('ENOENT: no such file or directory'));
      this.isOpen = true;
      this.pair.attach(this);
      cb(null);
    });
  }

  write(data: Uint8Array, cb?: (err: Error | null | undefined) => void): boolean {
    if (!this.isOpen) {
      queueMicrotask(() => cb?.(new Error('Port is not open')));
      return false;
    }
    if (this.pair.hungUp) {
      queueMicrotask(() => {
        cb?.(new Error('EIO: i/o error, write'));
        this.pull();
      });
      return false;
    }
    this.pair.carry(this.side, Buffer.from(data));
    queueMicrotask(() => cb?.(null));
    return true;
  }

  drain(cb: (err: Error | null) => void): void {
    queueMicrotask(() => cb(null));
  }

  close(cb?: (err: Error | null) => void): void {
    const was = this.isOpen;
    this.isOpen = false;
    this.pair.detach(this);
    queueMicrotask(() => {
      if (was) this.emit('close');
      cb?.(null);
    });
  }

  /** The cable is gone: what serialport does when the device vanishes. */
  pull(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.pair.detach(this);
    this.emit('close', Object.assign(new Error('disconnected'), { disconnected: true }));
  }
}

/** Whether a promise has settled yet, without awaiting it. */
function track<T>(p: Promise<T>) {
  const s: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  p.then(
    (value) => Object.assign(s, { settled: true, value }),
    (error: unknown) => Object.assign(s, { settled: true, error }),
  );
  return s;
}

const PAN = '4111111111111111';
let txnSeq = 0;
const request = (over: Partial<CardRequest> = {}): CardRequest => ({
  txn: `txn-${++txnSeq}`,
  amountMinor: 1299,
  currency: 'EUR',
  offlineAllowed: true,
  ...over,
});

async function rig(
  t: Test,
  opts: {
    terminal?: Partial<EcrTerminalOptions>;
    sim?: Partial<TerminalSimulatorOptions>;
    handler?: boolean;
  } = {},
) {
  const timers = new ManualTimers();
  const pair = new MemoryPair();
  const logLines: string[] = [];
  const log = jsonLogger('test', (l) => void logLines.push(l));
  const sim = new TerminalSimulator({
    path: 'mem-peer',
    open: pair.opener('terminal'),
    timers,
    log,
    ...opts.sim,
  });
  const terminal = new EcrTerminal({
    path: 'mem',
    open: pair.opener('pos'),
    timers,
    nowMs: () => timers.nowMs,
    log,
    ...opts.terminal,
  });
  const events: TerminalEvent[] = [];
  let handle: (e: TerminalEvent) => Promise<void> = async (e) => void events.push(e);
  if (opts.handler !== false) terminal.setEventHandler((e) => handle(e));
  const protocolErrors: ProtocolError[] = [];
  terminal.on('protocolError', (e) => protocolErrors.push(e));
  t.equal(terminal.health().state, 'down', 'down before start');
  await sim.start();
  await terminal.start();
  t.teardown(async () => {
    await terminal.stop();
    await sim.stop();
  });
  return {
    timers,
    pair,
    sim,
    terminal,
    events,
    protocolErrors,
    logLines,
    setHandler: (h: (e: TerminalEvent) => Promise<void>) => (handle = h),
    /** payment.requests the driver wrote for a txn. */
    requestsSent: (txn: string) =>
      pair.posMessages().filter((m) => m.type === 'payment.request' && m.txn === txn).length,
  };
}

t.test('an online approval: ack, status messages to the handler, the result acked back', async (t) => {
  const r = await rig(t);
  t.equal(r.terminal.health().state, 'ok');
  const req = request();
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(0);
  t.same(paid.value, {
    outcome: 'approved',
    mode: 'online',
    authCode: '100000',
    maskedPan: '************4242',
    brand: 'VISA',
  });
  t.same(
    r.events.map((e) => e.type === 'status' && e.message),
    ['Present card', 'Enter PIN', 'Processing'],
    'status messages reached the handler',
  );
  t.same(r.sim.acks, [{ txn: req.txn, of: 'payment.result' }], 'the result was acked once');
  await r.timers.advance(60_000);
  t.same(r.sim.acks.length, 1, 'so it was never resent');
  t.equal(r.sim.chargesFor(req.txn), 1);
  t.match(r.pair.posMessages()[0], { type: 'payment.request', kind: 'sale', amount: 1299, currency: 'EUR' });
  t.same(r.terminal.health(), { state: 'ok', sinceMs: r.terminal.health().sinceMs });

  const refunded = track(r.terminal.refund(request({ amountMinor: 500 })));
  await r.timers.advance(0);
  t.match(refunded.value, { outcome: 'approved' });
  t.match(r.pair.posMessages().at(-2), { type: 'payment.request', kind: 'refund', amount: 500 });
});

t.test('one request at a time: a second payment while one is open is DEVICE_BUSY', async (t) => {
  const r = await rig(t);
  r.sim.hold();
  const first = request();
  const paid = track(r.terminal.pay(first));
  await r.timers.advance(0);
  t.notOk(paid.settled, 'the first is waiting for the customer');
  await t.rejects(r.terminal.pay(request()), { code: 'DEVICE_BUSY', details: { txn: first.txn } });
  await t.rejects(r.terminal.refund(request()), { code: 'DEVICE_BUSY' });
  r.sim.release();
  await r.timers.advance(0);
  t.match(paid.value, { outcome: 'approved' }, 'the first completes');
  t.equal(
    r.pair.posMessages().filter((m) => m.type === 'payment.request').length,
    1,
    'nothing else was sent',
  );
  r.sim.hold(false);
  const next = track(r.terminal.pay(request()));
  await r.timers.advance(0);
  t.match(next.value, { outcome: 'approved' }, 'free again afterwards');
});

t.test('no ack within ackTimeoutMs: DEVICE_TIMEOUT, an abort, never a resend; health says so', async (t) => {
  const r = await rig(t);
  r.sim.die();
  const req = request();
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(ECR_TERMINAL_DEFAULTS.ackTimeoutMs - 1);
  t.notOk(paid.settled, 'still waiting 1 ms before the ack timeout');
  await r.timers.advance(1);
  t.match(paid.error, { code: 'DEVICE_TIMEOUT', details: { txn: req.txn } });
  t.match(r.terminal.health(), { state: 'fault', detail: /not answering/ });
  await r.timers.advance(10 * 60_000);
  t.equal(r.requestsSent(req.txn), 1, 'the request went out once, and never again');
  t.same(
    r.pair.posMessages().map((m) => m.type),
    ['payment.request', 'abort'],
    'the driver asked it to stop, in case it was waiting for a card',
  );
  r.sim.revive();
  t.same(await query(r, req.txn), { state: 'unknown' }, 'a dead terminal never saw it');
  t.same(r.terminal.health().state, 'ok', 'an answer clears the fault');
});

async function query(r: Awaited<ReturnType<typeof rig>>, txn: string) {
  const q = track(r.terminal.query(txn));
  await r.timers.advance(0);
  if (q.error) throw q.error;
  return q.value;
}

t.test('no result within resultTimeoutMs: DEVICE_TIMEOUT, abort cancels it, query finds that', async (t) => {
  const r = await rig(t, { terminal: { resultTimeoutMs: 30_000 } });
  r.sim.hold();
  const req = request();
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(29_999);
  t.notOk(paid.settled, 'acked, so it waits for the result');
  await r.timers.advance(1);
  t.match(paid.error, { code: 'DEVICE_TIMEOUT' });
  t.equal(r.terminal.health().state, 'ok', 'an ack came: slow customer, not a dead terminal');
  t.same(await query(r, req.txn), {
    state: 'final',
    result: { outcome: 'cancelled', mode: 'online', message: 'Cancelled by the register' },
  });
  t.equal(r.sim.chargesFor(req.txn), 0, 'nothing charged');
  t.same(r.sim.acks, [{ txn: req.txn, of: 'payment.result' }], 'the late cancelled result was acked too');
  t.equal(r.requestsSent(req.txn), 1);
});

t.test('a dropped result: timeout, then status.query recovers the approval; one charge', async (t) => {
  const r = await rig(t, { terminal: { resultTimeoutMs: 10_000 } });
  r.sim.dropNextResult();
  const req = request();
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(10_000);
  t.match(paid.error, { code: 'DEVICE_TIMEOUT' });
  t.match(await query(r, req.txn), { state: 'final', result: { outcome: 'approved', mode: 'online' } });
  t.equal(r.sim.chargesFor(req.txn), 1, 'charged exactly once');
  t.equal(r.requestsSent(req.txn), 1, 'never resent by the driver');
});

t.test('paying the same txn again (the caller retrying) answers the first result: one charge', async (t) => {
  const r = await rig(t);
  const req = request();
  const first = track(r.terminal.pay(req));
  await r.timers.advance(0);
  const again = track(r.terminal.pay(req));
  await r.timers.advance(0);
  t.same(again.value, first.value);
  t.equal(r.sim.chargesFor(req.txn), 1);
  t.equal(r.sim.requestsFor(req.txn), 2, 'the caller asked twice; the terminal charged once');
});

t.test('the cable pulled mid-payment: DEVICE_DOWN at once; after the replug, query recovers', async (t) => {
  const r = await rig(t);
  r.sim.hold();
  const req = request();
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(0);
  r.pair.unplug();
  await r.timers.advance(0);
  t.match(paid.error, { code: 'DEVICE_DOWN' }, 'rejected as soon as the link went');
  t.equal(r.terminal.health().state, 'down');
  await t.rejects(r.terminal.pay(request()), { code: 'DEVICE_DOWN' }, 'a payment while down fails at once');
  await t.rejects(r.terminal.query(req.txn), { code: 'DEVICE_DOWN' }, 'so does a query');
  r.sim.release(); // the customer finished while the cable was out: charged, the result lost
  await r.timers.advance(3000);
  t.equal(r.sim.chargesFor(req.txn), 1);
  r.pair.replug();
  await r.timers.advance(5000); // longer than the backoff's maximum
  t.equal(r.terminal.health().state, 'ok', 'back by itself');
  t.match(await query(r, req.txn), { state: 'final', result: { outcome: 'approved' } });
  t.ok(
    r.sim.acks.some((a) => a.txn === req.txn && a.of === 'payment.result'),
    'the resent result was acked when it came through',
  );
  t.equal(r.sim.chargesFor(req.txn), 1, 'still one charge');
  t.equal(r.requestsSent(req.txn), 1);
});

t.test('a line that hangs up silently is found by the keep-alive, not by a timeout', async (t) => {
  for (const keepAliveMs of [ECR_TERMINAL_DEFAULTS.keepAliveMs, 0]) {
    const r = await rig(t, { terminal: { keepAliveMs } });
    r.sim.hold();
    const paid = track(r.terminal.pay(request()));
    await r.timers.advance(1000);
    const lf = r.pair.written.pos.filter((b) => b.equals(Buffer.from('\n'))).length;
    t.equal(lf, keepAliveMs > 0 ? 1 : 0, 'the keep-alive is an empty line a second');
    r.pair.hangUpSilently();
    await r.timers.advance(1000);
    if (keepAliveMs > 0) {
      t.match(paid.error, { code: 'DEVICE_DOWN' }, 'an empty line written within 1 s found it');
      t.equal(r.terminal.health().state, 'down');
    } else {
      t.notOk(paid.settled, 'without the keep-alive nothing notices');
      t.equal(r.terminal.health().state, 'ok', 'and the cashier is told all is well');
    }
  }
});

t.test(
  'status.query: unknown, in_progress, final; a timeout; a txn that cannot be on the wire',
  async (t) => {
    const r = await rig(t, { terminal: { queryTimeoutMs: 3000 } });
    t.same(await query(r, 'never-sent'), { state: 'unknown' });
    r.sim.hold();
    const req = request();
    const paid = track(r.terminal.pay(req));
    await r.timers.advance(0);
    t.same(await query(r, req.txn), { state: 'in_progress' }, 'a query may run beside the open payment');
    r.sim.release();
    await r.timers.advance(0);
    t.match(paid.value, { outcome: 'approved' });
    t.match(await query(r, req.txn), { state: 'final', result: paid.value });

    r.sim.die();
    const q = track(r.terminal.query(req.txn));
    await r.timers.advance(2999);
    t.notOk(q.settled);
    await r.timers.advance(1);
    t.match(q.error, { code: 'DEVICE_TIMEOUT' });

    const before = r.pair.written.pos.length;
    t.same(await query(r, PAN), { state: 'unknown' }, 'a PAN-like txn can never have been sent');
    t.same(await query(r, 'has space'), { state: 'unknown' });
    t.equal(r.pair.written.pos.length, before, 'and nothing was written to ask');
  },
);

t.test('offline: approved with saf; saf.result journaled, then acked, once', async (t) => {
  const r = await rig(t);
  r.sim.setOnline(false);
  const req = request({ amountMinor: 2000 });
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(0);
  t.same(paid.value, {
    outcome: 'approved',
    mode: 'offline',
    authCode: 'Y1',
    maskedPan: '************4242',
    brand: 'VISA',
    saf: true,
  });
  t.match(r.terminal.health(), { state: 'ok', detail: /terminal offline/ });

  let finish!: () => void;
  r.setHandler(async (e) => {
    r.events.push(e);
    if (e.type === 'saf.result') await new Promise<void>((resolve) => (finish = resolve));
  });
  r.sim.setOnline(true);
  await r.timers.advance(0);
  const saf = r.events.filter((e) => e.type === 'saf.result');
  t.match(saf, [{ type: 'saf.result', txn: req.txn, outcome: 'approved' }], 'delivered');
  t.notOk(
    r.sim.acks.some((a) => a.of === 'saf.result'),
    'not acked while the register journals it',
  );
  await r.timers.advance(1000); // a resend arrives meanwhile
  t.equal(
    r.events.filter((e) => e.type === 'saf.result').length,
    1,
    'a resend during journaling is held back',
  );
  finish();
  await r.timers.advance(0);
  t.same(
    r.sim.acks.filter((a) => a.of === 'saf.result'),
    [{ txn: req.txn, of: 'saf.result' }],
    'acked once journaled',
  );
  await r.timers.advance(60_000);
  t.equal(r.events.filter((e) => e.type === 'saf.result').length, 1, 'delivered once');
  t.equal(r.sim.safPending, 0);
  t.equal(r.terminal.health().detail, undefined, 'online again');
});

t.test('offline and not allowed offline: declined with the reason, nothing charged', async (t) => {
  const r = await rig(t);
  r.sim.setOnline(false);
  const req = request({ offlineAllowed: false });
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(0);
  t.match(paid.value, { outcome: 'declined', mode: 'offline', reason: 'offline_not_allowed' });
  t.equal(r.sim.chargesFor(req.txn), 0);
  t.equal(r.sim.safPending, 0);
});

t.test('a saf.result the handler fails to journal is not acked, and comes again', async (t) => {
  const r = await rig(t);
  r.sim.setOnline(false);
  const req = request();
  track(r.terminal.pay(req));
  await r.timers.advance(0);
  let calls = 0;
  r.setHandler(async (e) => {
    if (e.type !== 'saf.result') return;
    if (++calls === 1) throw new Error('disk full');
    r.events.push(e);
  });
  r.sim.safDeclineNext();
  r.sim.setOnline(true);
  await r.timers.advance(0);
  t.equal(calls, 1);
  t.same(
    r.sim.acks.filter((a) => a.of === 'saf.result'),
    [],
    'a failed journal write is never acked',
  );
  await r.timers.advance(1000);
  t.equal(calls, 2, 'the resend is delivered again');
  t.match(
    r.events.filter((e) => e.type === 'saf.result'),
    [{ outcome: 'declined', txn: req.txn }],
  );
  t.equal(r.sim.acks.filter((a) => a.of === 'saf.result').length, 1, 'and acked');
});

t.test('no event handler: a saf.result is left unacknowledged (nobody recorded it)', async (t) => {
  const r = await rig(t, { handler: false, sim: { maxResends: 2 } });
  r.sim.setOnline(false);
  track(r.terminal.pay(request()));
  await r.timers.advance(0);
  r.sim.setOnline(true);
  await r.timers.advance(10_000);
  t.same(
    r.sim.acks.filter((a) => a.of === 'saf.result'),
    [],
  );
});

t.test('duplicated results are acked each time and delivered once', async (t) => {
  const r = await rig(t);
  const req = request();
  r.sim.duplicateNextResult();
  const paid = track(r.terminal.pay(req));
  await r.timers.advance(0);
  t.match(paid.value, { outcome: 'approved' });
  t.same(r.sim.acks, [
    { txn: req.txn, of: 'payment.result' },
    { txn: req.txn, of: 'payment.result' },
  ]);

  r.sim.setOnline(false);
  const off = request();
  track(r.terminal.pay(off));
  await r.timers.advance(0);
  r.sim.duplicateNextResult();
  r.sim.setOnline(true);
  await r.timers.advance(0);
  t.equal(
    r.events.filter((e) => e.type === 'saf.result').length,
    1,
    'the saf.result reached the register once',
  );
  t.same(
    r.sim.acks.filter((a) => a.of === 'saf.result'),
    [{ txn: off.txn, of: 'saf.result' }],
    'the copy that came while it was journaled is covered by the one ack',
  );
  // A resend after the ack (the ack was lost on the way, say): acked again, not delivered again.
  await r.sim.sendRaw(
    encodeTerminalMessage({
      v: 1,
      type: 'saf.result',
      txn: off.txn,
      outcome: 'approved',
      authCode: '100001',
    }),
  );
  await r.timers.advance(0);
  t.equal(r.events.filter((e) => e.type === 'saf.result').length, 1, 'still delivered once');
  t.equal(r.sim.acks.filter((a) => a.of === 'saf.result').length, 2, 'and the resend acked');
});

t.test('garbled and cut-short results: protocol errors, then the resend completes the payment', async (t) => {
  for (const how of ['garble', 'truncate', 'cut'] as const) {
    const r = await rig(t);
    r.sim.garbleNext(how, 'payment.result');
    const paid = track(r.terminal.pay(request()));
    await r.timers.advance(0);
    t.notOk(paid.settled, `${how}: the result did not arrive whole`);
    t.equal(r.protocolErrors.length, how === 'cut' ? 0 : 1, `${how}: reported`);
    await r.timers.advance(1000);
    if (how === 'cut') {
      // The half line without its LF swallowed the first resend: one bad line, the second resend is whole.
      t.notOk(paid.settled, 'cut: the first resend ran into the half line');
      t.equal(r.protocolErrors.length, 1, 'cut: reported once the merged line ended');
      await r.timers.advance(1000);
    }
    t.match(paid.value, { outcome: 'approved' }, `${how}: the resend went through`);
    t.equal(r.terminal.protocolErrors, 1, `${how}: one bad line in all`);
  }
});

t.test('a full PAN from the terminal: refused, reported, never logged; the next payment works', async (t) => {
  const r = await rig(t);
  const raw = `{"v":1,"type":"payment.result","txn":"x","outcome":"approved","mode":"online","maskedPan":"${PAN}"}\n`;
  await r.sim.sendRaw(raw);
  await r.sim.sendRaw('\x00\x01garbage\n');
  await r.timers.advance(0);
  t.match(r.protocolErrors, [{ reason: 'pan', txn: 'x', type: 'payment.result' }, { reason: 'not-json' }]);
  t.ok(r.logLines.length > 0, 'there were log lines');
  t.notOk(
    r.logLines.some((l) => l.includes(PAN) || l.includes('4111 1111')),
    'no log line holds the PAN',
  );
  t.notOk(r.sim.acks.length, 'a refused result is not acked');
  const paid = track(r.terminal.pay(request()));
  await r.timers.advance(0);
  t.match(paid.value, { outcome: 'approved' });
});

t.test('a busy terminal refuses a second txn as an error, nothing charged', async (t) => {
  // Another POS process (a restart) could send while the terminal still runs the old one.
  const r = await rig(t);
  r.sim.hold();
  const first = request();
  track(r.terminal.pay(first));
  await r.timers.advance(0);
  const raw = encodePosMessage({
    v: 1,
    type: 'payment.request',
    txn: 'other',
    amount: 100,
    currency: 'EUR',
    offlineAllowed: true,
    kind: 'sale',
  });
  const results: unknown[] = [];
  r.sim.on('sent', (m) => m.type === 'payment.result' && results.push(m));
  r.pair.carry('pos', raw);
  await r.timers.advance(0);
  t.match(results, [{ txn: 'other', outcome: 'error', reason: 'busy' }]);
  t.equal(r.sim.txnState('other'), 'final');
  t.equal(r.sim.chargesFor('other'), 0);
});

t.test(
  'a terminal that dies mid-transaction: timeout, no answer; restarted, the txn is an error',
  async (t) => {
    const r = await rig(t, { terminal: { resultTimeoutMs: 20_000, queryTimeoutMs: 1000 } });
    r.sim.dieMidTransaction();
    const req = request();
    const paid = track(r.terminal.pay(req));
    await r.timers.advance(20_000);
    t.match(paid.error, { code: 'DEVICE_TIMEOUT' });
    const q = track(r.terminal.query(req.txn));
    await r.timers.advance(1000);
    t.match(q.error, { code: 'DEVICE_TIMEOUT' }, 'a dead terminal answers no query');
    r.sim.revive();
    t.match(await query(r, req.txn), { state: 'final', result: { outcome: 'error' } });
    t.equal(r.sim.chargesFor(req.txn), 0);
  },
);

t.test('stop() rejects what waits and leaves a handed-in link alone', async (t) => {
  const r = await rig(t);
  r.sim.hold();
  const paid = track(r.terminal.pay(request()));
  await r.timers.advance(0);
  await r.terminal.stop();
  await r.timers.advance(0);
  t.match(paid.error, { code: 'DEVICE_DOWN' });
  await r.terminal.stop(); // twice is fine
  t.throws(() => new EcrTerminal({}), { code: 'CONFIG_INVALID' }, 'a path or a link is needed');
});

t.test('the number of waiters is bounded', async (t) => {
  const r = await rig(t, { terminal: { maxWaiters: 2 } });
  r.sim.die();
  const a = track(r.terminal.query('a'));
  const b = track(r.terminal.query('b'));
  await t.rejects(r.terminal.query('c'), { code: 'DEVICE_BUSY' });
  await r.timers.advance(ECR_TERMINAL_DEFAULTS.queryTimeoutMs);
  t.match([a.error, b.error], [{ code: 'DEVICE_TIMEOUT' }, { code: 'DEVICE_TIMEOUT' }]);
});

t.test('the waitress: first match wins, cancel stops the timer, rejectAll empties it', async (t) => {
  const timers = new ManualTimers();
  const w = new Waitress<{ n: number }>(timers, 3);
  const isOdd = (m: { n: number }): m is { n: number } => m.n % 2 === 1;
  const one = track(w.waitFor(isOdd, 100, () => new Error('one')).promise);
  const two = track(w.waitFor(isOdd, 100, () => new Error('two')).promise);
  const cancelled = w.waitFor(isOdd, 50, () => new Error('never'));
  cancelled.cancel();
  t.equal(w.size, 2);
  t.notOk(w.resolve({ n: 2 }), 'no match');
  t.ok(w.resolve({ n: 3 }));
  await timers.advance(0);
  t.same(one.value, { n: 3 }, 'the first waiter got it');
  t.notOk(two.settled);
  await timers.advance(100);
  t.match(two.error, { message: 'two' }, 'the second timed out');
  const three = track(w.waitFor(isOdd, 100, () => new Error('x')).promise);
  w.rejectAll(new Error('gone'));
  await timers.advance(0);
  t.match(three.error, { message: 'gone' });
  t.equal(w.size, 0);
});

t.test('the simulator: resends are bounded, txns are bounded, repeats never charge', async (t) => {
  const timers = new ManualTimers();
  const pair = new MemoryPair();
  const sim = new TerminalSimulator({
    path: 'p',
    open: pair.opener('terminal'),
    timers,
    maxResends: 3,
    resendEveryMs: 100,
    maxTxns: 3,
    statusMessages: [],
  });
  // The POS side here is a bare port: it never acks, so the simulator's resending shows.
  const pos = pair.opener('pos')('x', 9600);
  await new Promise<void>((resolve) => pos.open(() => resolve()));
  const fromTerminal = new EcrFramer('terminal');
  const seen: string[] = [];
  pos.on('data', (b: Buffer) => {
    for (const e of fromTerminal.push(b))
      if (e.kind === 'message') seen.push(`${e.message.type} ${e.message.txn}`);
  });
  await sim.start();
  t.teardown(() => sim.stop());
  const send = (m: PosMessage) => pos.write(encodePosMessage(m));
  const pay = (txn: string) =>
    send({
      v: 1,
      type: 'payment.request',
      txn,
      amount: 100,
      currency: 'EUR',
      offlineAllowed: true,
      kind: 'sale',
    });

  pay('a');
  await timers.advance(10_000);
  t.same(seen, ['ack a', ...Array(4).fill('payment.result a')], 'sent once and resent 3 times, then no more');
  seen.length = 0;

  pay('a');
  await timers.advance(0);
  t.same(seen, ['ack a', 'payment.result a'], 'a repeat is answered with the stored result');
  send({ v: 1, type: 'ack', txn: 'a', of: 'payment.result' });
  await timers.advance(10_000);
  t.same(seen, ['ack a', 'payment.result a'], 'and an ack stops its resending');
  t.equal(sim.chargesFor('a'), 1, 'one charge');

  for (const txn of ['b', 'c', 'd']) pay(txn);
  await timers.advance(0);
  t.equal(sim.txnState('a'), 'unknown', 'the oldest of more than maxTxns is forgotten');
  t.equal(sim.txnState('d'), 'final');

  // A raw line from the terminal reaches the POS untouched; bad input to the simulator is reported.
  const errors: ProtocolError[] = [];
  sim.on('protocolError', (e) => errors.push(e));
  pos.write(Buffer.from('nonsense\n'));
  await timers.advance(0);
  t.match(errors, [{ reason: 'not-json' }]);
  t.ok(encodeTerminalMessage({ v: 1, type: 'ack', txn: 'z' }).length > 0);
});
