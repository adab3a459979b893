// Stamping: a synthetic SD-card image (DOS label, a FAT32 boot partition and a Linux one) stamped from
// a three-line CSV without mounting, read back with mtools, and each copy provisioning its own device.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { provision } from '../../appliance/provision/apply.js';
import { BOOT_FILES, BOOT_FOLDER } from '../../appliance/provision/format.js';
import { loadConfig } from '../../appliance/config.js';
import { verifyPin } from '../../appliance/till/cashiers.js';
import { findBootPartition, stamp, StampError } from '../../scripts/stamp.js';
import { makePki, MANAGER_PIN, MANAGER_PIN_HASH, tempRoot } from '../support/provision-fixtures.js';

const tools = ['sfdisk', 'mformat', 'mcopy', 'mtype', 'openssl'];
const missing = tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
// Never skipped: CI installs them (.ci/run); a machine without them fails here, saying what to install.
if (missing.length) throw new Error(`missing ${missing.join(', ')}: apt-get install fdisk mtools openssl`);

const pki = makePki();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stamp-'));
t.teardown(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(pki.dir, { recursive: true, force: true });
});
const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** 40 MiB, sparse: a 34 MiB FAT32 boot partition at 1 MiB (the fewest sectors FAT32 allows), then Linux. */
function makeImage(file: string): void {
  execFileSync('truncate', ['-s', '40M', file]);
  execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=2048, size=34M, type=c\ntype=83\n' });
  const sectors = String((34 * 1024 * 1024) / 512);
  execFileSync(
    'mformat',
    ['-i', `${file}@@1M`, '-T', sectors, '-h', '64', '-s', '32', '-c', '1', '-F', '-v', 'BOOT', '::'],
    {
      env,
    },
  );
}

const BOOT_OFFSET = 1024 * 1024;
const mtype = (image: string, name: string) =>
  execFileSync('mtype', ['-i', `${image}@@${BOOT_OFFSET}`, `::/${BOOT_FOLDER}/${name}`], { env });
const mdir = (image: string) =>
  execFileSync('mdir', ['-b', '-i', `${image}@@${BOOT_OFFSET}`, `::/${BOOT_FOLDER}`], {
    env,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean)
    .map((l) => path.posix.basename(l))
    .sort();

// The CSV's files sit beside it, named relatively, as an operator keeps them.
fs.mkdirSync(path.join(dir, 'pki'));
fs.writeFileSync(path.join(dir, 'pki', 'ca.crt'), pki.caCrt);
for (const id of ['till-a', 'till-b']) {
  fs.writeFileSync(path.join(dir, 'pki', `${id}.crt`), pki.device(id).crt);
  fs.writeFileSync(path.join(dir, 'pki', `${id}.key`), pki.device(id).key);
}
const TOKEN = 'enrol_' + 'Zq8xY2w3'.repeat(5);
const HEADER =
  'deviceId,storeId,brokerUrl,timeZone,managerId,managerName,managerPin,managerPinHash,caFile,certFile,keyFile,enrolmentToken,enrolUrl';
const rows = [
  `till-a,store-1,mqtts://mqtt.example.com:8883,Europe/Berlin,mia,Mia,${MANAGER_PIN},,pki/ca.crt,pki/till-a.crt,pki/till-a.key,,`,
  `till-b,store-1,mqtts://mqtt.example.com,America/New_York,bo,"Bo ""the boss"", Jr",,${MANAGER_PIN_HASH},pki/ca.crt,pki/till-b.crt,pki/till-b.key,,`,
  `till-c,store-2,mqtts://10.0.0.5:8883,UTC,cy,Cy,${MANAGER_PIN},,pki/ca.crt,,,${TOKEN},https://ledger.example.com/api/enrol`,
];
const writeCsv = (name: string, lines: string[]) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, [HEADER, ...lines].join('\r\n') + '\r\n');
  return file;
};

const base = path.join(dir, 'base.img');
makeImage(base);
const baseHash = sha(base);

t.test('the boot partition is found from the partition table', async (t) => {
  t.same(findBootPartition(base), { offsetBytes: BOOT_OFFSET, sizeBytes: 34 * 1024 * 1024 });
  const blank = path.join(dir, 'blank.img');
  execFileSync('truncate', ['-s', '1M', blank]);
  t.throws(() => findBootPartition(blank), { message: /sfdisk cannot read a partition table/ });
});

t.test('three devices from a three-line CSV: each image holds its own files', async (t) => {
  const csv = writeCsv('devices.csv', rows);
  const out = path.join(dir, 'cards');
  const written = stamp({ csv, image: base, outDir: out });
  t.same(
    written.map((f) => path.basename(f)),
    ['till-a.img', 'till-b.img', 'till-c.img'],
  );
  t.equal(sha(base), baseHash, 'the base image is untouched');
  t.same(fs.readdirSync(out).sort(), ['till-a.img', 'till-b.img', 'till-c.img'], 'no partial copies left');

  t.same(mdir(written[0]!), ['ca.crt', 'device.crt', 'device.key', 'provision.txt']);
  t.same(mdir(written[2]!), ['ca.crt', 'enrolment.token', 'provision.txt']);
  for (const [i, id] of ['till-a', 'till-b', 'till-c'].entries()) {
    const text = mtype(written[i]!, BOOT_FILES.provision).toString();
    t.match(text, new RegExp(`^deviceId = ${id}$`, 'm'), `${id}: its own provision.txt`);
    t.notMatch(text, new RegExp(`= ${MANAGER_PIN}\\s*$`, 'm'), `${id}: no PIN on the card`);
    t.same(mtype(written[i]!, BOOT_FILES.ca), pki.caCrt);
  }
  t.same(mtype(written[0]!, BOOT_FILES.key), pki.device('till-a').key);
  t.same(mtype(written[1]!, BOOT_FILES.cert), pki.device('till-b').crt);
  t.equal(mtype(written[2]!, BOOT_FILES.token).toString(), `${TOKEN}\n`);
  t.match(mtype(written[1]!, BOOT_FILES.provision).toString(), /^manager\.name = Bo "the boss", Jr$/m);

  // Each card, as its register sees it at first boot, provisions that register.
  for (const [i, id] of ['till-a', 'till-b', 'till-c'].entries()) {
    const r = tempRoot();
    t.teardown(() => fs.rmSync(r.root, { recursive: true, force: true }));
    execFileSync('mcopy', ['-s', '-i', `${written[i]}@@${BOOT_OFFSET}`, `::/${BOOT_FOLDER}`, r.boot], {
      env,
    });
    const result = provision({ bootDir: r.boot, dataDir: r.data, etcDir: r.etc });
    t.equal(result.outcome, 'applied', `${id} provisions from its card`);
    const config = loadConfig(path.join(r.data, 'registerd.json'), {});
    t.equal(config.deviceId, id);
    const seed = JSON.parse(fs.readFileSync(config.seed.cashiersFile!, 'utf8'));
    t.ok(verifyPin(MANAGER_PIN, seed.cashiers[0].pinHash), `${id}: the manager's PIN works`);
  }
});

t.test('one bad row refuses the whole batch, naming its line; nothing is written', async (t) => {
  const csv = writeCsv('bad.csv', [
    rows[0]!,
    rows[1]!.replace('mqtts://mqtt.example.com', 'mqtt://mqtt.example.com'),
    rows[2]!.replace(`,${MANAGER_PIN},`, ',12ab,'),
    rows[0]!.replace('pki/till-a.key', 'pki/till-b.key'),
  ]);
  const out = path.join(dir, 'bad-cards');
  const err = t.throws(() => stamp({ csv, image: base, outDir: out })) as StampError;
  t.ok(err instanceof StampError);
  const text = err.issues.join('\n');
  t.match(text, /bad\.csv line 3: brokerUrl: mqtt:\/\/ is refused/);
  t.match(text, /bad\.csv line 4: managerPin: 4 to 8 digits/);
  t.match(text, /bad\.csv line 5: keyFile: does not match/);
  t.match(text, /bad\.csv line 5: deviceId till-a is on line 2 too/);
  t.notOk(text.includes('12ab'), 'a bad PIN is not echoed');
  t.notOk(fs.existsSync(out), 'no image written');

  const expired = t.throws(() =>
    stamp({ csv: writeCsv('later.csv', rows), image: base, outDir: out, nowMs: Date.parse('2100-01-01') }),
  ) as StampError;
  t.match(expired.issues, [/later\.csv line 2: certFile: expired/, /later\.csv line 3: certFile: expired/]);
  t.notOk(fs.existsSync(out), 'no image written');

  const unknown = writeCsv('unknown.csv', rows);
  fs.writeFileSync(unknown, fs.readFileSync(unknown, 'utf8').replace('timeZone', 'tz'));
  const err2 = t.throws(() => stamp({ csv: unknown, image: base, outDir: out })) as StampError;
  t.match(err2.issues.join('\n'), /unknown column "tz"[^]*column "timeZone" missing/);
});

t.test('in place (an image or a card): one device only', async (t) => {
  const card = path.join(dir, 'card.img');
  fs.copyFileSync(base, card);
  const csv = writeCsv('devices-2.csv', rows);
  t.throws(() => stamp({ csv, image: card }), { message: /has 3 devices .* written in place/ });
  t.equal(sha(card), baseHash, 'a refused stamp leaves the card as it was');
  t.same(stamp({ csv, image: card, only: 'till-b' }), [card]);
  t.match(mtype(card, BOOT_FILES.provision).toString(), /^deviceId = till-b$/m);
  // Re-stamped as a token device: the old certificate and key do not linger on the card.
  t.same(stamp({ csv, image: card, only: 'till-c' }), [card]);
  t.same(mdir(card), ['ca.crt', 'enrolment.token', 'provision.txt']);
});

t.test('npm run stamp: the command line', async (t) => {
  const csv = writeCsv('devices-3.csv', rows);
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'scripts/stamp.ts', ...args], { encoding: 'utf8' });
  const ok = run('--csv', csv, '--image', base, '--out-dir', path.join(dir, 'cli'));
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /stamped .*till-a\.img\nstamped .*till-b\.img\nstamped .*till-c\.img\n/);
  const again = run('--csv', csv, '--image', base, '--out-dir', path.join(dir, 'cli'));
  t.equal(again.status, 1);
  t.match(again.stderr, /refusing to overwrite/);
  t.equal(run('--csv', csv).status, 64);
});
