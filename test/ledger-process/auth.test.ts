// Operators at the ledger's HTTP API: sessions (cookie attributes, expiry, logout), CSRF on every
// change made with a session, the roles, API tokens for programs and the web shop, the loopback mode
// that keeps programs on this machine working and refuses browsers, and the `ledger operator` CLI.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { request as httpRequest } from 'node:http';
import { manualClock } from '../../appliance/clock.js';
import { startLedger, parseLedgerArgs, type RunningLedger } from '../../ledger/main.js';
import { addOperator, listOperators } from '../../ledger/auth/operators.js';
import { runOperatorCli } from '../../ledger/auth/operator-cli.js';
import { SESSION_DEFAULTS } from '../../ledger/auth/sessions.js';
import { openLedgerDb } from '../../ledger/db/open.js';
import { startTestLedger } from '../support/ledger-fixtures.js';

const API_TOKEN = 'a'.repeat(40);
const SHOP_TOKEN = 's'.repeat(40);
const PW = { admin: 'admin-password-1', viewer: 'viewer-password-1' };

function tmp(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ledger-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function ledgerIn(
  t: Test,
  options: Partial<Parameters<typeof startLedger>[0]> = {},
  extras: Parameters<typeof startLedger>[1] = {},
): Promise<RunningLedger> {
  const ledger = await startTestLedger(t, tmp(t), { clientId: 'ledger-auth-test', ...options }, extras);
  await addOperator(ledger.ldb, { name: 'ada', role: 'admin', password: PW.admin });
  await addOperator(ledger.ldb, { name: 'vic', role: 'viewer', password: PW.viewer });
  return ledger;
}

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

async function call(
  ledger: RunningLedger,
  method: string,
  url: string,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await fetch(ledger.httpUrl + url, {
    method,
    redirect: 'manual',
    headers: {
      ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...opts.headers,
    },
    ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // a page, a picture
  }
  return { status: res.status, body, headers: res.headers };
}

async function login(ledger: RunningLedger, name: string, password: string) {
  const r = await call(ledger, 'POST', '/auth/login', { body: { name, password } });
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0]!;
  return { ...r, cookie, csrf: r.body?.csrfToken as string };
}

t.test('api-auth required: nothing without a session or a token', async (t) => {
  const ledger = await ledgerIn(t, { apiAuth: 'required', apiToken: API_TOKEN, shopToken: SHOP_TOKEN });
  t.equal((await call(ledger, 'GET', '/healthz')).status, 200, 'health stays open');
  for (const [method, url] of [
    ['GET', '/api/stock'],
    ['GET', '/api/devices'],
    ['GET', '/api/sales'],
    ['GET', '/api/exceptions'],
    ['PUT', '/api/stock/COF-250'],
    ['POST', '/api/online-orders'],
    ['GET', '/fleet/live'],
    ['GET', '/fleet/events'],
  ] as const) {
    const r = await call(ledger, method, url, method === 'GET' ? {} : { body: {} });
    t.equal(r.status, 401, `${method} ${url}`);
    t.equal(r.body.error.code, 'UNAUTHENTICATED');
  }
  const page = await call(ledger, 'GET', '/fleet');
  t.equal(page.status, 303, 'a person is sent to the login');
  t.equal(page.headers.get('location'), '/fleet/login');
  t.equal((await call(ledger, 'GET', '/fleet/login')).status, 200, 'the login page is open');
  t.equal(
    (await call(ledger, 'GET', '/api/stock', { headers: { authorization: `Bearer ${'x'.repeat(40)}` } }))
      .status,
    401,
    'a wrong token',
  );

  const admin = { authorization: `Bearer ${API_TOKEN}` };
  t.equal(
    (await call(ledger, 'PUT', '/api/stock/COF-250', { body: { onHand: 3 }, headers: admin })).status,
    200,
  );
  t.equal((await call(ledger, 'GET', '/api/stock/COF-250', { headers: admin })).body.onHand, 3);

  const shop = { authorization: `Bearer ${SHOP_TOKEN}` };
  const order = { orderId: 'web-1', storeId: 'demo-store', lines: [{ sku: 'COF-250', qty: 1 }] };
  t.equal((await call(ledger, 'POST', '/api/online-orders', { body: order, headers: shop })).status, 201);
  t.equal((await call(ledger, 'GET', '/api/online-orders/web-1', { headers: shop })).status, 200);
  const shopCount = await call(ledger, 'PUT', '/api/stock/COF-250', { body: { onHand: 9 }, headers: shop });
  t.equal(shopCount.status, 403, 'the shop places orders, nothing else');
  t.equal(shopCount.body.error.code, 'FORBIDDEN');
  t.equal((await call(ledger, 'GET', '/api/stock', { headers: shop })).status, 403);
});

t.test('sessions: the cookie, CSRF on changes, roles, logout', async (t) => {
  const ledger = await ledgerIn(t, { apiAuth: 'required' });
  const wrong = await login(ledger, 'ada', 'not-the-password');
  t.equal(wrong.status, 401);
  t.equal(wrong.body.error.code, 'BAD_LOGIN');
  const unknown = await login(ledger, 'nobody', PW.admin);
  t.equal(unknown.body.error.code, 'BAD_LOGIN', 'an unknown name answers as a wrong password');

  const ada = await login(ledger, 'ADA', PW.admin);
  t.equal(ada.status, 200, 'names are case-insensitive');
  t.match(ada.body, { operator: 'ada', role: 'admin' });
  const setCookie = ada.headers.get('set-cookie')!;
  t.match(setCookie, /^ledger_session=[A-Za-z0-9_-]{43}; /);
  for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${SESSION_DEFAULTS.maxAgeMs / 1000}`])
    t.ok(setCookie.split('; ').includes(attr), attr);
  t.notMatch(setCookie, /Secure/, 'not Secure unless configured');
  t.match(ada.csrf, /^[A-Za-z0-9_-]{43}$/);

  const session = { cookie: ada.cookie };
  t.equal(
    (await call(ledger, 'GET', '/api/stock', { headers: session })).status,
    200,
    'reads with the cookie',
  );
  t.same((await call(ledger, 'GET', '/auth/session', { headers: session })).body, {
    operator: 'ada',
    role: 'admin',
    csrfToken: ada.csrf,
  });
  const noCsrf = await call(ledger, 'PUT', '/api/stock/COF-250', { body: { onHand: 2 }, headers: session });
  t.equal(noCsrf.status, 403, 'a change without the token');
  t.equal(noCsrf.body.error.code, 'CSRF');
  const badCsrf = await call(ledger, 'PUT', '/api/stock/COF-250', {
    body: { onHand: 2 },
    headers: { ...session, 'x-csrf-token': ada.csrf.slice(1) + 'x' },
  });
  t.equal(badCsrf.body.error.code, 'CSRF', 'a wrong token');
  const counted = await call(ledger, 'PUT', '/api/stock/COF-250', {
    body: { onHand: 2 },
    headers: { ...session, 'x-csrf-token': ada.csrf },
  });
  t.equal(counted.status, 200, 'with the token');

  const vic = await login(ledger, 'vic', PW.viewer);
  const viewer = { cookie: vic.cookie, 'x-csrf-token': vic.csrf };
  t.equal((await call(ledger, 'GET', '/api/exceptions', { headers: viewer })).status, 200, 'a viewer reads');
  t.equal((await call(ledger, 'GET', '/fleet/live', { headers: viewer })).status, 200);
  const resolve = await call(ledger, 'POST', '/api/exceptions/1/resolve', {
    body: { resolution: 'recounted' },
    headers: viewer,
  });
  t.equal(resolve.status, 403, 'a viewer changes nothing');
  t.equal(resolve.body.error.code, 'FORBIDDEN');
  t.notMatch(
    (await call(ledger, 'GET', '/fleet/live', { headers: viewer })).body,
    /data-resolve=/,
    'no buttons',
  );

  const page = await call(ledger, 'GET', '/fleet', { headers: session });
  t.equal(page.status, 200);
  t.match(page.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/);
  t.ok(String(page.body).includes(`<meta name="csrf-token" content="${ada.csrf}"`), 'the token in the page');

  t.equal((await call(ledger, 'POST', '/auth/logout', { body: {}, headers: session })).status, 403, 'CSRF');
  const out = await call(ledger, 'POST', '/auth/logout', {
    body: {},
    headers: { ...session, 'x-csrf-token': ada.csrf },
  });
  t.equal(out.status, 200);
  t.match(out.headers.get('set-cookie'), /Max-Age=0/);
  t.equal(
    (await call(ledger, 'GET', '/api/stock', { headers: session })).status,
    401,
    'the old cookie is dead',
  );

  // A removed operator's session ends at the next request.
  await ledger.ldb.db.deleteFrom('operators').where('name', '=', 'vic').execute();
  t.equal((await call(ledger, 'GET', '/api/stock', { headers: viewer })).status, 401);
});

t.test('sessions expire when idle and at their age limit; logins are throttled', async (t) => {
  const authClock = manualClock(Date.UTC(2026, 0, 1));
  const ledger = await ledgerIn(t, { apiAuth: 'required', secureCookies: true }, { authClock });
  const ada = await login(ledger, 'ada', PW.admin);
  t.match(ada.headers.get('set-cookie'), /; Secure$/, 'Secure when configured');
  const headers = { cookie: ada.cookie };
  authClock.advance(SESSION_DEFAULTS.idleMs - 1000);
  t.equal((await call(ledger, 'GET', '/api/stock', { headers })).status, 200, 'used before it idles out');
  authClock.advance(SESSION_DEFAULTS.idleMs - 1000);
  t.equal((await call(ledger, 'GET', '/api/stock', { headers })).status, 200, 'and again');
  authClock.advance(SESSION_DEFAULTS.idleMs + 1);
  t.equal((await call(ledger, 'GET', '/api/stock', { headers })).status, 401, 'idle too long');

  const again = await login(ledger, 'ada', PW.admin);
  for (let i = 0; i < 4; i++) {
    authClock.advance(SESSION_DEFAULTS.idleMs - 1000);
    await call(ledger, 'GET', '/api/stock', { headers: { cookie: again.cookie } });
  }
  t.equal(
    (await call(ledger, 'GET', '/api/stock', { headers: { cookie: again.cookie } })).status,
    401,
    'past the age limit, however busy',
  );

  for (let i = 0; i < 10; i++) t.equal((await login(ledger, 'ada', 'wrong-password-x')).status, 401);
  const locked = await login(ledger, 'ada', PW.admin);
  t.equal(locked.status, 429, 'the right password too, for a while');
  t.equal(locked.body.error.code, 'TOO_MANY_ATTEMPTS');
  t.equal((await login(ledger, 'vic', PW.viewer)).status, 200, 'another name is not locked');
  authClock.advance(15 * 60 * 1000 + 1);
  t.equal((await login(ledger, 'ada', PW.admin)).status, 200, 'after the window');

  const foreign = await call(ledger, 'POST', '/auth/login', {
    body: { name: 'ada', password: PW.admin },
    headers: { origin: 'https://evil.example' },
  });
  t.equal(foreign.status, 403, 'a login posted from another site');
  t.equal(foreign.body.error.code, 'CSRF');
});

t.test('api-auth loopback: programs here keep working, browsers do not', async (t) => {
  const ledger = await ledgerIn(t, { apiAuth: 'loopback' });
  t.equal((await call(ledger, 'GET', '/api/stock')).status, 200, 'a program on this machine');
  t.equal((await call(ledger, 'PUT', '/api/stock/COF-250', { body: { onHand: 1 } })).status, 200);
  const browsers: Record<string, string>[] = [
    { 'sec-fetch-site': 'same-origin' },
    { origin: 'http://evil.example' },
  ];
  for (const headers of browsers) {
    const r = await call(ledger, 'PUT', '/api/stock/COF-250', { body: { onHand: 5 }, headers });
    t.equal(r.status, 401, `a browser (${Object.keys(headers)[0]})`);
  }
  // A page of another site whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own Host.
  const rebound = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      `${ledger.httpUrl}/api/stock`,
      { headers: { host: 'shop.evil.example:18080' } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
  t.equal(rebound, 401, 'a request addressed to another host name');
  t.equal((await call(ledger, 'GET', '/fleet/live')).status, 401, 'the page always needs a login');
  t.equal((await call(ledger, 'GET', '/api/stock/COF-250')).body.onHand, 1);
});

t.test('the live feed: server-sent events to a logged-in operator', async (t) => {
  const ledger = await ledgerIn(t, { apiAuth: 'loopback' });
  const ada = await login(ledger, 'ada', PW.admin);
  const ac = new AbortController();
  // The feed's whole life in this test is bounded: a missing event fails in seconds, not at tap's limit.
  const feedTimeoutMs = 15_000;
  const res = await fetch(`${ledger.httpUrl}/fleet/events`, {
    headers: { cookie: ada.cookie },
    signal: AbortSignal.any([ac.signal, AbortSignal.timeout(feedTimeoutMs)]),
  });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let seen = '';
  const until = async (pattern: RegExp) => {
    while (!pattern.test(seen)) {
      const { value, done } = await reader.read().catch((err: Error) => {
        throw new Error(
          `no ${pattern} within ${feedTimeoutMs} ms (${err.name}); seen: ${JSON.stringify(seen)}`,
        );
      });
      if (done) throw new Error(`stream ended before ${pattern}`);
      seen += decoder.decode(value);
    }
  };
  await until(/event: hello/);
  t.equal(ledger.live.clientCount, 1);
  // A change through the API is news.
  const delivery = await call(ledger, 'POST', '/api/stock/COF-250/receive', { body: { qty: 1 } });
  t.equal(delivery.status, 200, 'the delivery is booked (else no event would come)');
  await until(/event: change\ndata: \{"what":\[[^\]]*"stock"/);
  t.pass('a change event after a delivery');
  ac.abort();
});

t.test('options: api-auth, deadline, cookies and tokens from flags and the environment', async (t) => {
  const o = parseLedgerArgs(
    ['--api-auth', 'required', '--forward-deadline-hours', '72', '--secure-cookies'],
    {
      LEDGER_API_TOKEN: API_TOKEN,
    },
  );
  t.match(o, { apiAuth: 'required', forwardDeadlineHours: 72, secureCookies: true, apiToken: API_TOKEN });
  t.match(parseLedgerArgs([], {}), { apiAuth: 'required', forwardDeadlineHours: 24, secureCookies: false });
  t.throws(() => parseLedgerArgs(['--api-auth', 'none']), /apiAuth/);
  t.throws(() => parseLedgerArgs([], { LEDGER_API_TOKEN: 'short' }), /apiToken/);
  t.throws(() => parseLedgerArgs(['--forward-deadline-hours', '0']), /forwardDeadlineHours/);
});

t.test('ledger operator add | list | remove', async (t) => {
  const db = `sqlite:${path.join(tmp(t), 'ledger.db')}`;
  const lines: string[] = [];
  const errors: string[] = [];
  const io = (stdin = '') => ({
    stdin: Readable.from([stdin]),
    out: (l: string) => lines.push(l),
    err: (l: string) => errors.push(l),
  });
  t.equal(await runOperatorCli(['add', 'ada', '--role', 'admin', '--db', db], {}, io('from-stdin-pw\n')), 0);
  t.match(JSON.parse(lines.pop()!), { name: 'ada', role: 'admin' });
  t.equal(
    await runOperatorCli(
      ['add', 'ada', '--role', 'viewer', '--db', db],
      { LEDGER_OPERATOR_PASSWORD: 'from-env-pw-1' },
      io(),
    ),
    65,
    'exists already',
  );
  t.match(errors.pop(), /OPERATOR_EXISTS/);
  t.equal(
    await runOperatorCli(
      ['add', 'ada', '--role', 'viewer', '--replace', '--db', db],
      { LEDGER_OPERATOR_PASSWORD: 'from-env-pw-1' },
      io(),
    ),
    0,
  );
  t.equal(
    await runOperatorCli(['add', 'bo', '--role', 'admin', '--password', 'x', '--db', db], {}, io()),
    64,
  );
  t.match(errors.pop(), /not taken from the command line/);
  t.equal(await runOperatorCli(['add', 'bo', '--role', 'root', '--db', db], {}, io('long-enough-pw\n')), 64);
  t.equal(
    await runOperatorCli(['add', 'bo', '--role', 'admin', '--db', db], {}, io('short\n')),
    65,
    'too short',
  );
  t.equal(await runOperatorCli(['list', '--db', db], {}, io()), 0);
  t.match(JSON.parse(lines.pop()!), { name: 'ada', role: 'viewer' });
  const ldb = await openLedgerDb(db);
  t.teardown(() => ldb.close());
  t.match(await listOperators(ldb), [{ name: 'ada', role: 'viewer' }]);
  const row = await ldb.db.selectFrom('operators').selectAll().executeTakeFirstOrThrow();
  t.match(row.password_hash, /^scrypt\$32768\$8\$1\$/, 'a salted scrypt hash');
  t.notMatch(row.password_hash, /from-env-pw-1/);
  t.equal(await runOperatorCli(['remove', 'ada', '--db', db], {}, io()), 0);
  t.equal(await runOperatorCli(['remove', 'ada', '--db', db], {}, io()), 65, 'gone already');
  t.equal(await runOperatorCli(['frobnicate'], {}, io()), 64);
});
