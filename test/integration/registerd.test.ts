// registerd as a real process, driven through its control socket: a shift's work, kill -9 in the
// middle of a sale and after one, and bad input that must not disturb anyone else.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlCaller, kill9, startDaemon } from '../support/registerd-process.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE, MANAGER, PINS, code } from '../support/till-fixtures.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** One raw line to the socket, one line back. */
function rawLine(socket: string, line: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket);
    let got = '';
    c.setEncoding('utf8');
    c.on('connect', () => c.write(line));
    c.on('data', (d: string) => {
      got += d;
      const nl = got.indexOf('\n');
      if (nl >= 0) {
        c.destroy();
        resolve(got.slice(0, nl));
      }
    });
    c.on('error', reject);
  });
}

t.test('registerd through its socket, across kill -9', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'regd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = await bundle(path.join(here, '../../appliance/registerd.ts'), dir);
  const config = path.join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      deviceId: 'till-it',
      storeId: 'demo-store',
      stateDir: path.join(dir, 'state'),
      clock: { assumeTrusted: true },
      seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
    }),
  );
  const socket = path.join(dir, 'state', 'control.sock');
  const call = controlCaller(socket);

  let d = await startDaemon(bin, config);
  t.teardown(() => d.proc.kill('SIGKILL'));
  t.match(await call('status'), { deviceId: 'till-it', session: null, catalogVersion: 1 });
  await t.rejects(call('cashier.login', { cashierId: 'ana', pin: '0000' }), { code: 'WRONG_PIN' });
  await call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
  await call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });

  await call('sale.scan', { code: code('COF-250') });
  await call('sale.scan', { code: code('WAT-150') });
  t.match(await call('sale.tender', { kind: 'cash', amountMinor: 1000 }), {
    completed: true,
    receiptNo: 1,
    changeMinor: 262,
  });
  await call('sale.scan', { code: code('MUG-CER') });
  t.match(await call('sale.tender', { kind: 'card' }), { completed: true, receiptNo: 2 });
  await t.rejects(call('cash.payout', { amountMinor: 500, reason: 'window cleaner' }), {
    code: 'MANAGER_REQUIRED',
  });
  await call('cash.payout', { amountMinor: 500, reason: 'window cleaner', approval: MANAGER });

  // kill -9 in the middle of a sale: the basket comes back.
  await call('sale.scan', { code: code('CHO-100') });
  await call('sale.scan', { code: code('APL-1KG') });
  await kill9(d);
  d = await startDaemon(bin, config);
  const status = await call('status');
  t.match(status, {
    session: { cashierId: 'ana' },
    sale: { lines: [{ sku: 'CHO-100' }, { sku: 'APL-1KG' }] },
  });
  t.match(await call('sale.tender', { kind: 'cash', amountMinor: 498 }), { completed: true, receiptNo: 3 });

  // kill -9 after a sale: the day's totals are what they were.
  const x = await call('shift.report');
  await kill9(d);
  d = await startDaemon(bin, config);
  t.same(await call('shift.report'), x, 'X report unchanged by a restart');

  // Bad input: a clear error each time, and the daemon keeps serving.
  t.match(JSON.parse(await rawLine(socket, '{not json\n')), { id: null, error: { code: 'BAD_REQUEST' } });
  t.match(JSON.parse(await rawLine(socket, '{"id":1,"method":"sale.fly"}\n')), {
    id: 1,
    error: { code: 'UNKNOWN_METHOD' },
  });
  t.match(JSON.parse(await rawLine(socket, '{"id":2,"method":"sale.scan","params":{"code":7}}\n')), {
    id: 2,
    error: { code: 'BAD_PARAMS' },
  });
  t.match(JSON.parse(await rawLine(socket, Buffer.alloc(200 * 1024, 'x'))), {
    error: { code: 'LINE_TOO_LONG' },
  });
  const half = createConnection(socket);
  await new Promise((r) => half.on('connect', r));
  half.write('{"id":3,"method":"sale.scan","params":{"code":"' + code('MUG-CER') + '"}}\n');
  half.destroy(); // gone before the answer
  t.match(await call('status'), { deviceId: 'till-it' }, 'still serving');

  // Close the shift with a discrepancy: a manager signs it off.
  const sale = (await call('status')).sale as { dueMinor: number } | null;
  if (sale) await call('sale.tender', { kind: 'cash', amountMinor: sale.dueMinor });
  const expected = (await call('shift.report')).expectedCashMinor as number;
  await t.rejects(call('shift.close', { counts: { '1': expected - 1000 } }), { code: 'MANAGER_REQUIRED' });
  const z = await call('shift.close', { counts: { '1': expected - 1000 }, approval: MANAGER });
  t.match(z, { zNo: 1, discrepancyMinor: -1000, approvedBy: 'mia', totals: { byTender: { card: 899 } } });

  d.proc.kill('SIGTERM');
  t.equal(await d.exited, 0, 'SIGTERM stops it cleanly');
});
