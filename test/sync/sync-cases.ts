// The sync suite's cases, end to end: real registers (registerd processes or in-process daemons) sell,
// their cloud bridges publish the journal over MQTT, the ledger books it. Each case breaks the path in
// one way and ends with the same proof (test/support/sync-fixtures.ts `assertBooks`): every record in
// the ledger's tables once, the register's X report equal to its books, on-hand ≥ 0 and what the test
// expects, and the register's queue empty. Run against each backend by the *.test.ts files beside this.
import type { Test } from 'tap';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { topics } from '../../cloud-bridge/protocol/wire.js';
import { Rng } from '../support/rng.js';
import {
  Harness,
  MOSQUITTO_URL,
  MQTT,
  RUN,
  SKUS,
  appliedLines,
  assertBooks,
  booksOf,
  clearRetained,
  cursorOf,
  sellMany,
  waitFor,
  type BackendKind,
  type LogLine,
  type MqttProxy,
} from '../support/sync-fixtures.js';

export type CaseName =
  | 'ledger-down'
  | 'broker-restart'
  | 'ledger-killed'
  | 'whole-queue-resent'
  | 'new-epoch'
  | 'oversell'
  | 'two-registers';

/** Every SKU the random sales use, with room to spare: no oversell unless a case wants one. */
async function stockUp(h: Harness, qty = 1000): Promise<void> {
  for (const sku of SKUS) await h.receive(sku, qty);
}

function total(lines: LogLine[], field: 'applied' | 'duplicates'): number {
  return lines.reduce((n, l) => n + (typeof l[field] === 'number' ? (l[field] as number) : 0), 0);
}

export function syncSuite(t: Test, kind: BackendKind, only?: CaseName[]): void {
  const run = (name: CaseName, title: string, fn: (t: Test, h: Harness) => Promise<void>) => {
    if (only && !only.includes(name)) return;
    t.test(title, async (t) => fn(t, await Harness.create(t, kind)));
  };

  run('ledger-down', 'sales made while the ledger is down are booked once when it comes up', async (t, h) => {
    const rng = new Rng(101);
    // A real registerd; the ledger is not running and the broker cannot be reached.
    const till = await h.till('till-1', { process: true, offline: true });
    await till.openShift();
    const sales = await sellMany(till, rng, 12);
    await till.refund(sales[3]!);
    const offline = await till.status();
    t.match(
      offline.sync,
      { state: /offline|connecting/, ackedThrough: 0, pending: offline.lastSeq },
      'everything waits on the register while the ledger is away',
    );

    await h.startLedger();
    await stockUp(h);
    till.proxy.setOnline(true);
    const snap = await h.settle(till);
    h.stock.fromBook(till.book);
    await assertBooks(t, await h.books(), { tills: [snap], stock: h.stock });

    // The ledger's own view of the register: acked through its last seq, and the status it reported.
    const device = await waitFor('the register to report an empty queue', async () => {
      const r = await h.api('GET', `/api/devices?storeId=${h.storeId}`);
      const d = (r.body.devices as { deviceId: string; pending: number | null }[]).find(
        (x) => x.deviceId === till.deviceId,
      );
      return d?.pending === 0 ? d : undefined;
    });
    t.match(device, { lastAckedSeq: snap.lastSeq, deviceAckedSeq: snap.lastSeq, online: true, pending: 0 });
  });

  run('broker-restart', 'the ledger and its broker restarted mid-drain: each record once', async (t, h) => {
    const rng = new Rng(202);
    await h.startLedger();
    await stockUp(h);
    // Two records a message, one message in flight: a drain of a few hundred round trips.
    const till = await h.till('till-1', { offline: true, batchMaxRecords: 2, maxInFlightBatches: 1 });
    await till.openShift();
    await sellMany(till, rng, 25);
    const { lastSeq } = await till.status();
    till.proxy.setOnline(true);
    const ldb = h.ledger!.ldb;
    await waitFor('the drain to start', async () => (await cursorOf(ldb, till.deviceId)) > 0, {
      intervalMs: 2,
    });
    // A: the embedded broker goes with the ledger (sessions, retained acks); B: the consumers leave
    // Mosquitto, which queues what the register sends meanwhile for their sessions.
    await h.stopLedger();
    const booked = await cursorOf(await h.books(), till.deviceId);
    t.ok(booked > 0 && booked < lastSeq, `stopped mid-drain: ${booked} of ${lastSeq} records booked`);
    await sellMany(till, rng, 3); // the register keeps selling
    await h.closeBooks();
    await h.startLedger();
    const snap = await h.settle(till);
    h.stock.fromBook(till.book);
    await assertBooks(t, await h.books(), { tills: [snap], stock: h.stock });
  });

  run(
    'ledger-killed',
    'the ledger killed (SIGKILL) after commits it had not acknowledged: each record once',
    async (t, h) => {
      const rng = new Rng(303);
      // B: the ledger reaches Mosquitto through a proxy that can swallow its PUBACKs.
      const ledgerLink: MqttProxy | undefined = h.mosquitto ? await h.ledgerLink() : undefined;
      let child = await h.startLedgerChild();
      await stockUp(h);
      const till = await h.till('till-1', { offline: true, batchMaxRecords: 2, maxInFlightBatches: 4 });
      await till.openShift();
      await sellMany(till, rng, 30);
      const { lastSeq } = await till.status();

      if (ledgerLink) {
        // The ledger commits and publishes its acks; the broker never gets a PUBACK, so it keeps every
        // message for the consumers' sessions and gives them again to whoever takes those sessions.
        ledgerLink.drop.up.add(MQTT.PUBACK);
      } else {
        // The embedded broker dies with the ledger; what matters is that the register hears no ack
        // of what was committed, so it has to send it again to the next ledger.
        till.proxy.drop.down.add(MQTT.PUBLISH);
      }
      till.proxy.setOnline(true);
      const lastAcked = async () => {
        const r = await h.api('GET', '/api/devices');
        const d = (r.body.devices as { deviceId: string; lastAckedSeq: number }[]).find(
          (x) => x.deviceId === till.deviceId,
        );
        return d?.lastAckedSeq ?? 0;
      };
      await waitFor('the ledger to book part of the queue', async () => (await lastAcked()) >= 6, {
        intervalMs: 5,
      });
      await child.kill9();
      const deviceAcked = (await till.status()).sync!.ackedThrough;
      const committed = await cursorOf(await h.books(), till.deviceId);
      await h.closeBooks();
      if (ledgerLink) {
        t.ok(ledgerLink.dropped.up > 0, `${ledgerLink.dropped.up} PUBACKs never reached the broker`);
      } else {
        t.ok(
          committed > deviceAcked,
          `killed with records ${deviceAcked + 1}..${committed} committed and not acknowledged`,
        );
      }
      t.ok(committed < lastSeq, `killed mid-drain (${committed} of ${lastSeq} booked)`);

      ledgerLink?.drop.up.clear();
      till.proxy.drop.down.clear();
      child = await h.startLedgerChild();
      const snap = await h.settle(till);
      const again = appliedLines(child.lines(), till.deviceId);
      const redelivered = again.filter((l) => l.dup === true);
      if (ledgerLink)
        t.ok(
          total(redelivered, 'duplicates') > 0,
          `Mosquitto gave the unacknowledged messages again (${redelivered.length} redelivered, ` +
            `${total(redelivered, 'duplicates')} records already booked)`,
        );
      else
        t.ok(
          total(again, 'duplicates') > 0,
          `the register resent what the dead ledger had booked (${total(again, 'duplicates')} duplicates)`,
        );
      await child.stop();
      h.stock.fromBook(till.book);
      await assertBooks(t, await h.books(), { tills: [snap], stock: h.stock });
    },
  );

  run(
    'whole-queue-resent',
    'a register that lost its last ack (sync.json deleted) resends its whole journal: the books do not change',
    async (t, h) => {
      const rng = new Rng(404);
      await h.startLedger();
      await stockUp(h);
      const till = await h.till('till-1', { process: true });
      await till.openShift();
      const sales = await sellMany(till, rng, 10);
      await till.refund(sales[0]!);
      const before = await h.settle(till);
      const booksBefore = await booksOf(await h.books(), [till.deviceId]);

      await till.kill9();
      for (const f of ['sync.json', 'sync.json.prev']) rmSync(path.join(till.stateDir, f), { force: true });
      if (h.mosquitto) {
        // Mosquitto keeps retained messages: take the ack away, or the register would learn it back.
        await clearRetained(MOSQUITTO_URL, [topics.ack(till.deviceId)]);
      } else {
        // A restarted embedded broker has no retained ack to give.
        await h.stopLedger();
        await h.startLedger();
      }
      const mark = h.logs.length;
      await till.start();
      const after = await h.settle(till);
      t.equal(after.lastSeq, before.lastSeq, 'nothing new on the register');
      const resent = appliedLines(h.logs.slice(mark), till.deviceId);
      t.ok(
        total(resent, 'duplicates') >= before.lastSeq,
        `the whole journal came again (${total(resent, 'duplicates')} duplicates of ${before.lastSeq} records)`,
      );
      t.equal(total(resent, 'applied'), 0, 'none of it booked again');
      t.same(await booksOf(await h.books(), [till.deviceId]), booksBefore, 'the books are as they were');
      h.stock.fromBook(till.book);
      await assertBooks(t, await h.books(), { tills: [after], stock: h.stock });
    },
  );

  run(
    'new-epoch',
    'a register whose journal was reset (new epoch, seq from 1) is booked too; the old epoch stays',
    async (t, h) => {
      const rng = new Rng(505);
      await h.startLedger();
      await stockUp(h);
      // Epochs pinned so both orders are covered: a new epoch above the old one, then one below both
      // (a journal draws its epoch at random: either happens in the field).
      const epochs = [2_000_000_000, 3_000_000_000, 1_000_000_000];
      const till = await h.till('till-1', { epoch: epochs[0]! });
      const snaps = [];
      for (let i = 0; i < epochs.length; i++) {
        if (i > 0) {
          await till.stop();
          rmSync(till.stateDir, { recursive: true, force: true }); // the card wiped; the seed stays
          till.setEpoch(epochs[i]!);
          till.book = { epoch: epochs[i]!, sales: [], refunds: [] };
          await till.start();
        }
        await till.openShift();
        await sellMany(till, rng, 6);
        const s = await till.status();
        t.equal(s.epoch, epochs[i], `a journal of epoch ${epochs[i]}, its seqs from 1 to ${s.lastSeq}`);
        // The books first (the ledger books the new epoch whatever its ack says), then its ack, then
        // the register's queue.
        const ldb = await h.books();
        await waitFor(`the ledger to book epoch ${epochs[i]}`, async () => {
          return (await cursorOf(ldb, till.deviceId, epochs[i])) === s.lastSeq;
        });
        const acked = await waitFor(
          `the ledger to ack epoch ${epochs[i]} through ${s.lastSeq}`,
          () => {
            const ack = h.lastAck(till.deviceId);
            return ack?.epoch === epochs[i] && ack?.ackedThrough === s.lastSeq;
          },
          { timeoutMs: 3000 },
        ).catch(() => false);
        t.match(
          h.lastAck(till.deviceId),
          { epoch: epochs[i], ackedThrough: s.lastSeq },
          `the ledger acks the journal of epoch ${epochs[i]}`,
        );
        // With no ack for its epoch the register cannot drain: take its figures as they stand.
        snaps.push(acked ? await h.settle(till) : await till.snapshot());
        h.stock.fromBook(till.book);
      }
      await assertBooks(t, await h.books(), { tills: snaps, stock: h.stock });
    },
  );

  run(
    'oversell',
    'an offline sale that happened before an online order took the last unit: one oversell, the order flagged',
    async (t, h) => {
      const rng = new Rng(606);
      const hot = 'TOTE-01';
      await h.startLedger();
      await stockUp(h);
      await h.receive(hot, 1);
      const till = await h.till('till-1');
      await till.openShift();
      await h.settle(till);

      till.proxy.setOnline(false); // the shop's line is down
      await sellMany(till, rng, 4);
      const sale = await till.sell([{ sku: hot, qty: 1 }], 'cash');
      await sellMany(till, rng, 3);
      // Later by occurrence time, earlier to land: the web shop sells the unit the ledger still sees.
      await waitFor('the clock to pass the sale', () => Date.now() > sale.time);
      const orderId = `web-${RUN}`;
      const order = await h.api('POST', '/api/online-orders', {
        orderId,
        storeId: h.storeId,
        lines: [{ sku: hot, qty: 1 }],
      });
      t.equal(order.status, 201, 'the online order takes the last unit');
      t.equal((await h.api('GET', `/api/stock/${hot}`)).body.onHand, 0);

      till.proxy.setOnline(true);
      const snap = await h.settle(till);
      const ex = await h.api('GET', `/api/exceptions?kind=oversell&deviceId=${till.deviceId}`);
      t.equal(ex.body.exceptions.length, 1, 'one oversell exception');
      t.match(ex.body.exceptions[0], {
        kind: 'oversell',
        ref: sale.saleId,
        resolvedAt: null,
        detail: {
          sku: hot,
          wantedQty: 1,
          onHandBefore: 0,
          shortQty: 1,
          // Earliest occurrence first: the register's sale keeps the unit, the order is flagged.
          sales: [
            { kind: 'sale', ref: sale.saleId, occurredAt: sale.time, flaggedQty: 0 },
            { kind: 'online_order', ref: orderId, flaggedQty: 1 },
          ],
          flagged: [{ kind: 'online_order', ref: orderId, qty: 1 }],
        },
      });
      t.equal(ex.body.exceptions[0].detail.sales.length, 2, 'naming both, and no one else');
      t.equal((await h.api('GET', `/api/online-orders/${orderId}`)).body.status, 'backorder');
      t.equal((await h.api('GET', `/api/stock/${hot}`)).body.onHand, 0, 'on-hand stays at zero');

      h.stock.fromBook(till.book);
      h.stock.add(hot, -1); // the order
      h.stock.add(hot, 1); // the unit that was never there: short, not negative
      await assertBooks(t, await h.books(), {
        tills: [snap],
        stock: h.stock,
        oversells: { [till.deviceId]: 1 },
      });
    },
  );

  if (kind === 'mosquitto-postgres')
    run(
      'two-registers',
      'two registers draining at once into two consumers: each record once',
      async (t, h) => {
        const rng = new Rng(707);
        await h.startLedger();
        await stockUp(h);
        const a = await h.till('till-a', { offline: true, batchMaxRecords: 3 });
        const b = await h.till('till-b', { offline: true, batchMaxRecords: 3, process: true });
        for (const till of [a, b]) {
          await till.openShift();
          // The same few SKUs on both: their stock rows are fought over by both consumers.
          await sellMany(till, rng, 20, SKUS.slice(0, 3));
        }
        const mark = h.logs.length;
        a.proxy.setOnline(true);
        b.proxy.setOnline(true);
        const snaps = await Promise.all([h.settle(a), h.settle(b)]);
        const applied = h.logs
          .slice(mark)
          .filter(
            (l) => l.msg === 'journal applied' && (l.deviceId === a.deviceId || l.deviceId === b.deviceId),
          );
        t.same(
          [...new Set(applied.map((l) => l.part))].sort(),
          ['consumer-0', 'consumer-1'],
          'both consumers took a share',
        );
        for (const till of [a, b]) h.stock.fromBook(till.book);
        await assertBooks(t, await h.books(), { tills: snaps, stock: h.stock });
      },
    );
}
