// The till's screens without a terminal: a fake register answers, the view is plain text.
import t from 'tap';
import { TillController, type RegisterStatus } from '../../../appliance/ui/controller.js';
import type { Answer } from '../../../appliance/ui/link.js';
import type { Action } from '../../../appliance/ui/keymap.js';

const INFO = {
  storeName: 'Test shop',
  currency: 'EUR',
  cashiers: [
    { cashierId: 'ana', name: 'Ana', role: 'cashier' },
    { cashierId: 'mia', name: 'Mia', role: 'manager' },
  ],
  limits: { maxDiscrepancyMinor: 500 },
};

function status(over: Partial<RegisterStatus> = {}): RegisterStatus {
  return {
    clockTrusted: true,
    session: { cashierId: 'ana', name: 'Ana', role: 'cashier' },
    shift: { shiftId: 's', openedAt: 0, expectedCashMinor: 0 },
    sale: null,
    pendingCard: null,
    sync: null,
    devices: {},
    terminalMessage: null,
    lastScan: null,
    ...over,
  };
}

/** A register that answers each call with `answer(method, params)`, after `gate` when one is set. */
function fakeRegister(answer: (method: string, params: Record<string, unknown>) => Answer) {
  const calls: { method: string; params: Record<string, unknown> }[] = [];
  let gate: Promise<void> | undefined;
  const ports = {
    nowMs: () => 0,
    async call(method: string, params: unknown = {}): Promise<Answer> {
      if (method === 'till.info') return { ok: true, result: INFO };
      calls.push({ method, params: params as Record<string, unknown> });
      if (gate) await gate;
      return answer(method, params as Record<string, unknown>);
    },
  };
  return {
    ports,
    calls,
    hold() {
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      return () => {
        gate = undefined;
        open();
      };
    },
  };
}

const ok = (result: unknown = {}): Answer => ({ ok: true, result });
const refused = (code: string, message = code): Answer => ({ ok: false, error: { code, message } });
const flush = () => new Promise((r) => setImmediate(r));

t.test('keys typed while a request is in flight are kept, in order', async (t) => {
  const reg = fakeRegister(() => ok({ line: { name: 'Thing' } }));
  const till = new TillController(reg.ports);
  till.setLink(true);
  await flush();
  till.setStatus(status());
  const release = reg.hold();
  for (const k of ['digit4', 'digit0', 'enter', 'digit1', 'digit2', 'enter'] as const) void till.press(k);
  await flush();
  t.same(
    reg.calls.map((c) => c.params.code),
    ['40'],
    'the second code waits for the first answer',
  );
  release();
  await till.press('none');
  await till.press('clear');
  t.same(
    reg.calls.map((c) => c.params.code),
    ['40', '12'],
    'nothing typed meanwhile was lost',
  );
});

t.test('amounts: implied decimals, or a point for major units', async (t) => {
  const till = new TillController(fakeRegister(() => ok()).ports);
  till.setLink(true);
  await flush();
  t.equal(till.amountOf('1250'), 1250);
  t.equal(till.amountOf('12.5'), 1250);
  t.equal(till.amountOf('12.'), 1200);
  t.equal(till.amountOf('.05'), 5);
  t.equal(till.amountOf('1.234'), null, 'more decimals than the currency has');
  t.equal(till.amountOf('.'), null);
  t.equal(till.money(-5), '-0.05');
});

t.test('a command that needs a manager asks for one and runs again with the approval', async (t) => {
  const reg = fakeRegister((method, params) =>
    method === 'drawer.open' && !params.approval
      ? refused('MANAGER_REQUIRED', 'needs a manager')
      : params.approval && (params.approval as { pin: string }).pin !== '9999'
        ? refused('APPROVAL_REFUSED', 'wrong manager PIN')
        : ok({ opened: true }),
  );
  const till = new TillController(reg.ports);
  till.setLink(true);
  await flush();
  till.setStatus(status());
  await till.press('noSale');
  t.match(till.view().title, /Manager approval: No sale/);
  await till.press('digit1');
  t.match(till.view().body.join('\n'), /Mia, type your PIN/);
  for (const k of ['digit1', 'digit2', 'digit3', 'digit4', 'enter'] as const) await till.press(k);
  t.match(till.view().message, { text: 'wrong manager PIN', level: 'error' });
  t.match(till.view().title, /Manager approval/, 'still asking after a wrong PIN');
  for (const k of ['digit9', 'digit9', 'digit9', 'digit9'] as const) await till.press(k);
  t.equal(till.view().input, '****', 'the PIN is masked');
  await till.press('enter');
  t.same(
    reg.calls.map((c) => [c.method, c.params.approval ?? null]),
    [
      ['drawer.open', null],
      ['drawer.open', { managerId: 'mia', pin: '1234' }],
      ['drawer.open', { managerId: 'mia', pin: '9999' }],
    ],
  );
  t.match(till.view().message, { text: /approved by Mia/ });
});

t.test('the status line: link, queue and age, devices, cashier, clock', async (t) => {
  const till = new TillController({ ...fakeRegister(() => ok()).ports, nowMs: () => 3 * 60_000 });
  t.match(till.view().statusLine, /REGISTER DOWN/);
  till.setLink(true);
  await flush();
  till.setStatus(
    status({
      clockTrusted: false,
      sync: { state: 'offline', pending: 7, oldestPendingTs: 0 },
      devices: { printer: { state: 'fault', printer: 'paper-out', queued: 2 }, terminal: { state: 'ok' } },
      offlineCard: { count: 1, totalMinor: 649 },
    }),
  );
  const line = till.view().statusLine;
  for (const part of [/OFFLINE q7 3m/, /PRN paper-out \(2\)/, /TRM ok/, /card offline 1/, /Ana/, /clock \?/])
    t.match(line, part);
});

t.test('the status line fits its width: the time goes first, the essentials never', async (t) => {
  const name = 'Maximiliane Alexandra von Hohenzollern-S'; // 40: the longest name a cashier list holds
  t.equal(name.length, 40);
  const nowMs = 400 * 24 * 3_600_000; // the oldest record 9,600 hours old: over a year offline
  const till = new TillController({ ...fakeRegister(() => ok()).ports, nowMs: () => nowMs });
  till.setLink(true);
  await flush();
  till.setStatus(
    status({
      clockTrusted: false,
      session: { cashierId: 'max', name, role: 'manager' },
      sync: { state: 'offline', pending: 999_999, oldestPendingTs: 0 },
      devices: {
        printer: { state: 'fault', printer: 'paper-near-end', queued: 99_999 },
        terminal: { state: 'fault' },
        scanner: { state: 'fault' },
      },
      offlineCard: { count: 99_999, totalMinor: 99_999_999 },
    }),
  );
  for (const width of [80, 60, 45]) {
    const line = till.view(width).statusLine;
    t.ok(line.length <= width, `${line.length} columns in ${width}: ${JSON.stringify(line)}`);
    t.match(line, /OFFLINE q999999 9600h00/, `the link, the queue and its age at ${width}`);
    t.match(line, /\| clock \? $/, `the clock's trust at ${width}`);
    t.match(line, /\| Maximi/, `the cashier at ${width}`);
    t.notMatch(line, /\d\d:\d\d/, `the time of day went first at ${width}`);
  }
  t.match(till.view(80).statusLine, `| ${name} |`, 'the whole name at 80 columns');
  t.ok(till.view(80).statusLine.length <= 80);

  // A line only the time pushes past the width loses the time and nothing else.
  till.setStatus(
    status({
      sync: { state: 'offline', pending: 12, oldestPendingTs: nowMs - 4 * 60_000 },
      devices: {
        printer: { state: 'fault', printer: 'cover-open', queued: 3 },
        terminal: { state: 'ok' },
        scanner: { state: 'ok' },
      },
      offlineCard: { count: 2, totalMinor: 1000 },
      session: { cashierId: 'ana', name: 'Anastasia', role: 'cashier' },
    }),
  );
  const full = till.view(200).statusLine;
  t.match(full, / \| \d\d:\d\d $/, 'with room, the time is there');
  const narrow = till.view(full.length - 2).statusLine;
  t.equal(narrow, full.replace(/ \| \d\d:\d\d $/, ' '), 'one column short: only the time is gone');
});

t.test('a scan from the scanner is announced once, when it is new', async (t) => {
  const till = new TillController(fakeRegister(() => ok()).ports);
  till.setLink(true);
  await flush();
  const scan = { code: '4006381333900', atMs: 5, ok: true, name: 'Espresso beans' };
  till.setStatus(status({ lastScan: { ...scan, code: '111', atMs: 1 } }));
  t.equal(till.view().message, null, 'a scan from before the till started is not news');
  till.setStatus(status({ lastScan: scan }));
  t.match(till.view().message, { text: 'Scanned 4006381333900: Espresso beans', level: 'info' });
  await till.press('subtotal');
  t.match(till.view().message, { text: /Subtotal: no sale open/ });
  till.setStatus(status({ lastScan: { ...scan } }));
  t.match(till.view().message, { text: /Subtotal: no sale open/ }, 'the same scan again is not news');
  till.setStatus(
    status({
      lastScan: {
        code: '123',
        atMs: 9,
        ok: false,
        error: { code: 'UNKNOWN_BARCODE', message: 'no product for 123' },
      },
    }),
  );
  t.match(till.view().message, { text: 'Scan 123: no product for 123', level: 'error' });
});

t.test('the first scan after the till starts is announced over a message already showing', async (t) => {
  const till = new TillController(fakeRegister(() => ok()).ports);
  till.setLink(true);
  await flush();
  till.setStatus(status({ session: null }));
  await till.press('digit1');
  for (const k of ['digit1', 'digit1', 'digit1', 'digit1', 'enter'] as const) await till.press(k);
  till.setStatus(status());
  t.match(till.view().message, { text: 'Welcome, Ana' }, 'a message is showing');
  till.setStatus(
    status({
      lastScan: {
        code: '12345',
        atMs: 7,
        ok: false,
        error: { code: 'UNKNOWN_BARCODE', message: 'no product for 12345' },
      },
    }),
  );
  t.match(till.view().message, { text: 'Scan 12345: no product for 12345', level: 'error' });
});

t.test('an open-price item asks for its price and adds it with sale.add', async (t) => {
  const VOUCHER = '2000000000015';
  const priceRequired = (details?: Record<string, unknown>): Answer => ({
    ok: false,
    error: {
      code: 'PRICE_REQUIRED',
      message: 'Gift voucher needs a price keyed in',
      ...(details ? { details } : {}),
    },
  });
  const reg = fakeRegister((method, params) => {
    if (method === 'sale.scan') return priceRequired({ sku: 'GIFT-OPEN' });
    if (method === 'sale.add' && !params.approval) return refused('MANAGER_REQUIRED', 'needs a manager');
    return ok({ line: { name: 'Gift voucher' } });
  });
  const till = new TillController(reg.ports);
  till.setLink(true);
  await flush();
  till.setStatus(status());
  for (const d of VOUCHER) await till.press(`digit${d}` as Action);
  await till.press('enter');
  t.equal(till.view().title, `Price for ${VOUCHER}`);
  t.equal(till.view().prompt, 'Price');
  t.match(till.view().message, { text: /Gift voucher needs a price keyed in: type the price/ });
  await till.press('enter');
  t.match(till.view().message, { text: 'Type the price, then Enter', level: 'error' }, 'no price typed');
  for (const k of ['digit2', 'digit5', 'decimal'] as const) await till.press(k);
  await till.press('enter');
  t.match(till.view().title, /Manager approval: 2000000000015 at 25\.00/, 'an open price needs a manager');
  await till.press('digit1');
  for (const k of ['digit9', 'digit9', 'digit9', 'digit9', 'enter'] as const) await till.press(k);
  t.same(
    reg.calls.filter((c) => c.method === 'sale.add').map((c) => c.params),
    [
      { sku: 'GIFT-OPEN', priceMinor: 2500 },
      { sku: 'GIFT-OPEN', priceMinor: 2500, approval: { managerId: 'mia', pin: '9999' } },
    ],
    'the SKU the refusal named, at the price typed',
  );
  t.match(till.view().message, { text: `${VOUCHER}: Gift voucher at 25.00` });
  t.equal(till.view().prompt, 'Code/amount', 'back on the sale');

  // From the scanner, without an SKU in the refusal: the code is tried as the SKU; Esc gives up.
  const error = { code: 'PRICE_REQUIRED', message: 'Gift voucher needs a price keyed in' };
  till.setStatus(status({ lastScan: { code: 'GIFT-OPEN', atMs: 3, ok: false, error } }));
  t.equal(till.view().title, 'Price for GIFT-OPEN');
  await till.press('clear');
  t.match(till.view().message, { text: 'GIFT-OPEN: not added (no price)' });
  t.equal(till.view().prompt, 'Code/amount');
});

t.test('an open-price barcode the register names no SKU for is explained, not retried', async (t) => {
  const reg = fakeRegister((method, params) =>
    method === 'sale.scan'
      ? refused('PRICE_REQUIRED', 'Gift voucher needs a price keyed in')
      : refused('UNKNOWN_SKU', `no product ${String(params.sku)}`),
  );
  const till = new TillController(reg.ports);
  till.setLink(true);
  await flush();
  till.setStatus(status());
  for (const d of '2000000000015') await till.press(`digit${d}` as Action);
  await till.press('enter');
  for (const k of ['digit5', 'decimal', 'enter'] as const) await till.press(k);
  t.same(reg.calls.at(-1), { method: 'sale.add', params: { sku: '2000000000015', priceMinor: 500 } });
  t.match(till.view().message, {
    text: /2000000000015: this register cannot take a price for it/,
    level: 'error',
  });
  t.equal(till.view().prompt, 'Code/amount', 'back on the sale');
});
