import t from 'tap';
import * as path from 'node:path';
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
