// The HID scanner driver over a fake HID binding: recorded boot reports in, codes out; an unplug is the
// device's `error`, retried on injected timers with the jittered backoff until the scanner is back; a
// library that can't load is reported once as HID_UNAVAILABLE.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { backoffDelayMs, type BackoffOptions, type Timers } from '../../../appliance/devices/device.js';
import {
  HidScanner,
  hidUnavailable,
  pickScannerInterface,
  type HidBinding,
  type HidDeviceInfo,
  type HidDeviceLike,
  type HidScannerOptions,
  type HidTarget,
} from '../../../appliance/devices/scanner/hid-scanner.js';
import type { ScanRejected } from '../../../appliance/devices/scanner/scanner.js';
import { isRegisterError, RegisterError } from '../../../appliance/errors.js';
import type { Logger } from '../../../appliance/log.js';

const VID = 0x0c2e; // Honeywell (Metrologic)
const PID = 0x0b61;

/** A report from its hex digits as a USB capture shows it. */
const r = (hex: string): Buffer => Buffer.from(hex.replace(/ /g, ''), 'hex');
const UP = r('00 00 00 00 00 00 00 00');
const US_DIGIT_KEYS: Record<string, number> = { '1': 0x1e, '2': 0x1f, '3': 0x20, '4': 0x21, '5': 0x22 };
Object.assign(US_DIGIT_KEYS, { '6': 0x23, '7': 0x24, '8': 0x25, '9': 0x26, '0': 0x27 });
const ENTER = 0x28;
const press = (key: number): Buffer => Buffer.from([0, 0, key, 0, 0, 0, 0, 0]);

/** What a keyboard-emulation scanner sends for the digits: each key pressed, then all keys up. */
const typed = (digits: string): Buffer[] => [...digits].flatMap((d) => [press(US_DIGIT_KEYS[d]!), UP]);
const scanOf = (digits: string): Buffer[] => [...typed(digits), press(ENTER), UP];

class FakeHidDevice extends EventEmitter implements HidDeviceLike {
  closed = false;
  constructor(readonly target: HidTarget) {
    super();
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  send(reports: Buffer[]): void {
    for (const report of reports) this.emit('data', report);
  }
  /** What node-hid's read thread reports when the device goes away (it passes a string). */
  pull(): void {
    this.emit('error', 'could not read from HID device: hid_read_timeout: unexpected poll error');
  }
}

/** The keyboard interface on /dev/hidraw3 and, on the same scanner, a vendor interface listed first. */
const SCANNER_INTERFACES = (n: number): HidDeviceInfo[] => [
  { vendorId: VID, productId: PID, path: `/dev/hidraw${n + 1}`, interface: 1, usagePage: 0xff00, usage: 1 },
  { vendorId: VID, productId: PID, path: `/dev/hidraw${n}`, interface: 0, usagePage: 0x01, usage: 0x06 },
];

class FakeHidBinding implements HidBinding {
  attached: HidDeviceInfo[] = SCANNER_INTERFACES(3);
  opened: FakeHidDevice[] = [];
  enumerations = 0;

  async devices(): Promise<HidDeviceInfo[]> {
    this.enumerations++;
    return this.attached;
  }
  async open(target: HidTarget): Promise<FakeHidDevice> {
    const found =
      'path' in target
        ? this.attached.some((d) => d.path === target.path)
        : this.attached.some((d) => d.vendorId === target.vendorId && d.productId === target.productId);
    if (!found) throw new Error(`cannot open device ${JSON.stringify(target)}`);
    const device = new FakeHidDevice(target);
    this.opened.push(device);
    return device;
  }
  get last(): FakeHidDevice {
    return this.opened.at(-1)!;
  }
}

/** Timers that fire only when the test says so. */
class ManualTimers implements Timers {
  pending: { fn: () => void; ms: number }[] = [];
  setTimeout(fn: () => void, ms: number): unknown {
    const entry = { fn, ms };
    this.pending.push(entry);
    return entry;
  }
  clearTimeout(handle: unknown): void {
    this.pending = this.pending.filter((e) => e !== handle);
  }
  /** Fires the one scheduled retry and waits for the reconnect it starts (open is a few awaits deep). */
  async fire(): Promise<number> {
    const entry = this.pending.shift();
    if (entry === undefined) throw new Error('no timer scheduled');
    entry.fn();
    await new Promise((resolve) => setImmediate(resolve));
    return entry.ms;
  }
}

type Seen = [event: string, ...args: unknown[]];

function recordingLog(): Logger & {
  lines: { level: string; fields: Record<string, unknown>; msg: string }[];
} {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    lines.push({ level, fields, msg });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

const BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 400, random: () => 0.5 };

function rig(opts: Partial<HidScannerOptions> = {}) {
  const binding = new FakeHidBinding();
  const timers = new ManualTimers();
  const log = recordingLog();
  const loads: string[] = [];
  const scanner = new HidScanner({
    vendorId: VID,
    productId: PID,
    loadBinding: async (driver) => {
      loads.push(driver);
      return binding;
    },
    timers,
    backoff: BACKOFF,
    nowMs: () => 1000,
    log,
    ...opts,
  });
  const seen: Seen[] = [];
  scanner.on('scan', (code) => seen.push(['scan', code]));
  scanner.on('rejected', (rej: ScanRejected) => seen.push(['rejected', rej.reason]));
  scanner.on('up', () => seen.push(['up']));
  scanner.on('down', (reason) => seen.push(['down', reason]));
  return { binding, timers, log, loads, scanner, seen };
}

t.test('a scan from recorded reports, read from the keyboard interface found by VID/PID', async (t) => {
  const { binding, loads, scanner, seen } = rig();
  t.same(scanner.health(), { state: 'down', detail: 'scanner not started', sinceMs: 1000 });
  t.same(binding.opened, [], 'the constructor only assigns');
  await scanner.start();
  t.same(loads, ['hidraw'], 'the library is loaded on start, hidraw by default');
  t.same(binding.last.target, { path: '/dev/hidraw3' }, 'the keyboard interface, not the vendor one');
  t.same(scanner.health(), { state: 'ok', sinceMs: 1000 });
  binding.last.send(scanOf('4006381333931'));
  binding.last.send(scanOf('96385074'));
  t.same(seen, [['up'], ['scan', '4006381333931'], ['scan', '96385074']]);
});

t.test('unplug → down → backoff → replug → scans again, with no half code carried over', async (t) => {
  const { binding, timers, scanner, seen } = rig();
  await scanner.start();
  const first = binding.last;
  first.send(typed('999')); // half a code, then the cable is pulled
  binding.attached = [];
  first.pull();
  t.ok(first.closed, 'the dead device is closed');
  t.same(seen, [['up'], ['down', 'could not read from HID device: hid_read_timeout: unexpected poll error']]);
  t.match(scanner.health(), { state: 'down', detail: /scanner not connected: could not read/ });

  // Still unplugged: each try finds nothing, waits longer, and reports nothing new.
  const delays = [await timers.fire(), await timers.fire(), await timers.fire(), await timers.fire()];
  t.same(
    delays,
    [0, 1, 2, 3].map((n) => backoffDelayMs(n, BACKOFF)),
    'jittered exponential backoff',
  );
  t.same(delays, [75, 150, 300, 300], 'capped at maxMs');
  t.match(scanner.health(), { state: 'down', detail: /no HID device 0c2e:0b61 attached/ });
  t.equal(seen.length, 2, 'the loss was reported once');
  first.send(scanOf('1')); // a late report from the dead device is ignored

  // Plugged back in, on another hidraw node.
  binding.attached = SCANNER_INTERFACES(5);
  await timers.fire();
  t.same(binding.last.target, { path: '/dev/hidraw5' }, 'found again by enumeration');
  t.same(scanner.health(), { state: 'ok', sinceMs: 1000 });
  binding.last.send(scanOf('4006381333931'));
  t.same(seen.slice(2), [['up'], ['scan', '4006381333931']], 'not 9994006381333931');

  // After a reconnect the backoff starts again from the first step.
  binding.attached = [];
  binding.last.pull();
  t.equal(await timers.fire(), 75);
});

t.test('a key held down at the unplug does not count as held after the replug', async (t) => {
  const { binding, timers, scanner, seen } = rig();
  await scanner.start();
  binding.last.send([press(US_DIGIT_KEYS['4']!)]);
  binding.last.pull();
  await timers.fire();
  // The first report after the replug lists the same key: it is a new press, so it types.
  binding.last.send([press(US_DIGIT_KEYS['4']!), UP, press(ENTER), UP]);
  t.same(seen.at(-1), ['scan', '4']);
});

t.test('opened by path: no enumeration, and a missing path is retried', async (t) => {
  const { binding, timers, scanner, seen } = rig({
    vendorId: undefined,
    productId: undefined,
    path: '/dev/pos/scanner',
  });
  binding.attached = [];
  await scanner.start();
  t.same(seen, [['down', 'cannot open device {"path":"/dev/pos/scanner"}']]);
  binding.attached = [{ vendorId: VID, productId: PID, path: '/dev/pos/scanner' }];
  await timers.fire();
  t.same(binding.last.target, { path: '/dev/pos/scanner' });
  t.equal(binding.enumerations, 0, 'a configured path is opened as it is');
  t.same(seen.at(-1), ['up']);
});

t.test('the libusb driver is passed to the loader', async (t) => {
  const { loads, scanner } = rig({ driver: 'libusb' });
  await scanner.start();
  t.same(loads, ['libusb']);
});

t.test('rejected reads: over-long, non-printable, and unreadable reports logged once', async (t) => {
  const { binding, log, scanner, seen } = rig({ maxLength: 4 });
  await scanner.start();
  binding.last.send(scanOf('12345'));
  binding.last.send([r('01 00 06 00 00 00 00 00'), UP, press(ENTER), UP]); // Ctrl+C
  binding.last.send([r('01 00 06 00 00 00 00 00 00'), r('00 00 00 00 00 00 00 00 00')]); // 9 bytes: a report ID
  binding.last.send(scanOf('12'));
  t.same(seen.slice(1), [
    ['rejected', 'too-long'],
    ['rejected', 'not-printable'],
    ['rejected', 'bad-report'],
    ['rejected', 'bad-report'],
    ['scan', '12'],
  ]);
  const warnings = log.lines.filter((l) => l.level === 'warn');
  t.equal(warnings.filter((l) => /boot/.test(l.msg)).length, 1, 'unreadable reports are logged once');
  t.notOk(JSON.stringify(log.lines).includes('1234'), 'the log holds no scanned text');
});

t.test('a library that cannot load: HID_UNAVAILABLE, reported once, not retried', async (t) => {
  const { timers, log, scanner, seen } = rig({
    loadBinding: async () => {
      throw new Error('libusb-1.0.so.0: cannot open shared object file: No such file or directory');
    },
  });
  await scanner.start();
  const health = scanner.health();
  t.equal(health.state, 'down');
  t.match(health.detail, /^HID_UNAVAILABLE: /);
  t.match(health.detail, /libusb-1\.0-0/, 'names the package to install');
  t.match(health.detail, /libusb-1\.0\.so\.0: cannot open shared object file/, 'and the original error');
  t.equal(seen.length, 1);
  t.equal(seen[0]![0], 'down');
  t.same(timers.pending, [], 'a missing library is not retried');
  t.match(log.lines, [{ level: 'error', fields: { code: 'HID_UNAVAILABLE', driver: 'hidraw' } }]);
  await scanner.stop();
});

t.test('hidUnavailable keeps a RegisterError and wraps anything else', async (t) => {
  const wrapped = hidUnavailable(new Error('boom'), 'libusb');
  t.ok(isRegisterError(wrapped, 'HID_UNAVAILABLE'));
  t.match(wrapped.message, /node-hid, libusb.*boom.*libusb-1\.0-0/);
  t.same(wrapped.details, { driver: 'libusb' });
  t.equal((wrapped.cause as Error).message, 'boom');
  const mismatch = new RegisterError('CONFIG_INVALID', 'all HID scanners must use one driver');
  t.equal(hidUnavailable(mismatch, 'hidraw'), mismatch, 'a configuration error stays one');
});

t.test('stop closes the device, cancels the retry, and nothing is reported after it', async (t) => {
  const { binding, timers, scanner, seen } = rig();
  await scanner.start();
  const device = binding.last;
  await scanner.stop();
  t.ok(device.closed);
  t.match(scanner.health(), { state: 'down', detail: 'scanner stopped' });
  device.send(scanOf('1'));
  t.same(seen, [['up']], 'reports after stop are ignored');

  // Stopped while waiting to retry.
  await scanner.start();
  binding.last.pull();
  t.equal(timers.pending.length, 1);
  await scanner.stop();
  t.same(timers.pending, [], 'the retry is cancelled');
});

t.test('stop during a slow open closes the device the open returns', async (t) => {
  const { binding, scanner, seen } = rig();
  let release!: () => void;
  let entered!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const opening = new Promise<void>((resolve) => (entered = resolve));
  const open = binding.open.bind(binding);
  binding.open = async (target) => {
    entered();
    await gate;
    return open(target);
  };
  const started = scanner.start();
  await opening;
  const stopped = scanner.stop();
  release();
  await started;
  await stopped;
  t.ok(binding.last.closed);
  t.same(seen, [], 'never reported up');
});

t.test('configuration errors are thrown by the constructor', async (t) => {
  t.throws(() => new HidScanner({}), { code: 'CONFIG_INVALID' });
  t.throws(() => new HidScanner({ vendorId: VID }), { code: 'CONFIG_INVALID' });
  t.throws(() => new HidScanner({ vendorId: 0x10000, productId: 1 }), { code: 'CONFIG_INVALID' });
  t.throws(() => new HidScanner({ path: '/dev/hidraw0', maxLength: 0 }), { code: 'CONFIG_INVALID' });
});

t.test('pickScannerInterface', async (t) => {
  t.same(pickScannerInterface(SCANNER_INTERFACES(0), VID, PID)?.path, '/dev/hidraw0', 'the keyboard usage');
  const libusb: HidDeviceInfo[] = [
    { vendorId: VID, productId: PID, path: '1-1.2:1.1', interface: 1 },
    { vendorId: VID, productId: PID, path: '1-1.2:1.0', interface: 0 },
    { vendorId: 0x046d, productId: PID, path: '1-1.3:1.0', interface: 0 },
  ];
  t.same(pickScannerInterface(libusb, VID, PID)?.path, '1-1.2:1.0', 'without usages: interface 0');
  t.equal(pickScannerInterface(libusb, VID, 0x1234), undefined);
});
