// The fleet page in a real browser: headless Chromium (playwright-core, the system's /usr/bin/chromium)
// against a ledger in this process (embedded aedes + a SQLite file) fed over MQTT by two simulated
// registers. One goes offline and its card turns amber, then red, as the injected clock moves its
// oldest record's age past the forwarding deadline's marks; an oversell appears live and is resolved
// through the page (backordered), a second one too (recounted); a record with a bad hash is listed in
// the quarantine with its code and reviewed from the page, a gap in a register's records raises an
// alarm; a sale's receipt renders as SVG; the page fits a phone. Requests without a session, or a
// change without the CSRF token, are refused. Screenshots go to artifacts/screenshots/ (CI keeps them),
// and a failing test leaves one of the page as it was when it failed.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync, type MqttClient } from 'mqtt';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { manualClock } from '../../appliance/clock.js';
import { topics, type Ack } from '../../cloud-bridge/protocol/wire.js';
import type { JournalRecord } from '../../cloud-bridge/protocol/record.js';
import type { RunningLedger } from '../../ledger/main.js';
import { addOperator } from '../../ledger/auth/operators.js';
import { renderReceiptSvg, type ReceiptDoc } from '../../appliance/devices/printer/receipt-render.js';
import { journalOf, message, rechain, startTestLedger } from '../support/ledger-fixtures.js';
import { waitFor } from '../support/wait.js';
import { demoCatalog, readyRegister } from '../support/till-fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOTS = path.join(root, 'artifacts/screenshots');
const HOUR = 3_600_000;
/** When the registers ring up their sales (their manual clocks' start) and when the ledger's clock starts. */
const SALES_AT = Date.UTC(2026, 0, 1);
const LEDGER_START = SALES_AT + HOUR;
const ADMIN = { name: 'olga', password: 'fleet-page-test-pw' };
/** Bound for every wait on the page: generous for a loaded 2-core CI machine, finite all the same. */
const WAIT_MS = 15_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function tmp(t: Test, prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Publishes a device's batch and resolves when the ledger's ack covers its last record. */
async function deliver(c: MqttClient, deviceId: string, records: JournalRecord[]): Promise<Ack> {
  const last = records[records.length - 1]!.seq;
  const acked = new Promise<Ack>((resolve) => {
    const onMessage = (topic: string, payload: Buffer) => {
      if (topic !== topics.ack(deviceId) || !payload.length) return;
      const ack = JSON.parse(payload.toString()) as Ack;
      if (ack.ackedThrough >= last) {
        c.off('message', onMessage);
        resolve(ack);
      }
    };
    c.on('message', onMessage);
  });
  await c.subscribeAsync(topics.ack(deviceId), { qos: 1 });
  await c.publishAsync(topics.journal(deviceId), message(records, deviceId), { qos: 1 });
  return acked;
}

function status(c: MqttClient, deviceId: string, body: Record<string, unknown>) {
  return c.publishAsync(topics.status(deviceId), JSON.stringify({ v: 1, ...body }), { qos: 1, retain: true });
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

/** When `t` fails, a picture of the page as the failure left it: fleet-failed-<test>.png. */
function shootOnFailure(t: Test, page: Page): void {
  t.teardown(async () => {
    if (t.passing()) return;
    const name = `fleet-failed-${t.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60)}.png`;
    // The page may be gone with the browser: a missing picture must not hide the failure itself.
    await shoot(page, name).catch((err: Error) => t.comment(`no failure screenshot: ${err.message}`));
  });
}

t.test('the fleet page, live, in a real browser', async (t) => {
  mkdirSync(SHOTS, { recursive: true });
  const dir = tmp(t, 'fleet-page-');
  const clock = manualClock(LEDGER_START);
  const ledger: RunningLedger = await startTestLedger(
    t,
    dir,
    // Even so, nothing a browser sends gets the local trust.
    { clientId: 'ledger-browser-test', apiAuth: 'loopback' },
    { clock, liveTickMs: 100 },
  );
  await addOperator(ledger.ldb, { ...ADMIN, role: 'admin' });
  const api = async (method: string, url: string, body?: unknown) => {
    const res = await fetch(ledger.httpUrl + url, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };

  // Refused without a session: the page sends a person to the login, the data and the feed say 401.
  const unauthPage = await fetch(`${ledger.httpUrl}/fleet`, { redirect: 'manual' });
  t.equal(unauthPage.status, 303);
  t.equal(unauthPage.headers.get('location'), '/fleet/login');
  for (const url of [
    '/fleet/live',
    '/fleet/events',
    '/fleet/api/overview',
    '/fleet/receipts/x',
    '/auth/session',
  ]) {
    const res = await fetch(ledger.httpUrl + url);
    t.equal(res.status, 401, `${url} without a session`);
    t.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNAUTHENTICATED');
  }

  // The store: a catalog (the receipt names the store), one unit of coffee, water enough.
  t.equal((await api('PUT', `/api/stores/${demoCatalog.storeId}/catalog`, demoCatalog)).status, 200);
  t.equal((await api('PUT', '/api/stock/COF-250', { onHand: 1 })).status, 200);
  t.equal((await api('POST', '/api/stock/WAT-150/receive', { qty: 100 })).status, 200);

  // Register 1 sells the last coffee and a water, closes its shift (a Z report) and stays online.
  const r1 = await readyRegister({ seed: 1 });
  await r1.call('sale.add', { sku: 'COF-250', qty: 1 });
  await r1.call('sale.add', { sku: 'WAT-150', qty: 2 });
  const { receipt: printed } = (await r1.call('sale.tender', { kind: 'cash' })) as { receipt: ReceiptDoc };
  const { expectedCashMinor: e } = (await r1.call('shift.report', {})) as { expectedCashMinor: number };
  await r1.call('shift.close', { counts: { '1': e % 100_000, '100000': Math.floor(e / 100_000) } });
  const till1 = await connectAsync(ledger.mqttUrl, { clientId: 'till-1', clean: true, reconnectPeriod: 0 });
  t.teardown(() => till1.endAsync(true));
  const records1 = journalOf(r1);
  await status(till1, 'till-1', {
    online: true,
    storeId: 'demo-store',
    epoch: 1,
    pending: 0,
    oldestPendingTs: null,
    clockTrusted: true,
    version: '0.1.0',
    ts: LEDGER_START,
  });
  await deliver(till1, 'till-1', records1);

  // Register 2, another store's, sold a coffee a minute later: not there any more (an oversell).
  const r2 = await readyRegister({ seed: 2 });
  r2.clock.advance(60_000);
  await r2.call('sale.add', { sku: 'COF-250', qty: 1 });
  await r2.call('sale.tender', { kind: 'cash' });
  const records2 = rechain(journalOf(r2), 'till-2', 1);
  const till2 = await connectAsync(ledger.mqttUrl, { clientId: 'till-2', clean: true, reconnectPeriod: 0 });
  t.teardown(() => till2.endAsync(true));

  const browserDir = tmp(t, 'fleet-chromium-');
  const context: BrowserContext = await chromium.launchPersistentContext(browserDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  t.teardown(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(WAIT_MS);
  // Registered after the browser's close, so it runs before it (teardowns run last first).
  shootOnFailure(t, page);
  const step = (name: string, fn: (t: Test) => Promise<void>) =>
    t.test(name, async (t) => {
      shootOnFailure(t, page);
      await fn(t);
    });
  const failures: string[] = [];
  page.on('pageerror', (err) => failures.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) failures.push(`console: ${m.text()}`);
  });
  const outside: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(ledger.httpUrl)) outside.push(r.url());
  });

  await step('an operator logs in', async (t) => {
    await page.goto(`${ledger.httpUrl}/fleet`);
    t.match(page.url(), /\/fleet\/login$/, 'sent to the login');
    await page.fill('input[name=name]', ADMIN.name);
    await page.fill('input[name=password]', 'not the password');
    await page.click('button[type=submit]');
    await page.waitForSelector('#login-error:has-text("wrong operator name or password")');
    await shoot(page, 'fleet-login.png');
    await page.fill('input[name=password]', ADMIN.password);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/fleet$/);
    await page.waitForSelector('#conn.live');
    const cookies = await context.cookies(ledger.httpUrl);
    const session = cookies.find((c) => c.name === 'ledger_session');
    t.ok(session, 'a session cookie');
    t.equal(session?.httpOnly, true, 'HttpOnly');
    t.equal(session?.sameSite, 'Strict', 'SameSite=Strict');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the browser's globals
    t.equal(await page.evaluate(() => (globalThis as any).document.cookie), '', 'out of reach of scripts');
    await page.waitForSelector('[data-device="till-1"][data-online="true"]');
    t.match(await page.textContent('[data-device="till-1"]'), /No\. 1/, 'its last Z report');
    t.match(await page.textContent('#stock'), /No open oversells/);
  });

  await step('register 2 reports: an oversell appears without a reload', async (t) => {
    const version = Number(await page.getAttribute('#live', 'data-version'));
    await status(till2, 'till-2', {
      online: true,
      storeId: 'north-store',
      epoch: 1,
      pending: 0,
      oldestPendingTs: null,
      clockTrusted: true,
      version: '0.1.1',
      ts: LEDGER_START,
    });
    await deliver(till2, 'till-2', records2);
    const oversell = await page.waitForSelector('li.exception[data-kind="oversell"]');
    t.match(await oversell.textContent(), /COF-250/);
    t.ok(Number(await page.getAttribute('#live', 'data-version')) > version, 'brought by the live feed');
    await page.waitForSelector('tr.oversold[data-sku="COF-250"]');
    // Each store's sales chart has a bar for the hour of its sale.
    for (const store of ['demo-store', 'north-store']) {
      const tallest = await page.$$eval(`.store-charts[data-store="${store}"] rect.bar`, (bars) =>
        Math.max(...bars.map((b) => Number(b.getAttribute('height')))),
      );
      t.ok(tallest > 0, `a sales bar for ${store}`);
    }
    await shoot(page, 'fleet-oversell.png');
  });

  await step('register 2 goes offline with records waiting: its card turns amber, then red', async (t) => {
    // Three more sales rung up offline from 00:30, then the link drops (the last will).
    await status(till2, 'till-2', {
      online: true,
      epoch: 1,
      pending: 3,
      oldestPendingTs: SALES_AT + HOUR / 2,
      ts: LEDGER_START + 1,
    });
    // Statuses of one device may be applied concurrently: the last will comes after this one landed.
    await waitFor('till-2 to report 3 pending', async () => {
      const { body } = await api('GET', '/api/devices');
      return body.devices.some(
        (d: { deviceId: string; pending: number }) => d.deviceId === 'till-2' && d.pending === 3,
      );
    });
    await status(till2, 'till-2', { online: false });
    const card = '[data-device="till-2"]';
    await page.waitForSelector(`${card}[data-online="false"][data-deadline="ok"]`);
    t.match(await page.textContent(`${card} .pending`), '3');
    t.match(await page.textContent(`${card} .age`), /30 min/);

    // 11 h later the oldest record is 11 h 30 min old: under half the 24 h deadline.
    clock.advance(11 * HOUR);
    await page.waitForSelector(`${card} .age:has-text("11 h 30 min")`);
    t.equal(await page.getAttribute(card, 'data-deadline'), 'ok');

    // One more hour: 12 h 30 min, past half.
    clock.advance(HOUR);
    await page.waitForSelector(`${card}[data-deadline="amber"]`);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the browser's globals
    const amber = await page.$eval(card, (el) => (globalThis as any).getComputedStyle(el).borderLeftColor);
    t.equal(amber, 'rgb(184, 110, 0)', 'drawn amber');
    await shoot(page, 'fleet-amber.png');
    t.equal(await page.getAttribute('[data-device="till-1"]', 'data-deadline'), 'none', 'the other is fine');

    // 20 h: past 80 %.
    clock.advance(7 * HOUR + 30 * 60_000);
    await page.waitForSelector(`${card}[data-deadline="red"]`);
    await shoot(page, 'fleet-red.png');
    t.pass('amber at 12 h, red at 19.2 h of a 24 h deadline');
  });

  await step('the oversell is resolved from the page', async (t) => {
    const [id] = (await api('GET', '/api/exceptions?kind=oversell&open=true')).body.exceptions.map(
      (x: { id: number }) => x.id,
    );
    t.ok(id, 'open in the books');
    await page.click(`li.exception[data-exception="${id}"] button[data-resolution="backordered"]`);
    await page.waitForSelector(`li.exception[data-exception="${id}"]`, { state: 'detached' });
    await page.waitForSelector('#stock :text("No open oversells.")');
    const exceptions = (await api('GET', '/api/exceptions?kind=oversell')).body.exceptions;
    t.match(exceptions, [{ id, resolution: 'backordered' }]);
    t.ok(exceptions[0].resolvedAt, 'resolved in the books');
  });

  // What register 1 journals from here on, past what it has delivered.
  let delivered = records1.length;
  const nextRecords = () => {
    const records = journalOf(r1).slice(delivered);
    delivered += records.length;
    return records;
  };

  await step('a second oversell is resolved as recounted', async (t) => {
    await r1.call('shift.open', { floatCounts: { '1000': 5 } });
    await r1.call('sale.add', { sku: 'COF-250', qty: 1 });
    await r1.call('sale.tender', { kind: 'cash' });
    await deliver(till1, 'till-1', nextRecords());
    const [id] = (await api('GET', '/api/exceptions?kind=oversell&open=true')).body.exceptions.map(
      (x: { id: number }) => x.id,
    );
    t.ok(id, 'a new oversell, open in the books');
    const row = `li.exception[data-exception="${id}"]`;
    await page.waitForSelector(row);
    t.match(await page.textContent(row), /COF-250/);
    await page.click(`${row} button[data-resolution="recounted"]`);
    await page.waitForSelector(row, { state: 'detached' });
    await page.waitForSelector('#stock :text("No open oversells.")');
    t.match((await api('GET', '/api/exceptions?kind=oversell')).body.exceptions, [
      { id, resolution: 'recounted' },
      { resolution: 'backordered' },
    ]);
  });

  await step('a record with a bad hash is quarantined, a gap raises an alarm', async (t) => {
    // Two more sales: the first's completion arrives altered after it was sealed, the second's start
    // never arrives.
    for (let i = 0; i < 2; i++) {
      await r1.call('sale.add', { sku: 'WAT-150', qty: 1 });
      await r1.call('sale.tender', { kind: 'cash' });
    }
    const [started, completed, lostStart, lastCompleted] = nextRecords();
    t.ok(lastCompleted, 'four records: two sales of two records each');
    const altered = { ...completed!, ts: completed!.ts + 1 };
    const ack = await deliver(till1, 'till-1', [started!, altered]);
    t.match(ack.rejected, [{ seq: completed!.seq, code: 'BAD_HASH' }], 'acked as rejected');
    await till1.publishAsync(topics.journal('till-1'), message([lastCompleted!], 'till-1'), { qos: 1 });

    const quarantined = await page.waitForSelector('li.exception[data-kind="quarantine"]');
    t.match(await quarantined.textContent(), /BAD_HASH/, 'its reason code');
    t.match(await quarantined.textContent(), new RegExp(`seq ${completed!.seq}\\b`));
    const gap = await page.waitForSelector('li.exception[data-kind="gap"]');
    t.match(
      await gap.textContent(),
      new RegExp(`records\\s+${lostStart!.seq}–${lostStart!.seq}\\s+missing`),
      'the missing record named',
    );
    await shoot(page, 'fleet-alarms.png');

    // The quarantined record is looked at and marked reviewed; the gap stays until its record comes.
    const id = await quarantined.getAttribute('data-exception');
    await page.click(`li.exception[data-exception="${id}"] button[data-resolution="reviewed"]`);
    await page.waitForSelector(`li.exception[data-exception="${id}"]`, { state: 'detached' });
    await page.waitForSelector('#alarms :text("Nothing quarantined.")');
    t.match((await api('GET', '/api/exceptions?kind=quarantine')).body.exceptions, [
      { id: Number(id), resolution: 'reviewed', detail: { code: 'BAD_HASH' } },
    ]);
    t.ok(await page.$('li.exception[data-kind="gap"]'), 'the gap alarm still open');
  });

  await step("a sale's receipt renders as the printer prints it", async (t) => {
    const saleId = (printed as Extract<ReceiptDoc, { kind: 'sale' }>).saleId;
    // The document the ledger rebuilds from its books is the one the register handed its printer
    // (but for `offline`: the printer printed before the sale was synced; the books have it).
    t.same({ ...(await ledger.fleet.receiptDoc(saleId)), offline: true }, { ...printed, offline: true });
    await page.click(`tr[data-sale="${saleId}"] a[data-receipt]`);
    await page.waitForFunction(() => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the browser's globals; this program has no DOM types
      const img = (globalThis as any).document.querySelector('#receipt img');
      return img !== null && img.complete && img.naturalWidth > 0;
    });
    const svg = await page.evaluate(
      (id) => fetch(`/fleet/receipts/${encodeURIComponent(id)}`).then((r) => r.text()),
      saleId,
    );
    t.match(svg, /^<svg /);
    t.notMatch(svg, /googleapis|@import/, 'no font from a CDN');
    // The picture of the printer's document, but for its random filter id and the CDN font.
    const same = (s: string) =>
      s.replace(/receipt-[0-9a-f-]{36}/g, 'receipt-ID').replace(/<style[^>]*>[\s\S]*?<\/style>/g, '');
    t.equal(same(svg), same(renderReceiptSvg({ ...printed, offline: false }, { columns: 42 })));
    await page.locator('#receipt-view').screenshot({ path: path.join(SHOTS, 'fleet-receipt.png') });
  });

  await step('in the browser, no session or no CSRF token is refused', async (t) => {
    const answers = await page.evaluate(async () => {
      const noCookie = await fetch('/api/stock', { credentials: 'omit' });
      const noCsrf = await fetch('/api/stock/COF-250', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ onHand: 50 }),
      });
      const wrongCsrf = await fetch('/api/stock/COF-250', {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'x-csrf-token': 'guessed' },
        body: JSON.stringify({ onHand: 50 }),
      });
      const code = ((await noCsrf.json()) as { error: { code: string } }).error.code;
      return [noCookie.status, noCsrf.status, code, wrongCsrf.status];
    });
    t.same(answers, [401, 403, 'CSRF', 403], 'a browser is not a program on this machine');
    t.equal((await api('GET', '/api/stock/COF-250')).body.onHand, 0, 'nothing changed');
  });

  await step('at phone width nothing overflows sideways', async (t) => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.waitForSelector('#conn.live');
    await page.waitForSelector('[data-device="till-2"][data-deadline="red"]');
    const widths = await page.evaluate(() => ({
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the browser's globals
      scroll: (globalThis as any).document.documentElement.scrollWidth as number,
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      inner: (globalThis as any).innerWidth as number,
    }));
    t.ok(widths.scroll <= widths.inner, `page ${widths.scroll}px wide in a ${widths.inner}px window`);
    // A reload keeps the scroll position: from further down, the sticky header would be drawn across
    // the middle of the full-page picture.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the browser's globals
    await page.evaluate(() => (globalThis as any).scrollTo(0, 0));
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    await page.waitForFunction(() => (globalThis as any).scrollY === 0);
    await shoot(page, 'fleet-phone.png');
  });

  await step('logging out ends the session', async (t) => {
    await page.click('#logout');
    await page.waitForURL(/\/fleet\/login$/);
    await page.goto(`${ledger.httpUrl}/fleet`);
    t.match(page.url(), /\/fleet\/login$/);
  });

  t.same(failures, [], 'no script errors on the page');
  t.same(outside, [], 'nothing fetched from anywhere but the ledger');
});
