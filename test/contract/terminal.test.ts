// The card terminal contract: one suite of what the register relies on (CardTerminal in
// appliance/till/card.ts), run against the in-process SimulatedCardTerminal and against the ECR driver
// talking to the terminal simulator through a real socat pseudo-terminal pair. The faults only a wire
// has (timeouts, a pulled cable, garbage, resends, a restarted register) follow for the PTY alone.
// Real timers with short timeouts; every wait is for an event, bounded.
import t, { type Test } from 'tap';
import { EventEmitter, on } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeTerminalMessage, type ProtocolError } from '../../appliance/devices/terminal/ecr-protocol.js';
import { EcrTerminal, type EcrTerminalOptions } from '../../appliance/devices/terminal/ecr-terminal.js';
import {
  SimulatedCardTerminal,
  type CardRequest,
  type CardTerminal,
  type TerminalEvent,
} from '../../appliance/till/card.js';
import { jsonLogger, silentLogger } from '../../appliance/log.js';
import { ptyPair, type PtyPair } from '../../scripts/sim/pty.js';
import { TerminalSimulator, type TerminalSimulatorOptions } from '../../scripts/sim/terminal-sim.js';

const EVENT_TIMEOUT_MS = 5000; // a message crosses the pty in well under 10 ms; this only bounds a hang
const BACKOFF = { initialMs: 20, maxMs: 100 }; // ms: a replug is found within ~100 ms
const MASKED = /^\*{12}\d{4}$/;
// ECR_DEBUG=1 shows both sides' logs (wire traffic with its direction) on stderr.
const logFor = (component: string) => (process.env.ECR_DEBUG ? jsonLogger(component) : silentLogger);

/** The next `event` from `emitter` for which `pred` holds; fails the test after EVENT_TIMEOUT_MS. */
async function next<A extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  pred: (...args: A) => boolean = () => true,
): Promise<A> {
  // on() subscribes at once, so an event fired right after this call is not missed.
  for await (const args of on(emitter, event, { signal: AbortSignal.timeout(EVENT_TIMEOUT_MS) })) {
    if (pred(...(args as A))) return args as A;
  }
  throw new Error(`${event}: the emitter ended`);
}

let txnSeq = 0;
const request = (over: Partial<CardRequest> = {}): CardRequest => ({
  txn: `c-${process.pid}-${++txnSeq}`,
  amountMinor: 1299,
  currency: 'EUR',
  offlineAllowed: true,
  ...over,
});

/**
 * Pulls the cable and removes the links socat leaves behind: killed with SIGKILL it cannot remove them,
 * and a dangling link can point at a pseudo-terminal number another pair has reused by the time the
 * driver retries (and makes replug() return before socat has made the new links).
 */
async function unplug(pair: PtyPair): Promise<void> {
  await pair.unplug();
  rmSync(pair.device, { force: true });
  rmSync(pair.peer, { force: true });
}

// --- the abstract suite ---------------------------------------------------------------------------

interface Harness {
  terminal: CardTerminal;
  setOnline(online: boolean): void;
  declineAboveMinor(minor: number): void;
  /** Approved charges the terminal made for the txn. */
  chargesFor(txn: string): number;
  /** Goes online and resolves with the saf.result events the register received once it acked them. */
  forwardSaf?(txn: string): Promise<{ events: TerminalEvent[]; acks: number }>;
}

function cardTerminalContract(name: string, make: (t: Test) => Promise<Harness>): void {
  t.test(`${name}: approves online`, async (t) => {
    const h = await make(t);
    const req = request();
    const r = await h.terminal.pay(req);
    t.match(r, { outcome: 'approved', mode: 'online', authCode: /./, maskedPan: MASKED });
    t.notOk(r.saf, 'no store and forward online');
    const q = await h.terminal.query(req.txn);
    t.match(q, { state: 'final', result: r }, 'query tells the same');
    t.same(q, { state: 'final', result: r }, 'query tells exactly the same');
    t.equal(h.chargesFor(req.txn), 1);
  });

  t.test(`${name}: approves offline within the limits, saf; the later outcome arrives once`, async (t) => {
    const h = await make(t);
    h.setOnline(false);
    const req = request({ offlineAllowed: true });
    const r = await h.terminal.pay(req);
    t.match(r, { outcome: 'approved', mode: 'offline', saf: true, maskedPan: MASKED });
    t.equal(h.chargesFor(req.txn), 1);
    if (h.forwardSaf) {
      const { events, acks } = await h.forwardSaf(req.txn);
      t.match(events, [{ type: 'saf.result', txn: req.txn, outcome: 'approved' }], 'delivered once');
      t.equal(acks, 1, 'acked once');
    }
  });

  t.test(`${name}: refuses offline when the POS's limits do not allow it`, async (t) => {
    const h = await make(t);
    h.setOnline(false);
    const req = request({ offlineAllowed: false });
    const r = await h.terminal.pay(req);
    t.match(r, { outcome: 'declined', mode: 'offline', reason: 'offline_not_allowed' });
    t.notOk(r.saf);
    t.equal(h.chargesFor(req.txn), 0, 'nothing charged');
  });

  t.test(`${name}: declines by amount`, async (t) => {
    const h = await make(t);
    h.declineAboveMinor(10_000);
    const over = request({ amountMinor: 10_001 });
    t.match(await h.terminal.pay(over), { outcome: 'declined', mode: 'online' });
    t.equal(h.chargesFor(over.txn), 0);
    const within = request({ amountMinor: 10_000 });
    t.match(await h.terminal.pay(within), { outcome: 'approved' });
  });

  t.test(`${name}: the same txn twice is one charge with one answer`, async (t) => {
    const h = await make(t);
    const req = request();
    const first = await h.terminal.pay(req);
    const second = await h.terminal.pay(req);
    t.match(second, first, 'the stored answer');
    t.same(second, first, 'exactly the stored answer');
    t.equal(h.chargesFor(req.txn), 1);
  });

  t.test(`${name}: a txn it never saw is unknown`, async (t) => {
    const h = await make(t);
    t.same(await h.terminal.query(request().txn), { state: 'unknown' });
  });
}

// --- the in-process terminal ----------------------------------------------------------------------

cardTerminalContract('in-process', async () => {
  const terminal = new SimulatedCardTerminal();
  return {
    terminal,
    setOnline: (online) => void (terminal.online = online),
    declineAboveMinor: (minor) => void (terminal.declineAboveMinor = minor),
    chargesFor: (txn) => (terminal.charges.get(txn)?.outcome.outcome === 'approved' ? 1 : 0),
  };
});

// --- the ECR driver over a real PTY ---------------------------------------------------------------

interface Rig {
  pair: PtyPair;
  sim: TerminalSimulator;
  terminal: EcrTerminal;
  events: TerminalEvent[];
  /** Emits `event` for each TerminalEvent the register heard. */
  heard: EventEmitter;
  protocolErrors: ProtocolError[];
  driver(opts?: Partial<EcrTerminalOptions>): Promise<EcrTerminal>;
}

async function rig(
  t: Test,
  opts: { terminal?: Partial<EcrTerminalOptions>; sim?: Partial<TerminalSimulatorOptions> } = {},
): Promise<Rig> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ecr-'));
  const pair = await ptyPair(dir, 'terminal');
  const sim = new TerminalSimulator({
    path: pair.peer,
    backoff: BACKOFF,
    resendEveryMs: 100,
    log: logFor('terminal-sim'),
    ...opts.sim,
  });
  const events: TerminalEvent[] = [];
  const heard = new EventEmitter();
  const protocolErrors: ProtocolError[] = [];
  const drivers: EcrTerminal[] = [];
  const driver = async (more: Partial<EcrTerminalOptions> = {}) => {
    const d = new EcrTerminal({
      path: pair.device,
      backoff: BACKOFF,
      ackTimeoutMs: 1000,
      resultTimeoutMs: 5000,
      queryTimeoutMs: 1000,
      keepAliveMs: 100, // a pulled cable is seen within ~100 ms, well inside every timeout above
      log: logFor('ecr'),
      ...opts.terminal,
      ...more,
    });
    d.setEventHandler(async (e) => {
      events.push(e);
      heard.emit('event', e);
    });
    d.on('protocolError', (e) => protocolErrors.push(e));
    drivers.push(d);
    await d.start();
    return d;
  };
  t.teardown(async () => {
    for (const d of drivers) await d.stop();
    await sim.stop();
    await pair.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await sim.start();
  const terminal = await driver();
  t.ok(sim.isUp && terminal.health().state === 'ok', 'both ends of the pty are open');
  return { pair, sim, terminal, events, heard, protocolErrors, driver };
}

cardTerminalContract('ECR over a pty', async (t) => {
  const { sim, terminal, events } = await rig(t);
  return {
    terminal,
    setOnline: (online) => sim.setOnline(online),
    declineAboveMinor: (minor) => void (sim.rules = { ...sim.rules, declineAboveMinor: minor }),
    chargesFor: (txn) => sim.chargesFor(txn),
    async forwardSaf(txn) {
      const acked = next<[string, string]>(sim, 'acked', (x, of) => x === txn && of === 'saf.result');
      sim.setOnline(true);
      await acked;
      return {
        events: events.filter((e) => e.type === 'saf.result'),
        acks: sim.acks.filter((a) => a.txn === txn && a.of === 'saf.result').length,
      };
    },
  };
});

t.test('ECR over a pty: a result lost on the way; timeout, then status.query finds one charge', async (t) => {
  const { sim, terminal } = await rig(t, { terminal: { resultTimeoutMs: 500 } });
  sim.dropNextResult();
  const req = request();
  await t.rejects(terminal.pay(req), { code: 'DEVICE_TIMEOUT' });
  t.match(await terminal.query(req.txn), { state: 'final', result: { outcome: 'approved', mode: 'online' } });
  t.equal(sim.chargesFor(req.txn), 1, 'exactly one charge');
  t.equal(sim.requestsFor(req.txn), 1, 'the request was sent once');
});

t.test('ECR over a pty: the cable pulled mid-payment; DEVICE_DOWN, replug, query recovers', async (t) => {
  const { pair, sim, terminal, heard } = await rig(t);
  sim.hold(); // the customer is still at the PIN pad
  const req = request();
  // A status message comes after the ack: the payment is under way when the cable goes.
  const underWay = next(heard, 'event', (e: TerminalEvent) => e.type === 'status' && e.txn === req.txn);
  const paid = t.rejects(terminal.pay(req), { code: 'DEVICE_DOWN' }, 'the payment fails');
  await underWay;
  const down = next(terminal, 'down');
  await unplug(pair);
  await down;
  await paid;
  t.equal(terminal.health().state, 'down');
  sim.release(); // approved while the cable is out: the result cannot reach the register
  t.equal(sim.chargesFor(req.txn), 1);

  const up = Promise.all([next(terminal, 'up'), next(sim, 'up')]);
  await pair.replug();
  await up;
  t.match(await terminal.query(req.txn), { state: 'final', result: { outcome: 'approved' } });
  t.equal(sim.chargesFor(req.txn), 1, 'still exactly one charge');
  t.equal(sim.requestsFor(req.txn), 1, 'and the driver never resent the request');
});

t.test('ECR over a pty: the register restarts mid-payment; the new driver asks, one charge', async (t) => {
  const { sim, terminal, driver } = await rig(t);
  sim.hold();
  const req = request();
  const requested = next(sim, 'received', (m: { type: string }) => m.type === 'payment.request');
  const paid = t.rejects(terminal.pay(req), { code: 'DEVICE_DOWN' }, 'the payment fails');
  await requested;
  await terminal.stop(); // registerd gone: its end of the line is closed
  await paid;
  sim.release(); // the customer finishes; the result goes nowhere
  const restarted = await driver();
  t.match(await restarted.query(req.txn), { state: 'final', result: { outcome: 'approved' } });
  t.equal(sim.chargesFor(req.txn), 1);
  t.equal(sim.requestsFor(req.txn), 1);
});

t.test('ECR over a pty: garbage and a truncated line are reported; the next request works', async (t) => {
  const { sim, terminal, protocolErrors } = await rig(t);
  const reported = next(terminal, 'protocolError');
  await sim.sendRaw('\x7fnot json at all\n');
  t.match((await reported)[0], { reason: 'not-json' });

  sim.garbleNext('truncate', 'payment.result');
  const truncated = next(terminal, 'protocolError');
  const r = await terminal.pay(request());
  await truncated;
  t.match(r, { outcome: 'approved' }, 'the resend after the truncated line completed it');
  t.equal(protocolErrors.length, 2);
  t.match(await terminal.pay(request()), { outcome: 'approved' }, 'and the next one is clean');
  t.equal(protocolErrors.length, 2);
});

t.test('ECR over a pty: resent results are acked every time and delivered once', async (t) => {
  const { sim, terminal, events } = await rig(t);
  const req = request();
  sim.duplicateNextResult();
  const bothAcked = next<[string, string]>(
    sim,
    'acked',
    (txn) => sim.acks.filter((a) => a.txn === txn).length === 2,
  );
  t.match(await terminal.pay(req), { outcome: 'approved' });
  await bothAcked;

  sim.setOnline(false);
  const off = request();
  t.match(await terminal.pay(off), { saf: true });
  const safAcked = next<[string, string]>(sim, 'acked', (txn, of) => txn === off.txn && of === 'saf.result');
  sim.setOnline(true);
  await safAcked;
  // The terminal's ack got lost, say: it sends the same outcome again.
  const again = next<[string, string]>(sim, 'acked', (txn, of) => txn === off.txn && of === 'saf.result');
  await sim.sendRaw(encodeTerminalMessage({ v: 1, type: 'saf.result', txn: off.txn, outcome: 'approved' }));
  await again;
  t.equal(events.filter((e) => e.type === 'saf.result').length, 1, 'the register heard it once');
});

t.test('ECR over a pty: a later SAF decline reaches the register', async (t) => {
  const { sim, terminal, events } = await rig(t);
  sim.setOnline(false);
  const off = request({ amountMinor: 4200 });
  t.match(await terminal.pay(off), { outcome: 'approved', saf: true });
  sim.safDeclineNext();
  const acked = next<[string, string]>(sim, 'acked', (txn, of) => txn === off.txn && of === 'saf.result');
  sim.setOnline(true);
  await acked;
  t.match(
    events.filter((e) => e.type === 'saf.result'),
    [{ txn: off.txn, outcome: 'declined' }],
  );
});
