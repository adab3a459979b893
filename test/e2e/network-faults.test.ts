// A seeded network fault campaign against a store of real processes (test/support/field-store.ts):
// registerd rings up sales through its control socket while the test, step by seeded step, cuts and
// restores the store's link at the connection switch, makes the link slow (delayed and throttled) for
// a while, restarts the ledger (SIGTERM or SIGKILL) while a queue is draining and, on the second
// topology, crashes and restarts the broker on its own. At the end, with the link back, the register's
// queue drains to 0 and the ledger's books hold every sale the register acknowledged exactly once,
// with stock equal to what was received less what was sold. Every mid-drain ledger restart is made to
// land mid-drain (a long enough queue over a slow enough link, see MID_DRAIN_MIN_PENDING) and asserted
// to have: acks begun and records still pending while the ledger is down.
//
// Two topologies, a store and a ledger each:
//   embedded  the single-machine default: the ledger embeds aedes (a ledger restart is a broker
//             restart too) on one port across restarts, the books in SQLite;
//   external  the ledger on a mosquitto of the test's own (port chosen once, kept across restarts, in
//             memory: a restart loses every session and retained ack), so the broker and the ledger
//             restart separately.
//
// Replay a failure with the seed it prints: NET_FAULTS_SEED=1234 npx tap test/e2e/network-faults.test.ts
// (NET_FAULTS_STEPS sets the number of steps per topology, default 8).
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { silentLogger } from '../../appliance/log.js';
import { ConnectionSwitch, type LinkShape } from '../../scripts/demo/switch.js';
import {
  bundleAll,
  privateMosquitto,
  startLedgerProcess,
  startStore,
  type Bins,
  type LedgerProcess,
  type PrivateBroker,
  type RegisterStatus,
} from '../support/field-store.js';
import { processesMentioning } from '../support/processes.js';
import { Rng, seedFromEnv } from '../support/rng.js';
import { SKUS } from '../support/sync-fixtures.js';
import { PINS, code } from '../support/till-fixtures.js';
import { waitFor } from '../support/wait.js';

/** A bound on every wait for one thing to happen (a switch flip, a drain of a few dozen records). */
const WAIT_MS = 20_000;
/** A bound on the final drain: the ledger and the register may both be in a reconnect backoff (≤ 1 s). */
const DRAIN_MS = 30_000;
/** Units of every SKU received at the start: far more than a campaign sells, so no oversell. */
const OPENING_QTY = 1000;
/**
 * Records queued before a mid-drain ledger restart, at least: 6 batches of 4 with one in flight, so after
 * the first ack at least 5 round trips remain, each ≥ 2 × MID_DRAIN_MIN_LATENCY_MS through the slow link
 * (≥ 1.5 s): the restart lands with records pending by construction, not by the poll's luck.
 */
const MID_DRAIN_MIN_PENDING = 24;
/** ms each way on the link while a mid-drain restart is aimed, at least. */
const MID_DRAIN_MIN_LATENCY_MS = 150;
/** Sales rung up to fill the queue for a mid-drain restart, at most (a sale is 2–4 records). */
const MID_DRAIN_MAX_SALES = 20;

const SEED = seedFromEnv('NET_FAULTS_SEED');
const STEPS = Number(process.env.NET_FAULTS_STEPS || 8);
if (!Number.isInteger(STEPS) || STEPS < 1 || STEPS > 200)
  throw new Error(`NET_FAULTS_STEPS is 1 to 200, not ${process.env.NET_FAULTS_STEPS}`);

type Topology = 'embedded' | 'external';
type Action =
  'sell' | 'cut' | 'restore' | 'slow' | 'ledger-restart-mid-drain' | 'ledger-restart' | 'broker-restart';

/** Each fault at least once per topology, then random steps up to STEPS; in a seeded order. */
const MUST: Record<Topology, Action[]> = {
  embedded: ['cut', 'restore', 'slow', 'ledger-restart-mid-drain'],
  external: ['cut', 'slow', 'ledger-restart-mid-drain', 'broker-restart'],
};
const MAY: Record<Topology, Action[]> = {
  embedded: ['sell', 'cut', 'restore', 'slow', 'ledger-restart-mid-drain'],
  external: [
    'sell',
    'cut',
    'restore',
    'slow',
    'ledger-restart-mid-drain',
    'ledger-restart',
    'broker-restart',
  ],
};

function plan(rng: Rng, topology: Topology): Action[] {
  const steps = [...MUST[topology]];
  while (steps.length < STEPS) steps.push(rng.pick(MAY[topology]));
  for (let i = steps.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [steps[i], steps[j]] = [steps[j]!, steps[i]!];
  }
  return steps;
}

interface SaleDone {
  saleId: string;
  lines: { sku: string; qty: number }[];
}
interface TenderAnswer {
  completed?: boolean;
  receipt?: { saleId: string; lines: { sku: string; qty: number }[] };
}

const dir = mkdtempSync(path.join(tmpdir(), 'netfaults-'));
let bins: Bins;

t.comment(`NET_FAULTS_SEED=${SEED} NET_FAULTS_STEPS=${STEPS} (set them to replay this run)`);
t.before(async () => {
  bins = await bundleAll(dir);
});
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('the switch: a slow link delays and throttles each way, keeps order, and still cuts', async (t) => {
  // An echo server upstream: what goes through the switch comes back through it.
  const echo = net.createServer((s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const netFile = path.join(dir, 'switch-net');
  writeFileSync(netFile, 'up\n');
  const link = new ConnectionSwitch({
    upstream: { host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port },
    netFile,
    log: silentLogger,
    pollMs: 20,
  });
  const port = await link.start();
  t.teardown(async () => {
    await link.stop();
    echo.close();
  });
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  let got = Buffer.alloc(0);
  client.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
  const roundTrip = async (bytes: Buffer) => {
    const startMs = Date.now();
    const want = got.length + bytes.length;
    client.write(bytes);
    await waitFor('the echo', () => got.length >= want, { timeoutMs: WAIT_MS, intervalMs: 5 });
    return Date.now() - startMs;
  };
  const pattern = (n: number, from: number) =>
    Buffer.from(Array.from({ length: n }, (_, i) => (from + i) % 251));

  const fastMs = await roundTrip(pattern(100, 0));
  t.throws(() => link.slow({ latencyMs: -1 }), RangeError, 'a negative latency is refused');
  t.throws(
    () => link.slow({ latencyMs: 10, bytesPerSecond: 1 }),
    RangeError,
    'a rate under 100 B/s is refused',
  );
  link.slow({ latencyMs: 150 });
  const delayedMs = await roundTrip(pattern(100, 100));
  t.ok(delayedMs >= 2 * 150 - 5, `150 ms each way: the round trip took ${delayedMs} ms (fast: ${fastMs} ms)`);
  link.slow({ latencyMs: 0, bytesPerSecond: 40_000 });
  const throttledMs = await roundTrip(pattern(20_000, 200));
  // 20,000 bytes at 40,000 B/s is 500 ms one way; both ways overlap, slice by slice.
  t.ok(throttledMs >= 450, `20,000 bytes at 40,000 B/s took ${throttledMs} ms`);
  // Held bytes go first when the link turns fast again mid-stream.
  link.slow({ latencyMs: 200 });
  client.write(pattern(1000, 20_200));
  link.slow(null);
  await roundTrip(pattern(1000, 21_200));
  t.ok(got.equals(pattern(got.length, 0)), `every byte came back once and in order (${got.length})`);
  t.equal(link.shape, null, 'fast again');

  // Slow and then down: the connection is cut, and the held bytes with it.
  link.slow({ latencyMs: 500 });
  const closed = once(client, 'close');
  client.write(pattern(10, 0));
  writeFileSync(netFile, 'down\n');
  await waitFor('the switch down', () => !link.up, { timeoutMs: WAIT_MS });
  await closed;
  t.equal(link.connections, 0, 'no connection left through a switch that is down');
});

t.test('embedded broker: cuts, a slow link and ledger restarts mid-drain; every sale booked once', (t) =>
  campaign(t, 'embedded', SEED),
);
t.test('external broker: cuts, a slow link, ledger and broker restarts apart; every sale booked once', (t) =>
  campaign(t, 'external', (SEED + 1) % 2 ** 31),
);

t.test('every process started has ended', async (t) => {
  await waitFor('no process left under the test directory', () => processesMentioning(dir).length === 0, {
    timeoutMs: WAIT_MS,
  }).catch(() => undefined);
  t.same(processesMentioning(dir), [], 'no registerd, simulator, socat, ledger or mosquitto left');
});

async function campaign(t: Test, topology: Topology, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const steps = plan(rng, topology);
  t.comment(`${topology}: seed ${seed}, steps ${steps.join(' ')}`);
  const home = path.join(dir, topology);
  mkdirSync(home);

  let broker: PrivateBroker | null = null;
  if (topology === 'external') {
    broker = await privateMosquitto(home);
    const b = broker;
    t.teardown(() => b.stop('SIGKILL'));
  }
  let ledger: LedgerProcess = await startLedgerProcess(bins, home, {
    mqtt: broker ? broker.url : 'embedded:0',
  });
  t.teardown(() => ledger.child.stop());
  // Every later start takes the same broker port: the switch leads there.
  const mqtt = broker ? broker.url : `embedded:${new URL(ledger.mqtt).port}`;
  let ledgerStarts = 1;
  /** Stops the ledger, runs `whileDown`, starts it again; returns what `whileDown` returned. */
  const restartLedger = async <T>(signal: 'SIGTERM' | 'SIGKILL', whileDown: () => Promise<T>) => {
    if (signal === 'SIGKILL') {
      ledger.child.proc.kill('SIGKILL');
      await ledger.child.exited;
    } else await ledger.child.stop();
    const found = await whileDown();
    ledger = await startLedgerProcess(bins, home, { mqtt });
    ledgerStarts++;
    return found;
  };

  for (const sku of SKUS) {
    const r = await ledger.api('POST', `/api/stock/${sku}/receive`, { qty: OPENING_QTY, ref: 'net-faults' });
    if (r.status !== 200) throw new Error(`stock for ${sku} not received: ${JSON.stringify(r)}`);
  }

  const storeDir = path.join(home, 'store');
  mkdirSync(storeDir);
  const store = await startStore(bins, ledger, storeDir, `nf-${topology}-${process.pid}`, WAIT_MS, {
    ...(broker ? { brokerUrl: broker.url } : {}),
    // Small batches, one in flight, a resend after 1 s without an ack: a drain takes several round
    // trips (a ledger restart can land in the middle of one) and a lost batch costs a second, not ten.
    cloud: { batchMaxRecords: 4, maxInFlightBatches: 1, ackTimeoutMs: 1000 },
  });
  t.teardown(() => store.stop());
  const status = () => store.status();
  await waitFor('the register connected', async () => (await status()).sync?.state === 'connected', {
    timeoutMs: WAIT_MS,
  });
  await store.call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
  await store.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });

  let up = true;
  let shape = null as LinkShape | null;
  const sold: SaleDone[] = [];
  const tally = {
    cuts: 0,
    slowPeriods: 0,
    ledgerRestarts: 0,
    /** Mid-drain restarts aimed (the plan's `ledger-restart-mid-drain` steps). */
    midDrainAimed: 0,
    /** Of those, the ledger went down with acks begun and records still pending on the register. */
    midDrain: 0,
    brokerRestarts: 0,
    cards: 0,
  };

  const net = async (to: 'up' | 'down') => {
    if (up === (to === 'up')) return;
    await store.net(to);
    up = to === 'up';
    if (!up) tally.cuts++;
  };
  const slow = (next: LinkShape | null) => {
    store.link.slow(next);
    shape = next;
    if (next) tally.slowPeriods++;
  };
  const randomShape = (): LinkShape => ({
    latencyMs: rng.int(50, 250),
    bytesPerSecond: rng.int(8, 32) * 1024,
  });

  /** One sale through the control socket: 1–3 scans, then card (only while the link is up) or cash. */
  const sell = async () => {
    // Every draw first, so the same seed makes the same sales whatever the processes answer.
    const skus = Array.from({ length: rng.int(1, 3) }, () => rng.pick(SKUS));
    const card = up && rng.chance(0.25);
    const cash = rng.chance(0.5) ? { kind: 'cash' } : { kind: 'cash', amountMinor: 10_000 };
    for (const sku of skus) await store.call('sale.scan', { code: code(sku) });
    let answer: TenderAnswer | undefined;
    if (card) {
      // A decline or a terminal timeout leaves the sale open: it is paid in cash below.
      answer = (await store.call('sale.tender', { kind: 'card' }).catch(() => undefined)) as TenderAnswer;
      if (answer?.completed) tally.cards++;
    }
    if (!answer?.completed) answer = (await store.call('sale.tender', cash)) as TenderAnswer;
    if (!answer.completed || !answer.receipt)
      throw new Error(`sale not completed: ${JSON.stringify(answer)}`);
    sold.push({ saleId: answer.receipt.saleId, lines: answer.receipt.lines });
  };
  const sellSome = async (n: number) => {
    for (let i = 0; i < n; i++) await sell();
  };

  for (const [i, action] of steps.entries()) {
    const before = await status();
    const stepStartMs = Date.now();
    let note = '';
    switch (action) {
      case 'sell':
        await sellSome(rng.int(1, 3));
        break;
      case 'cut':
        await net('down');
        await sellSome(rng.int(1, 3));
        break;
      case 'restore':
        await net('up');
        await sellSome(rng.int(0, 2));
        break;
      case 'slow': {
        if (shape) {
          slow(null);
          note = 'fast again';
          break;
        }
        slow(randomShape());
        await sellSome(rng.int(1, 3));
        if (up) {
          // The queue moves over the slow link, not only once it is fast again: two batches at least
          // (or all of it), the ack round trips and any resends on the slow link included.
          const startedMs = Date.now();
          const s0 = await status();
          const target = Math.min(s0.lastSeq, s0.sync!.ackedThrough + 8);
          await waitFor(
            `acks through seq ${target} over the slow link`,
            async () => (await status()).sync!.ackedThrough >= target,
            { timeoutMs: WAIT_MS },
          );
          note = `acked ${s0.sync!.ackedThrough}→${target} over the slow link in ${Date.now() - startedMs} ms`;
        }
        break;
      }
      case 'ledger-restart-mid-drain': {
        tally.midDrainAimed++;
        await net('down');
        // A queue long enough that the drain cannot end between the first ack and the kill (see
        // MID_DRAIN_MIN_PENDING); how many sales that takes depends on their draws only.
        await sellSome(rng.int(3, 5));
        for (let n = 0; (await status()).sync!.pending < MID_DRAIN_MIN_PENDING; n++) {
          if (n >= MID_DRAIN_MAX_SALES) throw new Error(`${MID_DRAIN_MAX_SALES} sales did not queue enough`);
          await sell();
        }
        const queued = await status();
        const drawn = randomShape();
        if (!shape || shape.latencyMs < MID_DRAIN_MIN_LATENCY_MS)
          slow({ ...drawn, latencyMs: Math.max(MID_DRAIN_MIN_LATENCY_MS, drawn.latencyMs) });
        await net('up');
        // The first ack after the link is back: the drain has begun. Restart before it ends.
        const mid = await waitFor(
          'the drain under way',
          async () => {
            const s = await status();
            return (
              s.sync !== null &&
              (s.sync.ackedThrough > queued.sync!.ackedThrough || s.sync.pending === 0) &&
              s
            );
          },
          { timeoutMs: WAIT_MS, intervalMs: 5 },
        );
        const signal = rng.pick(['SIGTERM', 'SIGKILL'] as const);
        // Read with the ledger down: what it left pending is what the kill interrupted.
        const down = await restartLedger(signal, status);
        tally.ledgerRestarts++;
        const begun = down.sync!.ackedThrough > queued.sync!.ackedThrough;
        if (begun && down.sync!.pending > 0) tally.midDrain++;
        note =
          `ledger ${signal} after acks ${queued.sync!.ackedThrough}→${down.sync!.ackedThrough}, ` +
          `${down.sync!.pending} of ${queued.sync!.pending} queued records pending (${mid.sync!.pending} at the first ack)`;
        break;
      }
      case 'ledger-restart': {
        const signal = rng.pick(['SIGTERM', 'SIGKILL'] as const);
        await restartLedger(signal, () => Promise.resolve());
        tally.ledgerRestarts++;
        await sellSome(rng.int(0, 2));
        note = `ledger ${signal}`;
        break;
      }
      case 'broker-restart': {
        const signal = rng.pick(['SIGTERM', 'SIGKILL'] as const);
        await broker!.stop(signal);
        await sellSome(rng.int(0, 2));
        await broker!.start();
        tally.brokerRestarts++;
        note = `mosquitto ${signal}`;
        break;
      }
    }
    const after = await status();
    t.comment(
      `${topology} step ${i + 1} ${action}${note ? ` (${note})` : ''}: link ${up ? 'up' : 'down'}` +
        `${shape ? ` slow ${shape.latencyMs} ms ${shape.bytesPerSecond} B/s` : ''}, seq ${before.lastSeq}→` +
        `${after.lastSeq}, pending ${after.sync?.pending}, sales ${sold.length}, ${Date.now() - stepStartMs} ms`,
    );
  }

  // The link back, fast, the broker and the ledger up: everything drains.
  await net('up');
  if (shape) slow(null);
  if (broker && !broker.running()) await broker.start();
  const drainStartMs = Date.now();
  const final = await drained(status, DRAIN_MS);
  t.comment(`${topology}: the final drain took ${Date.now() - drainStartMs} ms`);
  t.comment(
    `${topology}: ${JSON.stringify({ ...tally, sales: sold.length, lastSeq: final.lastSeq, ledgerStarts })}`,
  );
  t.ok(sold.length > 0, `the register acknowledged ${sold.length} sales`);
  // The plan has a mid-drain restart in every campaign (MUST); each must have hit a drain under way.
  t.ok(tally.midDrainAimed > 0, `the plan restarted the ledger mid-drain (${tally.midDrainAimed})`);
  t.equal(
    tally.midDrain,
    tally.midDrainAimed,
    'every mid-drain restart took the ledger down after the first ack with records still pending',
  );
  t.equal(final.sync!.pending, 0, "the register's queue drained to 0");
  t.equal(final.sync!.ackedThrough, final.lastSeq, 'acked through its last seq');
  const x = (await store.call('shift.report')) as { totals: { sales: number } };
  t.equal(x.totals.sales, sold.length, "the register's X report counts the sales it acknowledged");

  // The ledger's books: every acknowledged sale once, nothing else.
  const booked = await salesOf(ledger, store.deviceId);
  const bookedIds = booked.map((s) => s.saleId);
  t.equal(new Set(bookedIds).size, bookedIds.length, 'no sale is booked twice');
  t.same(
    [...bookedIds].sort(),
    sold.map((s) => s.saleId).sort(),
    'the books hold exactly the sales the register acknowledged',
  );
  const device = (
    await ledger.api<{ devices: { deviceId: string; lastAckedSeq: number }[] }>('GET', '/api/devices')
  ).body.devices.find((d) => d.deviceId === store.deviceId);
  t.equal(device?.lastAckedSeq, final.lastSeq, "the ledger's last acked seq is the register's last seq");

  // Stock: received less sold, per SKU; never below zero; no oversell, chain break, quarantine or gap.
  const soldQty = new Map<string, number>();
  for (const s of sold) for (const l of s.lines) soldQty.set(l.sku, (soldQty.get(l.sku) ?? 0) + l.qty);
  const onHand: Record<string, number> = {};
  const want: Record<string, number> = {};
  for (const sku of SKUS) {
    onHand[sku] = (await ledger.api<{ onHand: number }>('GET', `/api/stock/${sku}`)).body.onHand;
    want[sku] = OPENING_QTY - (soldQty.get(sku) ?? 0);
  }
  t.same(onHand, want, 'on-hand = received − sold, for every SKU');
  const exceptions = (
    await ledger.api<{ exceptions: { kind: string; resolvedAt?: unknown }[] }>(
      'GET',
      `/api/exceptions?deviceId=${store.deviceId}&open=true`,
    )
  ).body.exceptions;
  t.same(exceptions, [], 'no open exception for the register (oversell, chain break, quarantine, gap)');
}

/** The register connected with nothing pending: its whole journal acknowledged by the ledger. */
function drained(status: () => Promise<RegisterStatus>, timeoutMs: number): Promise<RegisterStatus> {
  return waitFor(
    'the register connected with nothing pending',
    async () => {
      const s = await status();
      return s.sync?.state === 'connected' && s.sync.pending === 0 && s.sync.ackedThrough === s.lastSeq && s;
    },
    { timeoutMs },
  );
}

/** Every sale the ledger booked for a device, page by page. */
async function salesOf(ledger: LedgerProcess, deviceId: string): Promise<{ saleId: string }[]> {
  const out: { saleId: string }[] = [];
  let before: string | null = null;
  for (let page = 0; page < 100; page++) {
    const query: string = `/api/sales?deviceId=${deviceId}&limit=500${before ? `&before=${encodeURIComponent(before)}` : ''}`;
    const { body } = await ledger.api<{ sales: { saleId: string }[]; next: string | null }>('GET', query);
    out.push(...body.sales);
    if (!body.next) return out;
    before = body.next;
  }
  throw new Error('more than 100 pages of sales');
}
