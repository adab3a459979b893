// The till UI driven for real: register-ui runs in a tmux pane of 80×25 with TERM=linux (the shop's
// console), keys go in with send-keys and every assertion is on the screen text capture-pane gives
// back. registerd runs in this process with a card terminal simulator the test can take offline, and a
// cloud link to a broker that is not there, so the status line shows the queue growing.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../appliance/config.js';
import { startRegisterd, type Daemon } from '../../appliance/registerd.js';
import { silentLogger } from '../../appliance/log.js';
import { SimulatedCardTerminal } from '../../appliance/till/card.js';
import { DEMO_CASHIERS_FILE, DEMO_CATALOG_FILE, code } from '../support/till-fixtures.js';
import { hasTmux, startPane } from './tmux.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tsx = path.join(root, 'node_modules', '.bin', 'tsx');
const ESPRESSO = code('COF-250'); // 6.49
const WATER = code('WAT-150'); // 0.89

/** One till: registerd in-process, register-ui in its own tmux server and session. */
async function startTill(t: Test) {
  const dir = mkdtempSync(path.join(tmpdir(), 'till-ui-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig({
    deviceId: 'till-ui',
    storeId: 'demo-store',
    stateDir: path.join(dir, 'state'),
    clock: { assumeTrusted: true },
    seed: { catalogFile: DEMO_CATALOG_FILE, cashiersFile: DEMO_CASHIERS_FILE },
    // Nothing listens on port 1: the link stays down and the queue grows, as in a shop offline.
    cloud: { brokerUrl: 'mqtt://127.0.0.1:1' },
  });
  const terminal = new SimulatedCardTerminal();
  let daemon: Daemon | undefined = await startRegisterd(config, { terminal, log: silentLogger });
  t.teardown(() => daemon?.stop());
  const pane = startPane(
    t,
    `${tsx} ${path.join(root, 'appliance/ui/main.ts')} --socket ${daemon.socketPath}`,
  );
  return {
    ...pane,
    terminal,
    /** A code read by the scanner: what registerd's scanner device hands the register. */
    scan: (barcode: string) => daemon!.register.scanned(barcode),
    stopDaemon: async () => {
      await daemon?.stop();
      daemon = undefined;
    },
    startDaemon: async () => {
      daemon = await startRegisterd(config, { terminal, log: silentLogger });
    },
  };
}

type Till = Awaited<ReturnType<typeof startTill>>;

async function login(t: Test, till: Till, n: string, pin: string, name: string) {
  await till.see(/Who are you\?/);
  till.keys(n);
  await till.see(new RegExp(`${name}, type your PIN`));
  till.type(pin);
  await till.see(new RegExp(`PIN: ${'\\*'.repeat(pin.length)}_`));
  t.notMatch(till.screen(), new RegExp(pin), 'the PIN is never on screen');
  till.keys('Enter');
}

async function openShift(till: Till) {
  till.keys('F2');
  await till.see(/1 {2}Open shift/);
  till.keys('1');
  await till.see(/count the float/);
  // 20.00 is the fifth denomination: four Enters, then 5 of them.
  for (let i = 0; i < 4; i++) till.keys('Enter');
  await till.see(/> +20\.00 x/);
  till.type('5');
  till.keys('+');
  await till.see(/Shift open, float 100\.00/);
}

t.test(
  'the till in tmux: login, a wrong-PIN lockout, sales in cash and offline card, a shift close',
  async (t) => {
    if (!hasTmux) throw new Error('tmux is required (CI installs it)');
    const till = await startTill(t);

    // A wrong PIN five times locks Ben out; the screen says so, and the right PIN is refused too.
    await till.see(/1 {2}Ana[\s\S]*2 {2}Ben[\s\S]*3 {2}Mia/);
    await till.see(/OFFLINE q\d/, 'the status line showing the cloud link down');
    till.keys('2');
    await till.see(/Ben, type your PIN/);
    for (let left = 4; left >= 1; left--) {
      till.type('0000');
      till.keys('Enter');
      await till.see(new RegExp(`wrong PIN \\(${left} tries left\\)`));
    }
    till.type('0000');
    till.keys('Enter');
    await till.see(/5 wrong PINs: locked out for 300 s/);
    await login(t, till, '2', '2222', 'Ben');
    await till.see(/locked out for \d+ s more/);
    t.match(till.screen(), /\| nobody \|/, 'nobody logged in');

    // Ana logs in and opens a shift with a 100.00 float.
    await login(t, till, '1', '1111', 'Ana');
    await till.see(/Welcome, Ana/);
    t.match(till.screen(), /\| Ana \|/, 'the cashier is on the status line');
    // The first scan since the till started, with "Welcome, Ana" on screen: it is announced all the same.
    await till.scan('NO-SUCH-1');
    await till.see(/Scan NO-SUCH-1: no product for NO-SUCH-1/);
    await openShift(till);

    // A sale of two items (one of them twice) paid in cash with change.
    till.type(ESPRESSO);
    till.keys('Enter');
    await till.see(/1 Espresso beans 250 g/);
    till.type(WATER);
    till.keys('Enter');
    await till.see(/2 Sparkling water/);
    till.type('2');
    till.keys('*');
    await till.see(/2 x 0\.89 +1\.78/);
    till.keys('+');
    await till.see(/Due 8\.27/);
    t.match(till.screen(), /TOTAL/, 'the total in big figures');
    till.type('1000');
    till.keys('-');
    await till.see(/CHANGE/);
    await till.see(/Receipt 1: thank you/);
    t.match(till.screen(), /Total 8\.27/);

    // An unknown code is explained.
    till.type('12345');
    till.keys('Enter');
    await till.see(/no product for 12345/);

    // The card terminal loses its link: the card is approved offline and held.
    till.terminal.online = false;
    till.type(ESPRESSO);
    till.keys('Enter');
    await till.see(/1 Espresso beans/);
    till.keys('/');
    await till.see(/Receipt 2: thank you/);
    await till.see(/card offline 1/, 'the offline approval on the status line');
    t.match(till.screen(), /OFFLINE q\d+/, 'the sales wait in the queue');

    // Close the shift 8.27 short (100.00 counted of the 108.27 expected: the float and the cash sale): the
    // Z report shows the discrepancy.
    till.keys('F2');
    await till.see(/6 {2}Close shift/);
    till.keys('6');
    await till.see(/count the drawer/);
    for (let i = 0; i < 3; i++) till.keys('Enter');
    await till.see(/> +50\.00 x/);
    till.type('2');
    till.keys('Enter');
    await till.see(/Counted 100\.00/);
    t.match(till.screen(), /Expected 108\.27 +Discrepancy -8\.27/);
    till.keys('+');
    // Over the 5.00 a cashier may close with: a manager approves.
    await till.see(/Manager approval: Close the shift/);
    till.keys('1');
    await till.see(/Mia \(manager\), type your PIN/);
    till.type('9999');
    till.keys('Enter');
    await till.see(/Z report/);
    const z = till.screen();
    t.match(z, /Discrepancy \(short\) +-8\.27/);
    t.match(z, /Sales +2/);
    t.match(z, /Card +6\.49/);
  },
);

t.test('a card over the offline limit is refused with the whole reason on screen', async (t) => {
  if (!hasTmux) throw new Error('tmux is required (CI installs it)');
  const till = await startTill(t);
  await login(t, till, '1', '1111', 'Ana');
  await till.see(/Welcome, Ana/);
  await openShift(till);
  till.terminal.online = false;
  till.type(ESPRESSO);
  till.keys('Enter');
  await till.see(/1 Espresso beans/);
  till.type('40');
  till.keys('*');
  await till.see(/40 x 6\.49 +259\.60/);
  till.keys('/');
  // Two rows at 80 columns: the reason, and what to do instead at its end.
  await till.see(/over the offline limit of 250\.00\s+EUR: take cash or another tender\./);
});

t.test('the till survives a registerd restart: it shows the register down, then carries on', async (t) => {
  if (!hasTmux) throw new Error('tmux is required (CI installs it)');
  const till = await startTill(t);
  await login(t, till, '1', '1111', 'Ana');
  await till.see(/Welcome, Ana/);
  await till.stopDaemon();
  await till.see(/REGISTER DOWN/);
  t.match(till.screen(), /Waiting for the register/);
  await till.startDaemon();
  await till.see(/Corner Shop \(demo\) — Ana/);
  t.notMatch(till.screen(), /REGISTER DOWN/);
});
