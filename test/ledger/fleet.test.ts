// The fleet page's computations and the operator accounts, on SQLite and PostgreSQL: the deadline
// bands as a table, register cards at an injected clock (age, band, last Z, clock drift), sales per
// hour per store, the lag history's bounds, the receipt rebuilt from the books; passwords hashed and
// checked, operators added, replaced and refused.
import t from 'tap';
import { manualClock } from '../../appliance/clock.js';
import { applyJournalMessage } from '../../ledger/apply.js';
import { recordDeviceStatus } from '../../ledger/queries.js';
import { deadlineBand, FleetMonitor, FLEET_DEFAULTS } from '../../ledger/fleet/overview.js';
import { judgeStatus } from '../../ledger/fleet/status-timing.js';
import { addOperator, checkLogin } from '../../ledger/auth/operators.js';
import { hashPassword, verifyPassword } from '../../ledger/auth/passwords.js';
import { forEachDialect, journalOf, message, rechain } from '../support/ledger-fixtures.js';
import { readyRegister } from '../support/till-fixtures.js';
import { html } from '../../ledger/web/html.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const MINUTE = 60_000;

t.test('deadline bands', async (t) => {
  const table: [number | null, string][] = [
    [null, 'none'],
    [0, 'ok'],
    [12 * HOUR - 1, 'ok'],
    [12 * HOUR, 'amber'],
    [0.8 * DAY - 1, 'amber'],
    [0.8 * DAY, 'red'],
    [DAY - 1, 'red'],
    [DAY, 'missed'],
    [10 * DAY, 'missed'],
  ];
  for (const [age, band] of table) t.equal(deadlineBand(age, DAY), band, `${age} ms`);
  t.equal(deadlineBand(36 * HOUR, 72 * HOUR), 'amber', 'scales with the deadline');
});

t.test('html escapes what it is given', async (t) => {
  const name = '<img src=x onerror=alert(1)> & "q"';
  t.equal(
    html`<b title="${name}">${name}</b>`.text,
    '<b title="&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;">&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;</b>',
  );
  t.equal(
    html`${[html`<i>a</i>`, '<x>']}`.text,
    '<i>a</i>&lt;x&gt;',
    'markup from html passes, strings do not',
  );
});

t.test('passwords: salted scrypt, constant-time check, tampered hashes match nothing', async (t) => {
  const a = await hashPassword('correct horse battery', { cost: 1024 });
  const b = await hashPassword('correct horse battery', { cost: 1024 });
  t.not(a, b, 'salted');
  t.match(a, /^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  t.equal(await verifyPassword('correct horse battery', a), true);
  t.equal(await verifyPassword('correct horse batterY', a), false);
  t.equal(
    await verifyPassword('correct horse battery', a.replace('$1024$', '$1048576$')),
    false,
    'changed cost',
  );
  t.equal(
    await verifyPassword('x', a.replace('$1024$', `$${2 ** 24}$`)),
    false,
    'a cost past the bound is refused',
  );
  t.equal(await verifyPassword('x', 'plain'), false);
});

forEachDialect(t, 'operators', async (t, { ldb }) => {
  await addOperator(ldb, { name: 'ada', role: 'admin', password: 'first-password' }, 1000);
  await t.rejects(addOperator(ldb, { name: 'ada', role: 'viewer', password: 'second-password' }), {
    code: 'OPERATOR_EXISTS',
  });
  t.match(await checkLogin(ldb, 'ada', 'first-password'), { name: 'ada', role: 'admin', createdAt: 1000 });
  t.equal(await checkLogin(ldb, 'ada', 'second-password'), null);
  t.equal(await checkLogin(ldb, 'nobody', 'first-password'), null);
  t.equal(await checkLogin(ldb, 'Robert"); drop table operators;--', 'x'), null);
  await addOperator(ldb, { name: 'ada', role: 'viewer', password: 'second-password', replace: true }, 2000);
  t.match(await checkLogin(ldb, 'ada', 'second-password'), {
    role: 'viewer',
    createdAt: 1000,
    updatedAt: 2000,
  });
  await t.rejects(addOperator(ldb, { name: 'bo', role: 'root' as 'admin', password: 'long-enough-pw' }), {
    code: 'BAD_PARAMS',
  });
  await t.rejects(addOperator(ldb, { name: 'bo', role: 'admin', password: 'short' }), { code: 'BAD_PARAMS' });
  await t.rejects(addOperator(ldb, { name: 'Bo Smith', role: 'admin', password: 'long-enough-pw' }), {
    code: 'BAD_PARAMS',
  });
});

forEachDialect(t, 'register cards, sales per hour and receipts at an injected clock', async (t, { ldb }) => {
  const salesAt = Date.UTC(2026, 0, 1);
  const clock = manualClock(salesAt + 3 * HOUR);
  const fleet = new FleetMonitor({ ldb, clock });

  const r1 = await readyRegister({ seed: 1 });
  await r1.call('sale.add', { sku: 'WAT-150', qty: 2 });
  await r1.call('sale.tender', { kind: 'cash' });
  r1.clock.advance(2 * HOUR);
  await r1.call('sale.add', { sku: 'COF-250', qty: 1 });
  const { receipt } = (await r1.call('sale.tender', { kind: 'cash' })) as { receipt: { saleId: string } };
  const { expectedCashMinor: e } = (await r1.call('shift.report', {})) as { expectedCashMinor: number };
  await r1.call('shift.close', { counts: { '1': e % 100_000, '100000': Math.floor(e / 100_000) } });
  const r2 = await readyRegister({ seed: 2 });
  await r2.call('sale.add', { sku: 'WAT-150', qty: 1 });
  await r2.call('sale.tender', { kind: 'cash' });

  const status = (device: string, body: Record<string, unknown>, at: number) =>
    recordDeviceStatus(ldb, device, JSON.stringify({ v: 1, ...body }), at);
  await status(
    'till-1',
    { online: true, storeId: 'a-store', pending: 0, clockTrusted: true, ts: salesAt + 3 * HOUR },
    salesAt + 3 * HOUR,
  );
  // till-2's clock is 5 min ahead of the ledger's: drifting.
  await status(
    'till-2',
    {
      online: false,
      storeId: 'b-store',
      pending: 4,
      oldestPendingTs: salesAt,
      clockTrusted: true,
      ts: salesAt + 3 * HOUR + 5 * 60_000,
    },
    salesAt + 3 * HOUR,
  );
  await applyJournalMessage(ldb, 'till-1', message(journalOf(r1)), salesAt + 3 * HOUR);
  await applyJournalMessage(
    ldb,
    'till-2',
    message(rechain(journalOf(r2), 'till-2', 1), 'till-2'),
    salesAt + 3 * HOUR,
  );

  const cards = await fleet.devices();
  t.match(cards, [
    {
      deviceId: 'till-1',
      storeId: 'a-store',
      online: true,
      pending: 0,
      oldestPendingAgeMs: null,
      deadline: 'none',
      lastZ: { zNo: 1 },
      clock: 'trusted',
    },
    {
      deviceId: 'till-2',
      storeId: 'b-store',
      online: false,
      pending: 4,
      oldestPendingAgeMs: 3 * HOUR,
      deadline: 'ok',
      deadlineAt: salesAt + DAY,
      lastZ: null,
      clock: 'drifting',
      clockSkewMs: 5 * 60_000,
    },
  ]);
  // Sales per hour, per store: the books' sums in the right buckets (now is 01-01 03:00).
  const series = await fleet.salesSeries();
  t.same(
    series.map((s) => s.storeId),
    ['a-store', 'b-store'],
  );
  const a = series[0]!;
  t.equal(a.buckets.length, 24);
  const lastHour = Math.floor(clock.nowMs() / HOUR) * HOUR;
  t.equal(a.buckets[23]!.t, lastHour, 'the current hour last');
  const nonzero = a.buckets.filter((b) => b.count > 0);
  const sales = (
    await ldb.db.selectFrom('sales').selectAll().where('device_id', '=', 'till-1').execute()
  ).sort((x, y) => x.completed_at - y.completed_at);
  t.same(
    nonzero.map((b) => [b.t, b.totalMinor, b.count]),
    sales.map((s) => [Math.floor(s.completed_at / HOUR) * HOUR, s.total_minor, 1]),
  );

  const before = await fleet.bandSignature();
  clock.advance(9 * HOUR + 30 * 60_000);
  t.equal((await fleet.devices())[1]!.deadline, 'amber', '12 h 30 min of 24 h');
  t.not(await fleet.bandSignature(), before, 'the live feed sees time pass');
  clock.advance(7 * HOUR);
  t.equal((await fleet.devices())[1]!.deadline, 'red');
  clock.advance(5 * HOUR);
  t.equal((await fleet.devices())[1]!.deadline, 'missed');

  // The receipt from the books is the printer's document.
  const doc = await fleet.receiptDoc(receipt.saleId);
  t.same({ ...doc, offline: true }, { ...receipt, offline: true, storeName: 'a-store', storeId: 'a-store' });
  t.match(await fleet.receiptSvg(receipt.saleId), /^<svg /);
  t.equal(await fleet.receiptSvg('no-such-sale'), null);
});

t.test('status timing: when a status says the device was heard from, and what its clock is', async (t) => {
  const T = Date.UTC(2026, 0, 1);
  const before = (ts: number, receivedAt: number, clockSkewMs: number | null) => ({
    ts,
    receivedAt,
    clockSkewMs,
  });
  const table: [string, Parameters<typeof judgeStatus>, { heard: boolean; clockSkewMs: number | null }][] = [
    ['a will, first', [null, undefined, T], { heard: false, clockSkewMs: null }],
    ['a will keeps the skew', [before(T, T, 7), undefined, T + 5 * HOUR], { heard: false, clockSkewMs: 7 }],
    ['first, on time', [null, T, T], { heard: true, clockSkewMs: 0 }],
    ['first, clock ahead', [null, T + 5 * MINUTE, T], { heard: true, clockSkewMs: 5 * MINUTE }],
    [
      'first, ts within the tolerance behind',
      [null, T - 2 * MINUTE, T],
      { heard: true, clockSkewMs: -2 * MINUTE },
    ],
    ['first, ts hours behind: late or slow', [null, T, T + 8 * HOUR], { heard: false, clockSkewMs: null }],
    ['prompt', [before(T, T, 0), T + HOUR, T + HOUR + 1000], { heard: true, clockSkewMs: -1000 }],
    [
      'prompt, slow clock confirmed',
      [before(T - 3 * HOUR, T, null), T - 2 * HOUR, T + HOUR],
      { heard: true, clockSkewMs: -3 * HOUR },
    ],
    [
      'the same status again, hours later',
      [before(T, T, 0), T, T + 8 * HOUR],
      { heard: false, clockSkewMs: 0 },
    ],
    [
      'newer, delivered hours late',
      [before(T, T, 0), T + 2 * HOUR, T + 8 * HOUR],
      { heard: false, clockSkewMs: 0 },
    ],
    [
      'late by just the tolerance',
      [before(T, T, 0), T + HOUR, T + HOUR + 2 * MINUTE],
      { heard: true, clockSkewMs: -2 * MINUTE },
    ],
    [
      'late by more',
      [before(T, T, 0), T + HOUR, T + HOUR + 2 * MINUTE + 1],
      { heard: false, clockSkewMs: 0 },
    ],
    [
      'faster than a late one before',
      [before(T, T + 8 * HOUR, 0), T + 9 * HOUR, T + 9 * HOUR],
      { heard: true, clockSkewMs: 0 },
    ],
    [
      'clock set forward after being slow',
      [before(T - 3 * HOUR, T, -3 * HOUR), T + HOUR, T + HOUR],
      { heard: true, clockSkewMs: 0 },
    ],
    [
      'faster than before, still hours behind',
      [before(T, T + 8 * HOUR, 0), T + 6 * HOUR, T + 9 * HOUR],
      { heard: true, clockSkewMs: null },
    ],
  ];
  for (const [name, args, want] of table) t.same(judgeStatus(...args), want, name);
});

forEachDialect(
  t,
  'a last will and a late retained status: no clock drift, last seen kept',
  async (t, { ldb }) => {
    const T0 = Date.UTC(2026, 0, 1);
    const clock = manualClock(T0);
    const fleet = new FleetMonitor({ ldb, clock });
    const status = (device: string, body: Record<string, unknown>) =>
      recordDeviceStatus(
        ldb,
        device,
        JSON.stringify({ v: 1, storeId: 's', epoch: 1, ...body }),
        clock.nowMs(),
      );
    const card = async (device: string) => (await fleet.devices()).find((d) => d.deviceId === device)!;
    const online = {
      online: true,
      lastSeq: 5,
      lastAckedSeq: 5,
      pending: 0,
      oldestPendingTs: null,
      clockTrusted: true,
    };

    // The bridge's online status, then five quiet hours, then the broker publishes its will (no ts).
    await status('till-1', { ...online, version: '0.1.0', ts: T0 });
    t.match(await card('till-1'), { online: true, lastSeen: T0, clock: 'trusted', clockSkewMs: 0 });
    clock.advance(5 * HOUR);
    await status('till-1', { online: false, version: '0.1.0' });
    t.match(
      await card('till-1'),
      { online: false, lastSeen: T0, clock: 'trusted', clockSkewMs: 0 },
      'offline, last heard from at T0, clock as it was',
    );
    // It comes back: heard from again, clock still right.
    clock.advance(HOUR);
    await status('till-1', { ...online, ts: T0 + 6 * HOUR });
    t.match(await card('till-1'), {
      online: true,
      lastSeen: T0 + 6 * HOUR,
      clock: 'trusted',
      clockSkewMs: 0,
    });

    // The ledger restarts hours later: the broker hands over the retained status it already has.
    clock.advance(8 * HOUR);
    await status('till-1', { ...online, ts: T0 + 6 * HOUR });
    t.match(
      await card('till-1'),
      { lastSeen: T0 + 6 * HOUR, clock: 'trusted', clockSkewMs: 0 },
      'the same status again',
    );
    // A status the register published while the ledger was down, handed over late: its figures are
    // taken, but it neither dates the register nor measures its clock.
    await status('till-1', { ...online, pending: 3, oldestPendingTs: T0 + 9 * HOUR, ts: T0 + 10 * HOUR });
    t.match(
      await card('till-1'),
      { pending: 3, lastSeen: T0 + 6 * HOUR, clock: 'trusted', clockSkewMs: 0 },
      'a newer status delivered four hours late',
    );
    // The next one arrives as it is sent.
    clock.advance(MINUTE);
    await status('till-1', { ...online, pending: 0, ts: clock.nowMs() });
    t.match(await card('till-1'), { pending: 0, lastSeen: clock.nowMs(), clock: 'trusted', clockSkewMs: 0 });

    // A register first heard of through a retained status hours old: a late delivery or a slow clock?
    await status('till-2', { ...online, ts: T0 });
    t.match(
      await card('till-2'),
      { clock: 'trusted', clockSkewMs: null },
      'not called drifting on one status',
    );
    // A slow clock shows itself when the statuses keep arriving with the same offset.
    clock.advance(MINUTE);
    await status('till-2', { ...online, pending: 1, oldestPendingTs: T0, ts: T0 + MINUTE });
    t.match(await card('till-2'), { clock: 'drifting', clockSkewMs: T0 - (clock.nowMs() - MINUTE) });
  },
);

t.test('lag history: samples per minute, per store, bounded to the window', async (t) => {
  const clock = manualClock(Date.UTC(2026, 0, 1));
  const fleet = new FleetMonitor({ ldb: undefined as never, clock });
  const t0 = clock.nowMs();
  fleet.recordLag('till-1', 's', 2, t0);
  fleet.recordLag('till-1', 's', 5, t0 + 10_000); // the same minute: replaces
  fleet.recordLag('till-2', 's', 1, t0 + 60_000);
  fleet.recordLag('till-1', 's', 0, t0 + 120_000);
  clock.advance(3 * 60_000);
  t.same(fleet.lagSeries(), [
    {
      storeId: 's',
      points: [
        { t: t0, pending: 5 },
        { t: t0 + 60_000, pending: 6 },
        { t: t0 + 120_000, pending: 1 },
      ],
    },
  ]);
  for (let i = 0; i < 3000; i++) {
    clock.advance(60_000);
    fleet.recordLag('till-1', 's', i % 7, clock.nowMs());
  }
  const points = fleet.lagSeries()[0]!.points;
  t.ok(points.length <= FLEET_DEFAULTS.chartWindowMs / 60_000 + 2, `${points.length} points: a day's worth`);
  t.ok(points[0]!.t >= clock.nowMs() - FLEET_DEFAULTS.chartWindowMs, 'none before the window');
});
