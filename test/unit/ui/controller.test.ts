// The till's screens without a terminal: a fake register answers, the view is plain text.
import t from 'tap';
import { TillController, type RegisterStatus } from '../../../appliance/ui/controller.js';
import type { Answer } from '../../../appliance/ui/link.js';

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

t.test('a scan from the scanner is announced once, when it is new', async (t) => {
  const till = new TillController(fakeRegister(() => ok()).ports);
  till.setLink(true);
  await flush();
  const scan = { code: '4006381333900', atMs: 5, ok: true, name: 'Espresso beans' };
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
