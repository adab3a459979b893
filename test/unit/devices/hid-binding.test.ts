// Smoke test: node-hid's native binding loads on this machine (CI installs libusb-1.0-0 for it) and
// enumerates, both directly and through the driver's adapter. Nothing here needs a scanner attached:
// a build machine has no HID devices, so the lists may be empty, but they must be lists.
import t from 'tap';
import { loadNodeHid } from '../../../appliance/devices/scanner/hid-scanner.js';

t.test('node-hid loads with the hidraw backend and enumerates', async (t) => {
  const hid = await import('node-hid');
  hid.setDriverType('hidraw');
  t.match(hid.getHidapiVersion(), /^\d+\.\d+\.\d+/, 'the native binding is loaded');
  const devices = await hid.devicesAsync();
  t.ok(Array.isArray(devices), 'devicesAsync resolves to an array');
  for (const d of devices) t.match(d, { vendorId: Number, productId: Number });
});

t.test('the adapter the HID scanner uses by default', async (t) => {
  const binding = await loadNodeHid('hidraw');
  t.ok(Array.isArray(await binding.devices()), 'devices() resolves to an array');
  t.equal(await loadNodeHid('hidraw'), binding, 'loaded once per process');
  await t.rejects(loadNodeHid('libusb'), { code: 'CONFIG_INVALID' }, 'one backend per process');
  await t.rejects(
    binding.open({ path: '/nonexistent/hidraw' }),
    /cannot open device/,
    'a missing device rejects',
  );
});
