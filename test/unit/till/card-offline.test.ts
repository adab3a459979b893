// The POS's offline card limits and store-and-forward outcomes: a terminal that lost its link may approve
// offline only within the limits the register sends with each request; over a limit the cashier is told
// plainly why and to take another tender; a later SAF decline is journaled for the ledger.
import t from 'tap';
import { readyRegister, code } from '../../support/till-fixtures.js';
import { offlinePermission } from '../../../appliance/till/commands.js';

const COFFEE = code('COF-250'); // 6.49
const HOUR = 3_600_000;
const limits = {
  cardOffline: { maxTxnMinor: 1000, maxOutstandingMinor: 1500, maxOutstandingCount: 3, maxAgeMs: 24 * HOUR },
};

async function offlineRegister() {
  const r = await readyRegister({ limits });
  r.terminal.online = false;
  return r;
}

async function sellCoffee(r: Awaited<ReturnType<typeof readyRegister>>, n = 1) {
  for (let i = 0; i < n; i++) await r.call('sale.scan', { code: COFFEE });
  return r.call('sale.tender', { kind: 'card' });
}

const events = (r: Awaited<ReturnType<typeof readyRegister>>, type: string) =>
  [...r.journal.read(1)].flatMap((rec) => rec.events.filter((e) => e.type === type));

t.test('offline within the limits: approved offline, counted as held until forwarded', async (t) => {
  const r = await offlineRegister();
  t.match(await sellCoffee(r), { completed: true });
  const [requested] = events(r, 'card.requested');
  t.match(requested, { offlineAllowed: true, amountMinor: 649 });
  t.match(r.register.status().offlineCard, { count: 1, totalMinor: 649 });
  t.match(events(r, 'card.result')[0], { outcome: 'approved', mode: 'offline', saf: true });
});

t.test('over the per-transaction ceiling: refused with the reason, sale stays open', async (t) => {
  const r = await offlineRegister();
  const err = await sellCoffee(r, 2).catch((e: unknown) => e); // 12.98 > 10.00
  t.match(err, {
    code: 'CARD_OFFLINE_LIMIT',
    message: /offline and 12\.98 EUR is over the offline limit of 10\.00 EUR: take cash/,
  });
  t.match(events(r, 'card.requested')[0], { offlineAllowed: false });
  t.ok(r.register.state.sale, 'the sale is still open for another tender');
  t.equal(r.register.state.pendingCard, null);
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 1300 }), { completed: true });
  t.equal(r.terminal.charges.size, 1, 'the terminal recorded the refusal, not a charge');
  t.equal([...r.terminal.charges.values()].filter((c) => c.outcome.outcome === 'approved').length, 0);
});

t.test('over the outstanding total and count: refused; online again, no limit applies', async (t) => {
  const r = await offlineRegister();
  await sellCoffee(r); // 6.49 held
  await sellCoffee(r); // 12.98 held
  const err = await sellCoffee(r).catch((e: unknown) => e); // 19.47 > 15.00
  t.match(err, {
    code: 'CARD_OFFLINE_LIMIT',
    message: /waiting to be sent \(12\.98 EUR\) would go over 15\.00 EUR/,
  });
  await r.call('sale.cancel', {});
  r.terminal.online = true;
  t.match(await sellCoffee(r), { completed: true }, 'an online approval is not limited');
  t.match(r.register.status().offlineCard, { count: 2, totalMinor: 1298 });
});

t.test('a held approval older than the maximum age stops new offline approvals', async (t) => {
  const r = await offlineRegister();
  await sellCoffee(r);
  r.clock.advance(24 * HOUR + 1);
  const err = await sellCoffee(r).catch((e: unknown) => e);
  t.match(err, { code: 'CARD_OFFLINE_LIMIT', message: /waited more than 24 h/ });
});

t.test('SAF outcomes: an approval clears the hold; a decline is journaled once with the sale', async (t) => {
  const r = await offlineRegister();
  await sellCoffee(r);
  await sellCoffee(r);
  const [a, b] = events(r, 'card.result').map((e) => e.txn as string);
  await r.register.onTerminalEvent({ type: 'saf.result', txn: a!, outcome: 'approved', authCode: 'A1' });
  await r.register.onTerminalEvent({ type: 'saf.result', txn: a!, outcome: 'approved', authCode: 'A1' });
  t.equal(events(r, 'card.saf').length, 1, 'a resent approval writes nothing');
  await r.register.onTerminalEvent({
    type: 'saf.result',
    txn: b!,
    outcome: 'declined',
    message: 'insufficient funds',
  });
  const saf = events(r, 'card.saf');
  t.equal(saf.length, 2);
  t.match(saf[1], {
    txn: b,
    outcome: 'declined',
    amountMinor: 649,
    currency: 'EUR',
    receiptNo: 2,
    cashierId: 'ana',
  });
  t.match(r.register.status().offlineCard, { count: 0, totalMinor: 0, oldestAt: null });
  // The hold survives a restart and so does its release: state is the journal's fold.
  const reopened = r.open();
  t.same(reopened.state.offlineCard, {});
});

t.test('offlinePermission: each limit, at and just past its edge', async (t) => {
  const r = await readyRegister({ limits });
  const s = r.register.state;
  const ctx = { limits: { ...r.register['limits'] }, nowMs: 0 };
  t.same(offlinePermission(s, 1000, 'EUR', ctx), { allowed: true });
  t.equal(offlinePermission(s, 1001, 'EUR', ctx).allowed, false);
  s.offlineCard = {
    x: { amountMinor: 500, currency: 'EUR', saleId: 's1', approvedAt: 0 },
    y: { amountMinor: 500, currency: 'EUR', saleId: 's2', approvedAt: 0 },
  };
  t.same(offlinePermission(s, 500, 'EUR', ctx), { allowed: true });
  t.equal(offlinePermission(s, 501, 'EUR', ctx).allowed, false);
  s.offlineCard.z = { amountMinor: 1, currency: 'EUR', saleId: 's3', approvedAt: 0 };
  t.match(offlinePermission(s, 1, 'EUR', ctx), { allowed: false, why: /3 offline card payments/ });
  delete s.offlineCard.z;
  t.same(offlinePermission(s, 1, 'EUR', { ...ctx, nowMs: 24 * HOUR }), { allowed: true });
  t.equal(offlinePermission(s, 1, 'EUR', { ...ctx, nowMs: 24 * HOUR + 1 }).allowed, false);
});
