// The register's side of enrolment against a real ledger over HTTP: the token becomes a certificate
// for a key made on the register (0600, the token gone); a lost answer is retried with the same key
// and gets the same certificate; answers that are not for this register are refused and install
// nothing; the background enroller retries with its backoff on injected timers.
import t from 'tap';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { enrolEndpoint, enrolOnce, Enroller, isEnrolled, type EnrolFiles } from '../../cloud-bridge/enrol.js';
import { addEnrolment, listEnrolments } from '../../ledger/enrol/enrolments.js';
import { startTestLedger } from '../support/ledger-fixtures.js';
import { makePki } from '../support/provision-fixtures.js';

const pki = makePki();
t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));

/** A register's tls/ directory as provisioning leaves it with a token. */
function registerFiles(dir: string, token: string | undefined): EnrolFiles {
  const tls = path.join(dir, 'tls');
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  const files = {
    caFile: path.join(tls, 'ca.crt'),
    certFile: path.join(tls, 'device.crt'),
    keyFile: path.join(tls, 'device.key'),
    tokenFile: path.join(tls, 'enrolment.token'),
  };
  writeFileSync(files.caFile, pki.caCrt);
  if (token !== undefined) writeFileSync(files.tokenFile, `${token}\n`, { mode: 0o600 });
  return files;
}

/** The exchange as the register makes it, with fetch: to step in between in tests. */
const post = (u: string, body: string) =>
  fetch(u, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

const ledgerDir = t.testdir();
const ledger = await startTestLedger(t, ledgerDir, {
  enrolCaCert: path.join(pki.dir, 'ca.crt'),
  enrolCaKey: path.join(pki.dir, 'ca.key'),
});
const url = `${ledger.httpUrl}/api/enrol`;

t.test('a token becomes a certificate for a key made here; the token goes', async (t) => {
  const { token } = await addEnrolment(ledger.ldb, { deviceId: 'till-9', storeId: 'harbour' });
  const files = registerFiles(t.testdir(), token);
  t.notOk(isEnrolled(files), 'not enrolled before');
  t.equal(await enrolOnce({ ...files, url, deviceId: 'till-9' }), 'enrolled');
  const cert = new X509Certificate(readFileSync(files.certFile));
  t.equal(cert.subject, 'CN=till-9');
  t.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(files.keyFile))), 'the key and certificate match');
  t.ok(cert.verify(new X509Certificate(pki.caCrt).publicKey), 'signed by the CA on the card');
  t.equal(statSync(files.keyFile).mode & 0o777, 0o600, 'the key is 0600');
  t.equal(statSync(files.certFile).mode & 0o777, 0o600, 'the certificate is 0600');
  t.notOk(existsSync(files.tokenFile), 'the token is removed');
  t.notOk(existsSync(`${files.keyFile}.pending`), 'no pending key left');
  t.ok(isEnrolled(files));
  const [row] = (await listEnrolments(ledger.ldb)).filter((e) => e.deviceId === 'till-9');
  t.equal(row?.serial, cert.serialNumber.toLowerCase(), 'the ledger lists what it issued');

  const again = await enrolOnce({
    ...files,
    url,
    deviceId: 'till-9',
    post: () => Promise.reject(new Error('no request expected')),
  });
  t.equal(again, 'already', 'enrolled: nothing is sent');
});

t.test('the answer is lost: the same key asks again and gets the same certificate', async (t) => {
  const { token } = await addEnrolment(ledger.ldb, { deviceId: 'till-8', storeId: 'harbour' });
  const files = registerFiles(t.testdir(), token);
  let delivered: string | undefined;
  // The ledger issues the certificate; the answer dies on the way (a power cut, a dropped link).
  await t.rejects(
    enrolOnce({
      ...files,
      url,
      deviceId: 'till-8',
      post: async (u, body) => {
        const res = await post(u, body);
        delivered = ((await res.json()) as { certificate: string }).certificate;
        throw new Error('connection reset');
      },
    }),
    { code: 'ENROL_NETWORK' },
  );
  t.ok(delivered, 'the ledger did issue one');
  t.ok(existsSync(`${files.keyFile}.pending`), 'the key is kept for the next attempt');
  t.ok(existsSync(files.tokenFile), 'and the token');
  t.equal(await enrolOnce({ ...files, url, deviceId: 'till-8' }), 'enrolled');
  t.equal(readFileSync(files.certFile, 'utf8'), delivered, 'the same certificate, not a second one');

  // A cut after the key took its name and before the token went: the next start finishes the job.
  writeFileSync(files.tokenFile, `${token}\n`);
  const noRequest = () => Promise.reject(new Error('no request expected'));
  t.equal(await enrolOnce({ ...files, url, deviceId: 'till-8', post: noRequest }), 'already');
  t.notOk(existsSync(files.tokenFile), 'the leftover token is removed');
});

t.test('answers not for this register install nothing', async (t) => {
  const { token } = await addEnrolment(ledger.ldb, { deviceId: 'till-7', storeId: 'harbour' });
  const answer = (certificate: string) => async () => ({
    status: 200,
    body: JSON.stringify({ certificate, ca: pki.caCrt.toString(), notAfter: new Date().toISOString() }),
  });
  const cases: [string, string, RegExp][] = [
    ["another register's certificate", pki.device('till-7').crt.toString(), /not for the key/],
    ['a certificate from another CA', pki.foreign('till-7').crt.toString(), /not for the key/],
    ['not a certificate', 'garbage', /not readable/],
  ];
  for (const [what, certificate, message] of cases) {
    const files = registerFiles(t.testdir(), token);
    await t.rejects(
      enrolOnce({ ...files, url, deviceId: 'till-7', post: answer(certificate) }),
      { code: 'ENROL_BAD_ANSWER', message },
      what,
    );
    t.notOk(existsSync(files.certFile), `${what}: no certificate installed`);
    t.notOk(existsSync(files.keyFile), `${what}: no key installed`);
    t.ok(existsSync(files.tokenFile), `${what}: the token is kept`);
  }
  const files = registerFiles(t.testdir(), token);
  await t.rejects(
    enrolOnce({
      ...files,
      url,
      deviceId: 'till-7',
      post: async () => ({ status: 200, body: '{"certificate": 1}' }),
    }),
    { code: 'ENROL_BAD_ANSWER', message: /without a certificate/ },
  );
});

t.test("the ledger's refusals and a missing token are reported with their codes", async (t) => {
  const wrong = registerFiles(t.testdir(), 'x'.repeat(43));
  await addEnrolment(ledger.ldb, { deviceId: 'till-6', storeId: 'harbour' });
  await t.rejects(enrolOnce({ ...wrong, url, deviceId: 'till-6' }), {
    code: 'ENROL_REJECTED',
    ledgerCode: 'ENROL_REFUSED',
  });
  const none = registerFiles(t.testdir(), undefined);
  await t.rejects(enrolOnce({ ...none, url, deviceId: 'till-6' }), {
    code: 'ENROL_NO_TOKEN',
    message: /provision the card again/,
  });
  await t.rejects(enrolOnce({ ...wrong, url: 'http://ledger.example/api/enrol', deviceId: 'till-6' }), {
    code: 'ENROL_CONFIG',
    message: /https:\/\//,
  });
  t.equal(enrolEndpoint('https://ledger.example'), 'https://ledger.example/api/enrol', 'a bare origin');
  t.equal(
    enrolEndpoint('https://ledger.example/x/enrol'),
    'https://ledger.example/x/enrol',
    'a path as given',
  );

  const withoutCa = await startTestLedger(t, t.testdir());
  const { token } = await addEnrolment(withoutCa.ldb, { deviceId: 'till-6', storeId: 'harbour' });
  const files = registerFiles(t.testdir(), token);
  await t.rejects(enrolOnce({ ...files, url: withoutCa.httpUrl, deviceId: 'till-6' }), {
    code: 'ENROL_REJECTED',
    ledgerCode: 'ENROL_UNAVAILABLE',
  });
});

t.test('the enroller retries with its backoff until it is enrolled', async (t) => {
  const { token } = await addEnrolment(ledger.ldb, { deviceId: 'till-5', storeId: 'harbour' });
  const files = registerFiles(t.testdir(), token);
  const scheduled: { fn: () => void; ms: number }[] = [];
  const timers = {
    setTimeout: (fn: () => void, ms: number) => scheduled.push({ fn, ms }),
    clearTimeout: () => {},
  };
  let down = 2;
  const changes: string[] = [];
  let onChange: () => void = () => {};
  const enroller = new Enroller({
    ...files,
    url,
    deviceId: 'till-5',
    timers,
    random: () => 0.5,
    backoff: { initialMs: 1000, maxMs: 4000 },
    post: async (u, body) => {
      if (down-- > 0) throw new Error('ECONNREFUSED');
      const res = await post(u, body);
      return { status: res.status, body: await res.text() };
    },
    onChange: (s) => {
      changes.push(s.state);
      onChange();
    },
  });
  const next = () => new Promise<void>((resolve) => (onChange = resolve));
  let changed = next();
  enroller.start();
  await changed;
  t.match(enroller.status(), { state: 'waiting', attempts: 1, lastError: { code: 'ENROL_NETWORK' } });
  t.same(
    scheduled.map((s) => s.ms),
    [750],
    'first retry: half to all of 1 s, jittered (0.5 → 750 ms)',
  );
  changed = next();
  scheduled.shift()!.fn();
  await changed;
  t.equal(scheduled[0]?.ms, 1500, 'then doubling');
  changed = next();
  scheduled.shift()!.fn();
  await changed;
  t.same(changes, ['waiting', 'waiting', 'enrolled']);
  t.equal(enroller.status().state, 'enrolled');
  t.equal(scheduled.length, 0, 'no more attempts');
  t.ok(isEnrolled(files));
  await enroller.stop();
});
