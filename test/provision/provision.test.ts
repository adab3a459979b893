// First-boot provisioning against a temporary root: a good provisioning applies once, a re-run changes
// nothing, and every bad one is refused with its field named and nothing changed on either partition.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../../appliance/config.js';
import { CMDLINE_FILE, DATA_FILES, provision } from '../../appliance/provision/apply.js';
import { BOOT_FILES, BOOT_FOLDER, ProvisionError } from '../../appliance/provision/format.js';
import { main, type MainIo } from '../../appliance/provision/main.js';
import { CashierListSchema, verifyPin } from '../../appliance/till/cashiers.js';
import {
  goodBoot,
  makePki,
  MANAGER_PIN,
  MANAGER_PIN_HASH,
  plain,
  provisionText,
  snapshot,
  tempRoot,
  writeBoot,
  type BootContent,
  type Root,
} from '../support/provision-fixtures.js';

const pki = makePki();
t.teardown(() => fs.rmSync(pki.dir, { recursive: true, force: true }));

const roots: Root[] = [];
t.teardown(() => roots.forEach((r) => fs.rmSync(r.root, { recursive: true, force: true })));
function root(content?: BootContent): Root {
  const r = tempRoot();
  roots.push(r);
  if (content) writeBoot(r.boot, content);
  return r;
}
const run = (r: Root) => provision({ bootDir: r.boot, dataDir: r.data, etcDir: r.etc });
const mode = (file: string) => fs.statSync(file).mode & 0o777;
const bootFile = (r: Root, name: string) => path.join(r.boot, BOOT_FOLDER, name);
const dataFile = (r: Root, rel: string) => path.join(r.data, rel);

t.test('a good provisioning applies: config, credentials 0600, manager, time zone, machine-id', async (t) => {
  const r = root(goodBoot(pki));
  const { crt, key } = pki.device('till-a');
  const result = run(r);
  t.equal(result.outcome, 'applied');
  t.same(result.changed, ['machine-id', 'tls', 'cashiers', 'config', 'timezone', 'stamp', 'secrets-removed']);

  // registerd's own loader accepts the config, and the files it names are the ones given.
  const config = loadConfig(dataFile(r, DATA_FILES.config), {});
  t.equal(config.deviceId, 'till-a');
  t.equal(config.storeId, 'store-1');
  t.equal(config.stateDir, path.resolve(r.data));
  t.equal(config.cloud.brokerUrl, 'mqtts://mqtt.example.com:8883');
  t.ok(config.cloud.tls);
  t.same(fs.readFileSync(config.cloud.tls!.certFile), crt);
  t.same(fs.readFileSync(config.cloud.tls!.keyFile), key);
  t.same(fs.readFileSync(config.cloud.tls!.caFile), pki.caCrt);
  for (const rel of [
    DATA_FILES.config,
    DATA_FILES.ca,
    DATA_FILES.cert,
    DATA_FILES.key,
    DATA_FILES.cashiersSeed,
    DATA_FILES.stamp,
  ])
    t.equal(mode(dataFile(r, rel)), 0o600, `${rel} is 0600`);
  t.equal(mode(dataFile(r, DATA_FILES.tlsDir)), 0o700, 'tls/ is 0700');

  // The initial manager is registerd's cashier seed, with the hash only.
  const seed = CashierListSchema.parse(JSON.parse(fs.readFileSync(config.seed.cashiersFile!, 'utf8')));
  t.equal(seed.storeId, 'store-1');
  t.same(
    seed.cashiers.map((c) => [c.id, c.name, c.role]),
    [['mia', 'Mia Manager', 'manager']],
  );
  t.ok(verifyPin(MANAGER_PIN, seed.cashiers[0]!.pinHash));
  t.notMatch(fs.readFileSync(config.seed.cashiersFile!, 'utf8'), new RegExp(`"${MANAGER_PIN}"`));

  const machineId = fs.readFileSync(dataFile(r, DATA_FILES.machineId), 'utf8');
  t.match(machineId, /^[0-9a-f]{32}\n$/);
  t.equal(mode(dataFile(r, DATA_FILES.machineId)), 0o444);

  t.equal(fs.readFileSync(path.join(r.etc, 'timezone'), 'utf8'), 'Europe/Berlin\n');
  t.equal(fs.readlinkSync(path.join(r.etc, 'localtime')), '/usr/share/zoneinfo/Europe/Berlin');

  // The key left the boot partition; the public files stay (they identify the provisioning).
  t.notOk(fs.existsSync(bootFile(r, BOOT_FILES.key)), 'device.key removed from the boot partition');
  for (const f of [BOOT_FILES.provision, BOOT_FILES.ca, BOOT_FILES.cert])
    t.ok(fs.existsSync(bootFile(r, f)), f);
  t.same(
    fs.readdirSync(r.data).filter((n) => n.endsWith('.tmp')),
    [],
    'no temp files left',
  );
});

t.test('a second run changes nothing, on any partition', async (t) => {
  const r = root(goodBoot(pki));
  t.equal(run(r).outcome, 'applied');
  const before = plain(snapshot(r.root));
  const again = run(r);
  t.equal(again.outcome, 'unchanged');
  t.same(again.changed, []);
  t.same(plain(snapshot(r.root)), before, 'every file, mode and mtime as it was');
  // Once the operator removes the provisioning files, the register still counts as provisioned.
  fs.rmSync(path.join(r.boot, BOOT_FOLDER), { recursive: true });
  t.equal(run(r).outcome, 'not-present');
});

t.test('the machine-id is made once and survives a re-provisioning', async (t) => {
  const r = root(goodBoot(pki));
  run(r);
  const id = fs.readFileSync(dataFile(r, DATA_FILES.machineId), 'utf8');
  writeBoot(r.boot, goodBoot(pki, 'till-a', { timeZone: 'UTC' }));
  const result = run(r);
  t.equal(result.outcome, 'applied');
  t.notOk(result.changed.includes('machine-id'));
  t.same(result.changed, ['timezone', 'stamp', 'secrets-removed'], 'only what differs is rewritten');
  t.equal(fs.readFileSync(dataFile(r, DATA_FILES.machineId), 'utf8'), id);
  t.equal(fs.readlinkSync(path.join(r.etc, 'localtime')), '/usr/share/zoneinfo/UTC');
});

t.test('an enrolment token instead of a certificate', async (t) => {
  const token = 'tok_' + 'A1b2C3d4'.repeat(6);
  const enrolUrl = 'https://ledger.example.com/api/enrol';
  const r = root({ provision: provisionText({ enrolUrl }), ca: pki.caCrt, token: `${token}\n` });
  t.equal(run(r).outcome, 'applied');
  t.equal(fs.readFileSync(dataFile(r, DATA_FILES.token), 'utf8'), `${token}\n`);
  t.equal(mode(dataFile(r, DATA_FILES.token)), 0o600);
  t.notOk(fs.existsSync(bootFile(r, BOOT_FILES.token)), 'the token left the boot partition');
  const config = loadConfig(dataFile(r, DATA_FILES.config), {});
  t.equal(config.cloud.brokerUrl, 'mqtts://mqtt.example.com:8883');
  t.same(
    config.cloud.tls,
    {
      caFile: dataFile(r, DATA_FILES.ca),
      certFile: dataFile(r, DATA_FILES.cert),
      keyFile: dataFile(r, DATA_FILES.key),
    },
    'where the enrolled certificate and key will go',
  );
  t.notOk(fs.existsSync(dataFile(r, DATA_FILES.cert)), 'no client certificate yet');
  t.same(config.cloud.enrol, { url: enrolUrl, tokenFile: dataFile(r, DATA_FILES.token) }, 'registerd enrols');
  t.equal(run(r).outcome, 'unchanged');
});

const garbageCert = '-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
const bad: [string, (b: BootContent) => BootContent, RegExp][] = [
  [
    'a missing field',
    (b) => ({ ...b, provision: provisionText({ storeId: undefined }) }),
    /provision\.txt: storeId: missing/,
  ],
  [
    'an mqtt:// broker URL',
    (b) => ({ ...b, provision: provisionText({ brokerUrl: 'mqtt://mqtt.example.com:1883' }) }),
    /provision\.txt line 4: brokerUrl: mqtt:\/\/ is refused/,
  ],
  [
    'a broker URL with a path',
    (b) => ({ ...b, provision: provisionText({ brokerUrl: 'mqtts://host:8883/x' }) }),
    /brokerUrl: an mqtts:\/\/ URL/,
  ],
  [
    'a certificate that is not one',
    (b) => ({ ...b, cert: garbageCert }),
    /device\.crt: not a readable X\.509 certificate/,
  ],
  [
    'a certificate file holding a key',
    (b) => ({ ...b, cert: pki.device('till-a').key }),
    /device\.crt: not a PEM certificate/,
  ],
  [
    "another CA's certificate",
    (b) => ({ ...b, cert: pki.foreign('till-a').crt, key: pki.foreign('till-a').key }),
    /device\.crt: not signed by ca\.crt/,
  ],
  [
    "another device's certificate",
    (b) => ({ ...b, cert: pki.device('till-b').crt, key: pki.device('till-b').key }),
    /device\.crt: its CN is "till-b", not the deviceId "till-a"/,
  ],
  [
    'a key not matching the certificate',
    (b) => ({ ...b, key: pki.device('till-b').key }),
    /device\.key: does not match the public key of device\.crt/,
  ],
  ['a certificate without its key', (b) => ({ ...b, key: undefined }), /device\.key: missing/],
  ['no credentials at all', (b) => ({ ...b, cert: undefined, key: undefined }), /device\.crt: missing/],
  ['a certificate and a token', (b) => ({ ...b, token: 'A'.repeat(40) }), /enrolment\.token: .*not both/],
  [
    'a CA file that is not a CA',
    (b) => ({ ...b, ca: pki.device('till-a').crt }),
    /ca\.crt: not a CA certificate/,
  ],
  ['no CA', (b) => ({ ...b, ca: undefined }), /ca\.crt: missing/],
  [
    'an unknown key',
    (b) => ({ ...b, provision: provisionText() + 'colour = red\n' }),
    /provision\.txt line 9: unknown key "colour"/,
  ],
  [
    'a misspelt key',
    (b) => ({ ...b, provision: provisionText({ storeId: undefined, storeID: 'store-1' }) }),
    /unknown key "storeID"/,
  ],
  [
    'a repeated key',
    (b) => ({ ...b, provision: provisionText() + 'deviceId = till-a\n' }),
    /line 9: deviceId repeats line 2/,
  ],
  [
    'a line that is not key = value',
    (b) => ({ ...b, provision: provisionText() + 'export FOO\n' }),
    /line 9: not a "key = value" line/,
  ],
  [
    'an unknown time zone',
    (b) => ({ ...b, provision: provisionText({ timeZone: 'Mars/Olympus' }) }),
    /timeZone: unknown time zone "Mars\/Olympus"/,
  ],
  [
    'a time zone in the wrong case',
    (b) => ({ ...b, provision: provisionText({ timeZone: 'europe/berlin' }) }),
    /timeZone: write the time zone as "Europe\/Berlin"/,
  ],
  [
    'a time zone that is a path',
    (b) => ({ ...b, provision: provisionText({ timeZone: '../../etc/passwd' }) }),
    /timeZone: an IANA time zone name/,
  ],
  [
    'a bad device id',
    (b) => ({ ...b, provision: provisionText({ deviceId: 'till/a' }) }),
    /deviceId: letters, digits/,
  ],
  [
    'a plain PIN instead of its hash',
    (b) => ({ ...b, provision: provisionText({ 'manager.pinHash': '1234' }) }),
    /manager\.pinHash: a scrypt/,
  ],
  [
    'a token without an enrolment URL',
    (b) => ({ ...b, cert: undefined, key: undefined, token: 'A'.repeat(40) }),
    /provision\.txt: enrolUrl: missing/,
  ],
  [
    'an enrolment URL that is not https',
    (b) => ({
      ...b,
      provision: provisionText({ enrolUrl: 'http://ledger.example.com/api/enrol' }),
      cert: undefined,
      key: undefined,
      token: 'A'.repeat(40),
    }),
    /provision\.txt line \d+: enrolUrl: an https:\/\/ URL of the ledger/,
  ],
  [
    'a token of the wrong shape',
    (b) => ({ ...b, cert: undefined, key: undefined, token: 'short' }),
    /enrolment\.token: one line of 32 to 256/,
  ],
  [
    'a file that is not UTF-8',
    (b) => ({ ...b, provision: Buffer.from([0x64, 0x65, 0xff, 0xfe, 0x0a]) }),
    /provision\.txt: not UTF-8 text/,
  ],
];

for (const [what, mutate, message] of bad) {
  t.test(`refused, nothing changed: ${what}`, async (t) => {
    // On an empty data partition, and on one already provisioned with another good provisioning.
    for (const provisioned of [false, true]) {
      const r = root();
      if (provisioned) {
        writeBoot(r.boot, goodBoot(pki, 'till-a', { storeId: 'store-0' }));
        run(r);
        fs.rmSync(path.join(r.boot, BOOT_FOLDER), { recursive: true });
      }
      writeBoot(r.boot, mutate(goodBoot(pki)));
      const before = plain(snapshot(r.root));
      t.throws(
        () => run(r),
        { code: 'PROVISION_INVALID', message },
        provisioned ? 'over a provisioned register' : 'on first boot',
      );
      t.same(plain(snapshot(r.root)), before, 'boot, data and etc byte-identical, mtimes too');
    }
  });
}

t.test('every problem is reported at once, each naming its field', async (t) => {
  const r = root({
    provision: provisionText({ brokerUrl: 'mqtt://x:1883', timeZone: 'Nowhere/Land', storeId: undefined }),
    ca: pki.caCrt,
    cert: pki.device('till-a').crt,
    key: pki.device('till-b').key,
  });
  const err = t.throws(() => run(r)) as ProvisionError;
  t.equal(err.code, 'PROVISION_INVALID');
  t.equal(err.issues.length, 4, err.issues.join('\n'));
  t.match(err.issues.join('\n'), /storeId: missing[^]*brokerUrl[^]*timeZone[^]*device\.key: does not match/);
});

t.test('another device id over a journal is refused', async (t) => {
  const r = root(goodBoot(pki));
  run(r);
  fs.mkdirSync(dataFile(r, 'journal'));
  fs.writeFileSync(dataFile(r, 'journal/00000001.seg'), 'sales');
  writeBoot(r.boot, goodBoot(pki, 'till-b'));
  const before = plain(snapshot(r.root));
  t.throws(() => run(r), { code: 'PROVISION_FOREIGN_DATA', message: /journal of till-a, not till-b/ });
  t.same(plain(snapshot(r.root)), before);
});

t.test('no provisioning file and never provisioned', async (t) => {
  const r = root();
  t.throws(() => run(r), { code: 'PROVISION_MISSING', message: /register\/provision\.txt/ });
  t.same(fs.readdirSync(r.data), []);
});

t.test('the command line: exit statuses, and no secret in any output', async (t) => {
  const output: string[] = [];
  const io: MainIo = {
    out: (s) => output.push(s),
    err: (s) => output.push(s),
    log: {
      info: (f, m) => output.push(JSON.stringify({ ...f, m })),
      warn: (f, m) => output.push(JSON.stringify({ ...f, m })),
      error: (f, m) => output.push(JSON.stringify({ ...f, m })),
    },
    stdin: () => Buffer.from(`${MANAGER_PIN}\n`),
  };
  const args = (r: Root) => ['--boot', r.boot, '--data', r.data, '--etc', r.etc];

  const badRoot = root({ ...goodBoot(pki), provision: provisionText({ brokerUrl: 'mqtt://x:1883' }) });
  t.equal(main(args(badRoot), io), 78);
  t.match(
    output.join(''),
    /register-provision: register\/provision\.txt line 4: brokerUrl: mqtt:\/\/ is refused/,
  );

  const good = root(goodBoot(pki));
  t.equal(main(args(good), io), 0);
  t.equal(main(args(good), io), 0);
  t.match(output.join(''), /"outcome":"applied"[^]*"outcome":"unchanged"/);

  t.equal(main(args(root()), io), 66, 'nothing to provision');
  t.equal(main(['--boot', good.boot], io), 64, 'usage');
  t.equal(main(['--boot', good.boot, '--data', good.data, '--colour', 'red'], io), 64, 'usage');

  const before = output.length;
  t.equal(main(['hash-pin'], io), 0);
  const hash = output.slice(before).join('').trim();
  t.ok(verifyPin(MANAGER_PIN, hash), 'hash-pin prints a hash of the PIN on stdin');
  output.length = before;

  const all = output.join('');
  t.notMatch(all, /PRIVATE KEY/, 'no key in the output');
  t.notMatch(all, pki.device('till-a').key.toString('latin1').split('\n')[1]!, 'no key material');
  t.notOk(all.includes(MANAGER_PIN_HASH), 'no PIN hash in the output');
  t.notOk(all.includes(MANAGER_PIN), 'no PIN in the output');
});

t.test(
  'the machine id goes onto the kernel command line, once, and comes back after a reflash',
  async (t) => {
    const r = root(goodBoot(pki));
    const cmdline = path.join(r.boot, CMDLINE_FILE);
    const original = ' console=tty3 root=LABEL=register-root rw fsck.repair=yes rootwait quiet loglevel=3\n';
    fs.writeFileSync(cmdline, original);
    const first = run(r);
    t.same(first.changed.slice(0, 2), ['machine-id', 'cmdline'], 'right after the id is made');
    const id = fs.readFileSync(dataFile(r, DATA_FILES.machineId), 'utf8').trim();
    t.equal(
      fs.readFileSync(cmdline, 'utf8'),
      `console=tty3 root=LABEL=register-root rw fsck.repair=yes rootwait quiet loglevel=3 systemd.machine_id=${id}\n`,
      'one line, every word kept, the id last',
    );
    t.same(run(r), { outcome: 'unchanged', deviceId: 'till-a', changed: [] }, 'a second run leaves it');

    // A new image written over the boot partition (same provisioning files, data partition kept).
    fs.writeFileSync(
      cmdline,
      original.replace('quiet', 'quiet systemd.machine_id=0123456789abcdef0123456789abcdef'),
    );
    t.same(run(r), { outcome: 'completed', deviceId: 'till-a', changed: ['cmdline'] });
    t.match(
      fs.readFileSync(cmdline, 'utf8'),
      new RegExp(`^console=tty3 [^\\n]*quiet loglevel=3 systemd\\.machine_id=${id}\\n$`),
    );
    t.equal(
      fs.readFileSync(cmdline, 'utf8').match(/systemd\.machine_id=/g)?.length,
      1,
      'a stale id is replaced',
    );

    // The provisioning folder gone (a card provisioned long ago), the command line rewritten: still fixed.
    fs.rmSync(path.join(r.boot, BOOT_FOLDER), { recursive: true });
    fs.writeFileSync(cmdline, original);
    t.same(run(r), { outcome: 'not-present', deviceId: 'till-a', changed: ['cmdline'] });

    // A command line that is not one line is not touched.
    const odd = 'console=tty3\nroot=LABEL=register-root\n';
    fs.writeFileSync(cmdline, odd);
    t.same(run(r).changed, []);
    t.equal(fs.readFileSync(cmdline, 'utf8'), odd);
  },
);
