// A register provisioned with a one-time token, end to end: an operator issues the token
// (`ledger enrol add`), the card carries it with the CA and an https:// enrolment URL, provisioning
// installs it, registerd sells at once (offline) while it enrols — its own key, the token, the
// ledger over HTTPS — and then connects to a Mosquitto that takes only client certificates from
// the fleet CA (docs/mosquitto/), as the CN the ledger signed. The sale lands in the books.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../../appliance/config.js';
import { silentLogger } from '../../appliance/log.js';
import { DATA_FILES, provision } from '../../appliance/provision/apply.js';
import { startRegisterd } from '../../appliance/registerd.js';
import { runEnrolCli } from '../../ledger/enrol/cli.js';
import { startTestLedger } from '../support/ledger-fixtures.js';
import { startTlsMosquitto } from '../support/mosquitto-tls.js';
import { MANAGER_PIN, provisionText, tempRoot, writeBoot } from '../support/provision-fixtures.js';
import { waitFor } from '../support/sync-fixtures.js';
import { DEMO_CATALOG_FILE, code } from '../support/till-fixtures.js';

const broker = await startTlsMosquitto(t);
broker.issue('ledger', 'ledger');
const ledgerDir = t.testdir();
const ledger = await startTestLedger(t, ledgerDir, {
  mqtt: broker.url,
  shared: true,
  mqttCa: broker.file('ca.crt'),
  mqttCert: broker.file('ledger.crt'),
  mqttKey: broker.file('ledger.key'),
  enrolCaCert: broker.file('ca.crt'),
  enrolCaKey: broker.file('ca.key'),
  // HTTPS with a server certificate from the fleet CA: the register trusts nothing else.
  httpsCert: broker.file('server.crt'),
  httpsKey: broker.file('server.key'),
});
t.match(ledger.httpUrl, /^https:\/\/127\.0\.0\.1:\d+$/, 'the ledger speaks HTTPS');
const enrolUrl = `${ledger.httpUrl}/api/enrol`;

t.test('token on the card → certificate → a sale in the books', async (t) => {
  // The operator issues the token for till-e at the back office, against the running ledger's books.
  const printed: string[] = [];
  const said: string[] = [];
  const status = await runEnrolCli(
    ['add', 'till-e', '--store', 'store-1', '--db', `sqlite:${path.join(ledgerDir, 'ledger.db')}`],
    {},
    { out: (l) => printed.push(l), err: (l) => said.push(l) },
  );
  t.equal(status, 0, said.join('\n'));
  t.match(said.join('\n'), /till-e \(store store-1\) until .*shown only now/);
  const [token] = printed;
  t.match(token, /^[A-Za-z0-9_-]{43}$/, 'the token, printed once');

  // The card: provision.txt with the enrolment URL, the CA, the token. No key anywhere.
  const r = tempRoot();
  t.teardown(() => rmSync(r.root, { recursive: true, force: true }));
  writeBoot(r.boot, {
    provision: provisionText({ deviceId: 'till-e', storeId: 'store-1', brokerUrl: broker.url, enrolUrl }),
    ca: readFileSync(broker.file('ca.crt')),
    token: `${token}\n`,
  });
  t.equal(provision({ bootDir: r.boot, dataDir: r.data, etcDir: r.etc }).outcome, 'applied');
  const config = loadConfig(path.join(r.data, DATA_FILES.config), {});
  config.seed.catalogFile = DEMO_CATALOG_FILE; // the store's catalog, as the ledger would publish it
  config.clock.assumeTrusted = true;

  const daemon = await startRegisterd(config, { log: silentLogger });
  t.teardown(() => daemon.stop());
  const call = (method: string, params: unknown = {}) => daemon.register.execute(method, params);
  // Selling does not wait for the certificate.
  await call('cashier.login', { cashierId: 'mia', pin: MANAGER_PIN });
  await call('shift.open', { floatCounts: { '1000': 2 } });
  await call('sale.scan', { code: code('COF-250') });
  const sale = (await call('sale.tender', { kind: 'cash' })) as {
    completed: boolean;
    receipt: { saleId: string };
  };
  t.ok(sale.completed, 'a sale before the register has its certificate');

  await waitFor('the register to enrol and drain its queue', async () => {
    const s = (await call('status')) as {
      sync?: { state: string; pending: number; enrolment?: { state: string } };
    };
    return s.sync?.enrolment?.state === 'enrolled' && s.sync.state === 'connected' && s.sync.pending === 0;
  });
  const cert = new X509Certificate(readFileSync(path.join(r.data, DATA_FILES.cert)));
  t.equal(cert.subject, 'CN=till-e', 'the certificate the ledger signed');
  t.notOk(existsSync(path.join(r.data, DATA_FILES.token)), 'the token is gone from the data partition');
  const booked = await ledger.ldb.db
    .selectFrom('sales')
    .select(['sale_id', 'device_id'])
    .where('device_id', '=', 'till-e')
    .execute();
  t.same(
    booked.map((b) => b.sale_id),
    [sale.receipt.saleId],
    'the sale is in the books, once',
  );
  t.ok(
    broker.log.some((l) => /New client connected .* as register-till-e .* u'till-e'/.test(l)),
    'mosquitto took the certificate CN as the user',
  );
});

t.test('the ledger refuses HTTPS files that do not belong together, before it listens', async (t) => {
  await t.rejects(
    startTestLedger(t, t.testdir(), {
      httpsCert: broker.file('server.crt'),
      httpsKey: broker.file('ca.key'),
    }),
    { name: 'LedgerUsageError', message: /^HTTPS: .*key values mismatch/ },
  );
  await t.rejects(startTestLedger(t, t.testdir(), { httpsCert: broker.file('server.crt') }), {
    message: /--https-cert and --https-key go together/,
  });
});
