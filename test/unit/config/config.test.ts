import t from 'tap';
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import { VERSION } from '../../../appliance/version.js';
import { parseConfig } from '../../../appliance/config.js';

const base = { deviceId: 'till-1', storeId: 'store-1' };

t.test('defaults fill in, paths resolve against the config file', async (t) => {
  const c = parseConfig({ ...base, stateDir: 'state' }, {}, '/etc/register');
  t.equal(c.stateDir, '/etc/register/state');
  t.equal(c.journal.segmentMaxBytes, 8 * 1024 * 1024);
  t.equal(c.till.maxPinAttempts, 5);
  t.equal(c.clock.assumeTrusted, false);
});

t.test('the environment overrides the file; its paths resolve against the working directory', async (t) => {
  const c = parseConfig(
    { ...base },
    { REGISTER_STATE_DIR: 'here', REGISTER_DEVICE_ID: 'till-9' },
    '/etc/register',
  );
  t.equal(c.stateDir, path.resolve('here'));
  t.equal(c.deviceId, 'till-9');
});

t.test('a bad value is refused with its field named', async (t) => {
  const bad: [unknown, RegExp][] = [
    [{ storeId: 's' }, /deviceId/],
    [{ ...base, deviceId: 'till/1' }, /deviceId/],
    [{ ...base, journal: { segmentMaxBytes: 10 } }, /journal\.segmentMaxBytes/],
    [{ ...base, till: { maxQTY: 5 } }, /till/],
    [{ ...base, colour: 'red' }, /colour|top level|Unrecognized/],
    [{ ...base, devices: { terminal: { kind: 'serial' } } }, /devices\.terminal\.kind/],
  ];
  for (const [raw, field] of bad) {
    t.throws(
      () => parseConfig(raw, {}, '/'),
      { code: 'CONFIG_INVALID', message: field },
      JSON.stringify(raw),
    );
  }
});

t.test('devices: defaults, each kind, and refusals naming the field', async (t) => {
  const c = parseConfig({ ...base }, {}, '/');
  t.same(c.devices, { terminal: { kind: 'simulated' }, printer: { kind: 'none' }, scanners: [] });
  t.same(c.till.cardOffline, {
    maxTxnMinor: 25_000,
    maxOutstandingMinor: 250_000,
    maxOutstandingCount: 500,
    maxAgeMs: 86_400_000,
  });
  const full = parseConfig(
    {
      ...base,
      devices: {
        terminal: { kind: 'ecr', path: '/dev/pos/terminal' },
        printer: { kind: 'tcp', host: 'printer.local' },
        scanners: [
          { kind: 'hid', vendorId: 0x05e0, productId: 0x1200 },
          { kind: 'serial', path: '/dev/pos/scanner' },
        ],
      },
    },
    {},
    '/',
  );
  t.match(full.devices.terminal, {
    kind: 'ecr',
    baudRate: 9600,
    ackTimeoutMs: 2000,
    resultTimeoutMs: 120_000,
  });
  t.match(full.devices.printer, { kind: 'tcp', port: 9100, columns: 42, encoding: 'multilingual' });
  t.match(full.devices.scanners, [
    { kind: 'hid', layout: 'us', driver: 'hidraw' },
    { kind: 'serial', baudRate: 9600 },
  ]);
  const bad: [unknown, RegExp][] = [
    [{ terminal: { kind: 'ecr' } }, /devices\.terminal\.path/],
    [{ terminal: { kind: 'ecr', path: '/dev/x', baudRate: 7 } }, /devices\.terminal\.baudRate/],
    [{ printer: { kind: 'tcp', host: 'p', port: 70000 } }, /devices\.printer\.port/],
    [{ printer: { kind: 'usb', columns: 40 } }, /devices\.printer\.columns/],
    [{ printer: { kind: 'lpt' } }, /devices\.printer\.kind/],
    [
      { scanners: [{ kind: 'hid', vendorId: 1 }] },
      /devices\.scanners\.0.*path or both vendorId and productId/,
    ],
    [{ scanners: [{ kind: 'serial', path: '/dev/x', parity: 'odd' }] }, /devices\.scanners\.0/],
    [{ scanners: Array(5).fill({ kind: 'serial', path: '/dev/x' }) }, /devices\.scanners/],
  ];
  for (const [devices, field] of bad) {
    t.throws(
      () => parseConfig({ ...base, devices }, {}, '/'),
      { code: 'CONFIG_INVALID', message: field },
      JSON.stringify(devices),
    );
  }
  t.throws(() => parseConfig({ ...base, till: { cardOffline: { maxAgeMs: -1 } } }, {}, '/'), {
    message: /till\.cardOffline\.maxAgeMs/,
  });
});

t.test('cloud: optional broker URL, mqtt(s) only, from the environment too; TLS paths resolve', async (t) => {
  t.equal(parseConfig({ ...base }, {}, '/').cloud.brokerUrl, undefined);
  const c = parseConfig(
    {
      ...base,
      cloud: {
        brokerUrl: 'mqtts://ledger.example:8883',
        tls: { caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' },
      },
    },
    {},
    '/etc/register',
  );
  t.same(c.cloud.tls, {
    caFile: '/etc/register/ca.pem',
    certFile: '/etc/register/c.pem',
    keyFile: '/etc/register/k.pem',
  });
  t.equal(
    parseConfig({ ...base }, { REGISTER_BROKER_URL: 'mqtt://127.0.0.1:1' }, '/').cloud.brokerUrl,
    'mqtt://127.0.0.1:1',
  );
  for (const url of ['http://x', 'mqtt://', 'mqtt://host/path', 'mqtt://a b']) {
    t.throws(
      () => parseConfig({ ...base, cloud: { brokerUrl: url } }, {}, '/'),
      { message: /cloud\.brokerUrl/ },
      url,
    );
  }
});

t.test('cloud sync defaults: 500-record batches, 2 in flight, reconnects at most 30 s apart', async (t) => {
  t.match(parseConfig({ ...base }, {}, '/').cloud, {
    batchMaxRecords: 500,
    maxInFlightBatches: 2,
    ackTimeoutMs: 10_000,
    reconnectMaxMs: 30_000,
  });
  t.equal(parseConfig({ ...base, cloud: { reconnectMaxMs: 3000 } }, {}, '/').cloud.reconnectMaxMs, 3000);
  for (const v of [999, 300_001, 1.5])
    t.throws(() => parseConfig({ ...base, cloud: { reconnectMaxMs: v } }, {}, '/'), {
      message: /cloud\.reconnectMaxMs/,
    });
});

t.test('the version a register reports is the package version', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  t.equal(VERSION, pkg.version);
});
