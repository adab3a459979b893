// The till's sale and shift state machines through the Register, table-driven for every refusal, plus
// the flows a shift goes through. Journal on the fault-injecting file system, clock and ids injected.
import t from 'tap';
import { Register } from '../../../appliance/till/register.js';
import { SimulatedCardTerminal } from '../../../appliance/till/card.js';
import {
  MANAGER,
  PINS,
  code,
  demoCashiers,
  demoCatalog,
  makeRegister,
  readyRegister,
} from '../../support/till-fixtures.js';

type R = Awaited<ReturnType<typeof readyRegister>>;
const ESPRESSO = code('COF-250'); // 6.49, 7 %
const WATER = code('WAT-150'); // 0.89, 7 %
const MUG = code('MUG-CER'); // 8.99, 19 %

interface Refusal {
  name: string;
  setup?: (r: R) => Promise<unknown>;
  loggedOut?: boolean;
  method: string;
  params?: unknown;
  code: string;
  /** Refusals that are evidence are journaled: PIN attempts, at a login or an approval. */
  journals?: number;
}

const refusals: Refusal[] = [
  {
    name: 'no cashier',
    loggedOut: true,
    method: 'sale.scan',
    params: { code: ESPRESSO },
    code: 'NOT_LOGGED_IN',
  },
  {
    name: 'wrong PIN',
    loggedOut: true,
    method: 'cashier.login',
    params: { cashierId: 'ana', pin: '0000' },
    code: 'WRONG_PIN',
    journals: 1,
  },
  {
    name: 'unknown cashier',
    loggedOut: true,
    method: 'cashier.login',
    params: { cashierId: 'zed', pin: '1111' },
    code: 'WRONG_PIN',
    journals: 1,
  },
  { name: 'shift twice', method: 'shift.open', params: { floatCounts: {} }, code: 'SHIFT_OPEN' },
  {
    name: 'unknown barcode',
    method: 'sale.scan',
    params: { code: '4006381333931' },
    code: 'UNKNOWN_BARCODE',
  },
  { name: 'bad check digit', method: 'sale.scan', params: { code: '4006381333932' }, code: 'BAD_BARCODE' },
  { name: 'unknown sku', method: 'sale.add', params: { sku: 'NOPE' }, code: 'UNKNOWN_SKU' },
  {
    name: 'open price without price',
    method: 'sale.add',
    params: { sku: 'GIFT-OPEN' },
    code: 'PRICE_REQUIRED',
  },
  {
    name: 'open price without manager',
    method: 'sale.add',
    params: { sku: 'GIFT-OPEN', priceMinor: 2000 },
    code: 'MANAGER_REQUIRED',
  },
  {
    name: 'price override without manager',
    method: 'sale.add',
    params: { sku: 'MUG-CER', priceMinor: 1 },
    code: 'MANAGER_REQUIRED',
  },
  {
    name: 'wrong manager PIN',
    method: 'sale.add',
    params: { sku: 'MUG-CER', priceMinor: 1, approval: { managerId: 'mia', pin: '1234' } },
    code: 'APPROVAL_REFUSED',
    journals: 1,
  },
  {
    name: 'a cashier cannot approve',
    method: 'sale.add',
    params: { sku: 'MUG-CER', priceMinor: 1, approval: { managerId: 'ben', pin: PINS.ben } },
    code: 'APPROVAL_REFUSED',
  },
  { name: 'void with no sale', method: 'sale.voidLine', params: { lineId: '1' }, code: 'NO_SALE' },
  {
    name: 'void unknown line',
    setup: (r) => r.call('sale.scan', { code: MUG }),
    method: 'sale.voidLine',
    params: { lineId: '9' },
    code: 'LINE_NOT_FOUND',
  },
  {
    name: 'qty over the bound',
    setup: (r) => r.call('sale.scan', { code: MUG }),
    method: 'sale.setQty',
    params: { lineId: '1', qty: 5000 },
    code: 'BAD_PARAMS',
  },
  {
    name: 'big discount without manager',
    setup: (r) => r.call('sale.scan', { code: MUG }),
    method: 'sale.discount',
    params: { kind: 'percent', value: 5000 },
    code: 'MANAGER_REQUIRED',
  },
  {
    name: 'discount over the amount',
    setup: (r) => r.call('sale.scan', { code: MUG }),
    method: 'sale.discount',
    params: { lineId: '1', kind: 'amount', value: 100000 },
    code: 'DISCOUNT_TOO_HIGH',
  },
  {
    name: 'tender with no sale',
    method: 'sale.tender',
    params: { kind: 'cash', amountMinor: 100 },
    code: 'NO_SALE',
  },
  {
    name: 'card over what is due',
    setup: (r) => r.call('sale.scan', { code: WATER }),
    method: 'sale.tender',
    params: { kind: 'card', amountMinor: 5000 },
    code: 'BAD_PARAMS',
  },
  {
    name: 'scan after payment started',
    setup: async (r) => {
      await r.call('sale.scan', { code: MUG });
      await r.call('sale.tender', { kind: 'cash', amountMinor: 100 });
    },
    method: 'sale.scan',
    params: { code: WATER },
    code: 'SALE_TENDERED',
  },
  {
    name: 'void after payment without manager',
    setup: async (r) => {
      await r.call('sale.scan', { code: MUG });
      await r.call('sale.scan', { code: WATER });
      await r.call('sale.tender', { kind: 'cash', amountMinor: 100 });
    },
    method: 'sale.voidLine',
    params: { lineId: '2' },
    code: 'MANAGER_REQUIRED',
  },
  {
    name: 'logout mid-sale',
    setup: (r) => r.call('sale.scan', { code: MUG }),
    method: 'cashier.logout',
    code: 'SALE_IN_PROGRESS',
  },
  {
    name: 'payout without manager',
    method: 'cash.payout',
    params: { amountMinor: 500, reason: 'window cleaner' },
    code: 'MANAGER_REQUIRED',
  },
  {
    name: 'payout beyond the drawer',
    method: 'cash.payout',
    params: { amountMinor: 900000, reason: 'x', approval: MANAGER },
    code: 'NOT_ENOUGH_CASH',
  },
  { name: 'no-sale without manager', method: 'drawer.open', code: 'MANAGER_REQUIRED' },
  {
    name: 'refund of nothing',
    method: 'sale.refund',
    params: { receiptNo: 99, tender: 'cash', approval: MANAGER },
    code: 'RECEIPT_NOT_FOUND',
  },
  {
    name: 'close with a big discrepancy',
    method: 'shift.close',
    params: { counts: { '1000': 4 } },
    code: 'MANAGER_REQUIRED',
  },
  {
    name: 'close mid-sale',
    setup: (r) => r.call('sale.scan', { code: MUG }),
    method: 'shift.close',
    params: { counts: {} },
    code: 'SALE_IN_PROGRESS',
  },
  { name: 'unknown method', method: 'sale.teleport', code: 'UNKNOWN_METHOD' },
  { name: 'wrong types', method: 'sale.scan', params: { code: 42 }, code: 'BAD_PARAMS' },
  { name: 'missing params', method: 'cash.paidIn', params: { reason: 'float top-up' }, code: 'BAD_PARAMS' },
  { name: 'reprint of nothing', method: 'receipt.reprint', code: 'RECEIPT_NOT_FOUND' },
];

t.test('every refusal has its code, and leaves no record behind', async (t) => {
  for (const c of refusals) {
    const r = c.loggedOut ? makeRegister() : await readyRegister();
    if (c.setup) await c.setup(r);
    const before = r.journal.lastSeq;
    await t.rejects(r.call(c.method, c.params ?? {}), { code: c.code }, c.name);
    const journaled = c.journals ?? 0;
    t.equal(r.journal.lastSeq, before + journaled, `${c.name}: ${journaled} record(s)`);
  }
});

t.test('an open-price item scanned: PRICE_REQUIRED names its SKU, for the till to ask a price', async (t) => {
  const r = await readyRegister();
  await t.rejects(r.call('sale.scan', { code: code('GIFT-OPEN') }), {
    code: 'PRICE_REQUIRED',
    details: { sku: 'GIFT-OPEN' },
  });
});

t.test('a cash sale: lines, totals, change, a gapless receipt number', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: ESPRESSO });
  await r.call('sale.scan', { code: WATER });
  await r.call('sale.setQty', { lineId: '2', qty: 2 });
  const done = (await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 })) as Record<string, unknown>;
  t.match(done, {
    completed: true,
    receiptNo: 1,
    totalMinor: 649 + 2 * 89,
    changeMinor: 1000 - 827,
    roundingMinor: 0,
  });
  t.match(done.receipt, {
    kind: 'sale',
    receiptNo: 1,
    cashier: 'Ana',
    totalMinor: 827,
    tenders: [{ kind: 'cash', amountMinor: 1000 }],
  });
  const second = (await (async () => {
    await r.call('sale.scan', { code: MUG });
    return r.call('sale.tender', { kind: 'card' });
  })()) as Record<string, unknown>;
  t.match(second, { completed: true, receiptNo: 2 });
  t.match((second.receipt as { tenders: unknown[] }).tenders, [
    { kind: 'card', brand: 'VISA', maskedPan: '************4242' },
  ]);
  t.equal(r.register.state.shift!.totals.sales, 2);
});

t.test('split tender: card part, then cash for the rest', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: MUG });
  t.match(await r.call('sale.tender', { kind: 'card', amountMinor: 500 }), {
    completed: false,
    sale: { dueMinor: 399 },
  });
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 500 }), {
    completed: true,
    changeMinor: 101,
  });
  const shift = r.register.state.shift!.totals;
  t.same(shift.byTender, { card: 500, cash: 500 });
  t.equal(shift.changeMinor, 101);
});

t.test('a declined card is journaled, explained, and leaves the sale open for another tender', async (t) => {
  const r = await readyRegister();
  r.terminal.declineAboveMinor = 100;
  await r.call('sale.scan', { code: MUG });
  await t.rejects(r.call('sale.tender', { kind: 'card' }), { code: 'CARD_DECLINED' });
  t.equal(r.register.state.pendingCard, null);
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 899 }), { completed: true });
});

t.test('manager approvals: price override, big discount, void after tender, no-sale, payout', async (t) => {
  const r = await readyRegister();
  await r.call('sale.add', { sku: 'GIFT-OPEN', priceMinor: 2500, approval: MANAGER });
  await r.call('sale.scan', { code: MUG });
  await r.call('sale.discount', { lineId: '2', kind: 'percent', value: 5000, approval: MANAGER });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 100 });
  await r.call('sale.voidLine', { lineId: '2', approval: MANAGER });
  t.match(await r.call('sale.tender', { kind: 'cash', amountMinor: 2400 }), {
    completed: true,
    totalMinor: 2500,
  });
  await r.call('drawer.open', { approval: MANAGER });
  await r.call('cash.payout', { amountMinor: 500, reason: 'window cleaner', approval: MANAGER });
  await r.call('cash.paidIn', { amountMinor: 2000, reason: 'change from the bank' });
  const x = (await r.call('shift.report')) as { expectedCashMinor: number; totals: Record<string, unknown> };
  t.equal(x.expectedCashMinor, 7000 + 2500 - 500 + 2000);
  t.match(x.totals, {
    noSales: 1,
    payouts: { count: 1, amountMinor: 500 },
    paidIns: { count: 1 },
    voids: { lines: 1 },
  });
  const approvals = [...r.journal.read()].flatMap((rec) => rec.events).filter((e) => e.approvedBy === 'mia');
  t.equal(approvals.length, 5, 'each approval names the manager in the journal');
});

t.test('refunds: partial twice add up to what was paid, never more', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: WATER });
  await r.call('sale.setQty', { lineId: '1', qty: 3 });
  await r.call('sale.discount', { kind: 'amount', value: 10 });
  const sale = (await r.call('sale.tender', { kind: 'cash', amountMinor: 257 })) as {
    receiptNo: number;
    totalMinor: number;
  };
  t.equal(sale.totalMinor, 257);
  const a = (await r.call('sale.refund', {
    receiptNo: sale.receiptNo,
    lines: [{ lineId: '1', qty: 1 }],
    tender: 'cash',
    approval: MANAGER,
  })) as { amountMinor: number; receiptNo: number };
  const b = (await r.call('sale.refund', {
    receiptNo: sale.receiptNo,
    tender: 'card',
    approval: MANAGER,
  })) as { amountMinor: number };
  t.equal(a.receiptNo, 2, 'refunds share the gapless receipt series');
  t.equal(a.amountMinor + b.amountMinor, 257);
  await t.rejects(r.call('sale.refund', { receiptNo: sale.receiptNo, tender: 'cash', approval: MANAGER }), {
    code: 'NOTHING_TO_REFUND',
  });
  t.equal(r.register.state.shift!.totals.refunds.amountMinor, 257);
});

t.test(
  'five wrong PINs lock a cashier out for the configured time; every attempt is journaled',
  async (t) => {
    const r = makeRegister();
    for (let i = 1; i <= 4; i++)
      await t.rejects(r.call('cashier.login', { cashierId: 'ben', pin: '0000' }), { code: 'WRONG_PIN' });
    await t.rejects(r.call('cashier.login', { cashierId: 'ben', pin: '0000' }), { code: 'LOCKED_OUT' });
    await t.rejects(
      r.call('cashier.login', { cashierId: 'ben', pin: PINS.ben }),
      { code: 'LOCKED_OUT' },
      'even the right PIN',
    );
    t.equal(r.journal.lastSeq, 6);
    r.clock.advance(5 * 60_000);
    t.match(await r.call('cashier.login', { cashierId: 'ben', pin: PINS.ben }), {
      cashier: { cashierId: 'ben' },
    });
  },
);

t.test('shift close: expected vs counted, manager for a big discrepancy, gapless Z numbers', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: ESPRESSO });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 649 });
  const z1 = (await r.call('shift.close', { counts: { '1000': 7, '49': 1 }, approval: MANAGER })) as Record<
    string,
    number
  >;
  t.match(z1, {
    zNo: 1,
    expectedCashMinor: 7649,
    countedCashMinor: 7049,
    discrepancyMinor: -600,
    approvedBy: 'mia',
  });
  await r.call('shift.open', { floatCounts: { '1000': 5 } });
  const z2 = (await r.call('shift.close', { counts: { '1000': 5, '1': 3 } })) as Record<string, number>;
  t.match(z2, { zNo: 2, discrepancyMinor: 3 }, 'a small discrepancy needs no manager');
});

t.test('the basket survives a restart, and so do the day’s totals', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: MUG });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 899 });
  await r.call('sale.scan', { code: ESPRESSO });
  await r.call('sale.scan', { code: WATER });
  const before = r.register.state;
  const x = await r.call('shift.report');
  r.journal.close();
  r.io.crash(); // a power cut: everything acknowledged is on flash
  const journal = r.open();
  const again = new Register({
    journal,
    catalog: () => demoCatalog,
    cashiers: () => demoCashiers,
    devices: { terminal: r.terminal },
    clock: r.clock,
  });
  t.same(
    again.state.sale!.lines.map((l) => l.sku),
    ['COF-250', 'WAT-150'],
  );
  t.same(await again.execute('shift.report', {}), x);
  t.same(again.state.receiptNo, before.receiptNo);
});

t.test('a crash between card request and result: the terminal is asked, never charged twice', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: MUG });
  // The terminal charges, but the register dies before it writes the result.
  const terminal = new SimulatedCardTerminal();
  const pay = terminal.pay.bind(terminal);
  let charged: Promise<unknown> | undefined;
  terminal.pay = (req) => {
    charged = pay(req);
    return new Promise(() => {}); // never answers: the power goes first
  };
  const dying = new Register({
    journal: r.journal,
    catalog: () => demoCatalog,
    cashiers: () => demoCashiers,
    devices: { terminal },
    clock: r.clock,
  });
  void dying.execute('sale.tender', { kind: 'card' });
  await new Promise((resolve) => setImmediate(resolve));
  await charged;
  t.ok(r.journal.state.pendingCard, 'the request is journaled before the terminal hears of it');
  r.journal.close();
  r.io.crash();
  const journal = r.open();
  const back = new Register({
    journal,
    catalog: () => demoCatalog,
    cashiers: () => demoCashiers,
    devices: { terminal },
    clock: r.clock,
  });
  await back.recover();
  t.equal(back.state.pendingCard, null);
  t.equal(back.state.sale, null, 'the approved charge completed the sale');
  t.equal(back.state.receiptNo, 1);
  t.equal(terminal.charges.size, 1, 'one charge');
  const tenders = [...journal.read()].flatMap((rec) => rec.events).filter((e) => e.type === 'sale.tendered');
  t.equal(tenders.length, 1, 'one tender in the books');
});

t.test('wrong manager PINs at approvals lock that manager out, like wrong logins', async (t) => {
  const r = await readyRegister();
  const wrong = { managerId: 'mia', pin: '1234' };
  for (let i = 1; i <= 4; i++)
    await t.rejects(r.call('drawer.open', { approval: wrong }), { code: 'APPROVAL_REFUSED' });
  await t.rejects(r.call('drawer.open', { approval: wrong }), { code: 'APPROVAL_REFUSED' });
  await t.rejects(r.call('drawer.open', { approval: MANAGER }), { code: 'LOCKED_OUT' }, 'even the right PIN');
  r.clock.advance(5 * 60_000);
  t.match(await r.call('drawer.open', { approval: MANAGER }), { opened: true });
});

t.test('a terminal that stops answering: CARD_PENDING until it is asked again and answers', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: MUG });
  const pay = r.terminal.pay.bind(r.terminal);
  const query = r.terminal.query.bind(r.terminal);
  let reachable = false;
  r.terminal.pay = async (req) => {
    await pay(req); // the charge happens…
    throw new Error('link lost'); // …but the answer never arrives
  };
  r.terminal.query = async (txn) => (reachable ? query(txn) : { state: 'in_progress' });
  await t.rejects(r.call('sale.tender', { kind: 'card' }), { code: 'CARD_PENDING' });
  await t.rejects(
    r.call('sale.scan', { code: WATER }),
    { code: 'CARD_PENDING' },
    'the sale is frozen meanwhile',
  );
  t.match(await r.call('status'), { pendingCard: { amountMinor: 899 } }, 'status still answers');
  reachable = true;
  await r.call('cashier.logout').catch(() => undefined); // any command asks the terminal first
  t.equal(r.register.state.pendingCard, null);
  t.equal(r.register.state.sale, null, 'the charge that happened completed the sale');
  t.equal(r.register.state.receiptNo, 1);
  t.equal(r.terminal.charges.size, 1);
});

t.test('a card refund whose answer is lost is booked once the terminal is asked', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: MUG });
  await r.call('sale.tender', { kind: 'card' });
  const refund = r.terminal.refund.bind(r.terminal);
  r.terminal.refund = async (req) => {
    await refund(req);
    throw new Error('timeout');
  };
  t.match(await r.call('sale.refund', { receiptNo: 1, tender: 'card', approval: MANAGER }), {
    receiptNo: 2,
    amountMinor: 899,
  });
  t.equal(r.register.state.shift!.totals.refunds.byTender.card, 899);
  t.equal(r.register.state.pendingCard, null);
});

t.test('every event of a shift names a cashier', async (t) => {
  const r = await readyRegister();
  await r.call('sale.scan', { code: MUG });
  await r.call('sale.discount', { lineId: '1', kind: 'percent', value: 500 });
  await r.call('sale.tender', { kind: 'card', amountMinor: 400 });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 });
  await r.call('cash.paidIn', { amountMinor: 100, reason: 'coins' });
  await r.call('sale.refund', { receiptNo: 1, tender: 'card', approval: MANAGER });
  const events = [...r.journal.read()].flatMap((rec) => rec.events);
  const nameless = events.filter((e) => typeof e.cashierId !== 'string');
  t.same(nameless, [], 'no event without a cashier');
  t.ok(events.length > 10);
});

t.test('a PIN check does not hold up the event loop', async (t) => {
  const r = makeRegister();
  let loggedIn = false;
  const login = r.call('cashier.login', { cashierId: 'ana', pin: PINS.ana }).then(() => (loggedIn = true));
  // scrypt runs on the thread pool: the loop turns (setImmediate fires) before the login completes.
  const turned = await new Promise<boolean>((resolve) => setImmediate(() => resolve(!loggedIn)));
  await login;
  t.ok(turned, 'the event loop turned while the PIN was being checked');
  t.ok(loggedIn);
});

t.test('no PIN ever reaches the journal: logins, approvals, cash and card refunds', async (t) => {
  const r = await readyRegister();
  await t.rejects(r.call('cashier.login', { cashierId: 'ben', pin: '0000' }), { code: 'WRONG_PIN' });
  await r.call('sale.scan', { code: code('COF-250') });
  await r.call('sale.tender', { kind: 'card' });
  await r.call('sale.scan', { code: code('WAT-150') });
  await r.call('sale.tender', { kind: 'cash', amountMinor: 100 });
  await r.call('sale.refund', { receiptNo: 1, tender: 'card', approval: MANAGER });
  await r.call('sale.refund', { receiptNo: 2, tender: 'cash', approval: MANAGER });
  await r.call('cash.payout', { amountMinor: 100, reason: 'milk', approval: MANAGER });
  const journal = JSON.stringify([...r.journal.read(1)]);
  t.notMatch(journal, /"pin"/, 'no pin field');
  for (const pin of [PINS.ana, PINS.mia, '0000']) t.notOk(journal.includes(`"${pin}"`), `no ${pin}`);
});

t.test('till.info: the store, its currency and who may log in, without PIN hashes or a login', async (t) => {
  const r = makeRegister({ limits: { maxDiscrepancyMinor: 700 } });
  const before = r.journal.lastSeq;
  const info = (await r.call('till.info')) as Record<string, unknown>;
  t.match(info, {
    storeId: demoCatalog.storeId,
    storeName: demoCatalog.storeName,
    currency: 'EUR',
    limits: { maxDiscrepancyMinor: 700 },
  });
  t.same(
    info.cashiers,
    demoCashiers.cashiers.map((c) => ({ cashierId: c.id, name: c.name, role: c.role })),
  );
  t.notMatch(JSON.stringify(info), /scrypt|pinHash/, 'no PIN hash leaves the register');
  t.equal(r.journal.lastSeq, before, 'read only: no record');
});
