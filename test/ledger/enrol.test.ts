// Enrolment in the books, on both databases: a token is redeemed once, for one key; a retry with that
// key gets the same certificate; another key, another token, an expired or removed enrolment are
// refused; the certificate is what Mosquitto needs (CN = device, clientAuth, not a CA) and chains to
// the fleet CA as openssl sees it. Also the CA's own checks at start-up.
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CertificateAuthority } from '../../ledger/enrol/authority.js';
import {
  addEnrolment,
  listEnrolments,
  redeemEnrolment,
  removeEnrolment,
} from '../../ledger/enrol/enrolments.js';
import { certificateRequest, newDeviceKey } from '../../cloud-bridge/enrol.js';
import { runEnrolCli } from '../../ledger/enrol/cli.js';
import { forEachDialect } from '../support/ledger-fixtures.js';
import { makePki } from '../support/provision-fixtures.js';

const pki = makePki();
t.teardown(() => execFileSync('rm', ['-rf', pki.dir]));
const caFile = path.join(pki.dir, 'ca.crt');
const caKeyFile = path.join(pki.dir, 'ca.key');
const ca = await CertificateAuthority.load(readFileSync(caFile), readFileSync(caKeyFile));
// A day after the test CA was made (by openssl, on this machine's clock): every time here is injected.
const NOW = Date.parse(new X509Certificate(readFileSync(caFile)).validFrom) + 24 * 3_600_000;
const HOUR = 3_600_000;

/** openssl's own verdict on a certificate as a TLS client certificate from this CA. */
function opensslVerify(pem: string, ca = caFile): { ok: boolean; out: string } {
  const file = path.join(pki.dir, `verify-${Math.random().toString(36).slice(2)}.crt`);
  writeFileSync(file, pem);
  // -attime: the certificate is valid from NOW, which is not this machine's clock.
  const r = spawnSync(
    'openssl',
    [
      'verify',
      '-CAfile',
      ca,
      '-purpose',
      'sslclient',
      '-attime',
      String(Math.round((NOW + 2 * HOUR) / 1000)),
      file,
    ],
    { encoding: 'utf8' },
  );
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

async function rejects(t: Test, p: Promise<unknown>, code: string, what: string) {
  await t.rejects(p, { code }, what);
}

forEachDialect(t, 'a token is redeemed once, for one key', async (t, { ldb }) => {
  const { token, enrolment } = await addEnrolment(ldb, { deviceId: 'till-9', storeId: 'harbour' }, NOW);
  t.match(token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  t.equal(enrolment.expiresAt, NOW + 168 * HOUR, 'a week by default');
  const stored = JSON.stringify(await ldb.db.selectFrom('enrolments').selectAll().execute());
  t.notOk(stored.includes(token), 'the books keep a hash of the token, never the token');

  const key = newDeviceKey();
  const csr = await certificateRequest(key, 'till-9');
  const answer = await redeemEnrolment(ldb, ca, { deviceId: 'till-9', token, csr }, NOW + HOUR);
  const cert = new X509Certificate(answer.certificate);
  t.equal(cert.subject, 'CN=till-9', 'CN = the device id: the broker takes it as the MQTT user');
  t.notOk(cert.ca, 'not a CA');
  t.ok(cert.checkPrivateKey(createPrivateKey(key)), 'for the key the register made');
  t.match(cert.keyUsage ?? [], ['1.3.6.1.5.5.7.3.2'], 'extended key usage: clientAuth only');
  t.equal(answer.ca, readFileSync(caFile, 'utf8').replace(/\n?$/, '\n'), 'the CA comes back with it');
  t.equal(Date.parse(answer.notAfter), NOW + HOUR + 825 * 24 * HOUR, '825 days');
  const verdict = opensslVerify(answer.certificate);
  t.ok(verdict.ok, `openssl verify -purpose sslclient: ${verdict.out.trim()}`);

  const again = await redeemEnrolment(ldb, ca, { deviceId: 'till-9', token, csr }, NOW + 2 * HOUR);
  t.equal(again.certificate, answer.certificate, 'a retry with the same key gets the same certificate');
  const otherCsr = await certificateRequest(newDeviceKey(), 'till-9');
  await rejects(
    t,
    redeemEnrolment(ldb, ca, { deviceId: 'till-9', token, csr: otherCsr }, NOW),
    'ENROL_USED',
    'another key',
  );
  const [listed] = await listEnrolments(ldb);
  t.match(listed, { deviceId: 'till-9', storeId: 'harbour', redeemedAt: NOW + HOUR });
  t.equal(listed!.serial, cert.serialNumber.toLowerCase(), 'the serial issued is listed');
});

forEachDialect(t, 'wrong, unknown, expired, replaced and removed tokens are refused', async (t, { ldb }) => {
  const first = await addEnrolment(ldb, { deviceId: 'till-1', storeId: 's1', validHours: 2 }, NOW);
  const other = await addEnrolment(ldb, { deviceId: 'till-2', storeId: 's1' }, NOW);
  const csr = await certificateRequest(newDeviceKey(), 'till-1');
  const redeem = (deviceId: string, token: string, at = NOW) =>
    redeemEnrolment(ldb, ca, { deviceId, token, csr }, at);
  await rejects(t, redeem('till-1', other.token), 'ENROL_REFUSED', "another device's token");
  await rejects(t, redeem('till-3', first.token), 'ENROL_REFUSED', 'a device with no enrolment');
  await rejects(t, redeem('till-1', first.token, NOW + 3 * HOUR), 'ENROL_EXPIRED', 'after its hours');
  await rejects(
    t,
    addEnrolment(ldb, { deviceId: 'till-1', storeId: 's1' }, NOW),
    'ENROLMENT_EXISTS',
    'a second token needs --replace',
  );
  const replaced = await addEnrolment(ldb, { deviceId: 'till-1', storeId: 's1', replace: true }, NOW);
  await rejects(t, redeem('till-1', first.token), 'ENROL_REFUSED', 'the replaced token');
  t.ok((await redeem('till-1', replaced.token)).certificate, 'the new one works');
  t.equal(await removeEnrolment(ldb, 'till-2'), true);
  await rejects(t, redeem('till-2', other.token), 'ENROL_REFUSED', 'a removed enrolment');
  t.equal(await removeEnrolment(ldb, 'till-2'), false, 'removing twice');
  await rejects(
    t,
    addEnrolment(ldb, { deviceId: 'till/1', storeId: 's1' }),
    'BAD_PARAMS',
    'a device id for a topic',
  );
  await rejects(
    t,
    addEnrolment(ldb, { deviceId: 'till-4', storeId: 's1', validHours: 0 }),
    'BAD_PARAMS',
    '0 hours',
  );
  await rejects(
    t,
    addEnrolment(ldb, { deviceId: 'till-4', storeId: 's1', validHours: 24 * 91 }),
    'BAD_PARAMS',
    '91 days',
  );
});

forEachDialect(t, 'two keys redeem one token at once: exactly one certificate', async (t, { ldb, open }) => {
  const { token } = await addEnrolment(ldb, { deviceId: 'till-7', storeId: 's1' }, NOW);
  const [a, b] = await Promise.all([
    certificateRequest(newDeviceKey(), 'till-7'),
    certificateRequest(newDeviceKey(), 'till-7'),
  ]);
  const second = ldb.dialect === 'postgres' ? await open() : ldb;
  const results = await Promise.allSettled([
    redeemEnrolment(ldb, ca, { deviceId: 'till-7', token, csr: a }, NOW),
    redeemEnrolment(second, ca, { deviceId: 'till-7', token, csr: b }, NOW),
  ]);
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one certificate');
  const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
  t.match(refused?.reason, { code: 'ENROL_USED' }, 'the other key is told the token is used');
});

t.test('the request is checked: readable, signed by its key, a key we accept', async (t) => {
  const good = await certificateRequest(newDeviceKey(), 'till-1');
  // Flip a byte inside the signature (the end of the DER): the request no longer verifies.
  const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 5] ^= 0x01;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await t.rejects(ca.issue(tampered, 'till-1', NOW), {
    code: 'BAD_PARAMS',
    message: /not signed by its own key/,
  });
  await t.rejects(
    ca.issue('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', 'till-1', NOW),
    {
      code: 'BAD_PARAMS',
      message: /not a readable/,
    },
  );
  // A 1024-bit RSA request, made by openssl.
  const dir = pki.dir;
  execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-newkey',
      'rsa:1024',
      '-nodes',
      '-keyout',
      'weak.key',
      '-subj',
      '/CN=till-1',
      '-out',
      'weak.csr',
    ],
    {
      cwd: dir,
      stdio: 'ignore',
    },
  );
  await t.rejects(ca.issue(readFileSync(path.join(dir, 'weak.csr'), 'utf8'), 'till-1', NOW), {
    code: 'BAD_PARAMS',
    message: /RSA key of at least 2048 bits/,
  });
  // An RSA-2048 request from openssl is fine, and gets keyEncipherment too.
  execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'rsa.key',
      '-subj',
      '/CN=whatever',
      '-out',
      'rsa.csr',
    ],
    {
      cwd: dir,
      stdio: 'ignore',
    },
  );
  const issued = await ca.issue(readFileSync(path.join(dir, 'rsa.csr'), 'utf8'), 'till-1', NOW);
  t.equal(new X509Certificate(issued.pem).subject, 'CN=till-1', "the request's own subject is not taken");
  t.ok(opensslVerify(issued.pem).ok, 'openssl accepts it');
});

t.test('the CA is checked at start-up: a CA, its own key, readable, an RSA CA too', async (t) => {
  const dir = pki.dir;
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  await t.rejects(
    CertificateAuthority.load(pki.device('till-1').crt, pki.device('till-1').key),
    /not a CA certificate/,
  );
  await t.rejects(
    CertificateAuthority.load(readFileSync(caFile), readFileSync(path.join(dir, 'other-ca.key'))),
    /does not match/,
  );
  await t.rejects(
    CertificateAuthority.load('not a certificate', readFileSync(caKeyFile)),
    /not a readable PEM certificate/,
  );
  ssl('ec', '-in', 'ca.key', '-aes256', '-passout', 'pass:secret', '-out', 'ca-enc.key');
  await t.rejects(
    CertificateAuthority.load(readFileSync(caFile), readFileSync(path.join(dir, 'ca-enc.key'))),
    /encrypted/,
  );

  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa-ca.key', '-sha256', '-days', '3650', '-subj', '/CN=RSA Fleet CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'rsa-ca.crt'); // prettier-ignore
  const rsa = await CertificateAuthority.load(
    readFileSync(path.join(dir, 'rsa-ca.crt')),
    readFileSync(path.join(dir, 'rsa-ca.key')),
  );
  const issued = await rsa.issue(await certificateRequest(newDeviceKey(), 'till-5'), 'till-5', NOW);
  const verdict = opensslVerify(issued.pem, path.join(dir, 'rsa-ca.crt'));
  t.ok(verdict.ok, `an RSA CA signs an EC register key: ${verdict.out.trim()}`);
  t.notOk(opensslVerify(issued.pem).ok, 'and only that CA verifies it');
});

t.test(
  'ledger enrol: add prints the token once, list, remove, and refusals with their statuses',
  async (t) => {
    const db = `sqlite:${path.join(t.testdir(), 'books', 'ledger.db')}`;
    const run = async (...argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const status = await runEnrolCli(
        argv,
        {},
        { out: (l) => out.push(l), err: (l) => err.push(l), nowMs: () => NOW },
      );
      return { status, out, err: err.join('\n') };
    };
    const added = await run('add', 'till-1', '--store', 'harbour', '--valid-hours=48', '--db', db);
    t.equal(added.status, 0, added.err);
    t.match(added.out, [/^[A-Za-z0-9_-]{43}$/], 'the token alone on stdout');
    t.match(
      added.err,
      new RegExp(`till-1 \\(store harbour\\) until ${new Date(NOW + 48 * HOUR).toISOString()}`),
    );
    const again = await run('add', 'till-1', '--store', 'harbour', '--db', db);
    t.equal(again.status, 65);
    t.match(again.err, /ENROLMENT_EXISTS/);
    const listed = await run('list', '--db', db);
    t.match(JSON.parse(listed.out[0]!), {
      deviceId: 'till-1',
      storeId: 'harbour',
      expiresAt: NOW + 48 * HOUR,
      redeemedAt: null,
    });
    t.notOk(listed.out.join('').includes(added.out[0]!), 'list never shows a token');
    t.equal((await run('remove', 'till-1', '--db', db)).status, 0);
    t.equal((await run('remove', 'till-1', '--db', db)).status, 65, 'nothing to remove');
    t.equal((await run('add', 'till-1', '--db', db)).status, 64, 'add needs --store');
    t.equal(
      (await run('add', 'till-1', '--store', 'h', '--token', 'x', '--db', db)).status,
      64,
      'no token from argv',
    );
    const badHours = await run('add', 'till-2', '--store', 'h', '--valid-hours', 'soon', '--db', db);
    t.equal(badHours.status, 65);
    t.match(badHours.err, /BAD_PARAMS: valid hours/);
  },
);
