// A USB scanner in keyboard emulation, read as raw HID reports through node-hid so its keystrokes are
// codes for the till, not typing on the console (docs/devices.md says how udev keeps them off it).
//
// node-hid is imported only when an HID scanner starts: its native binding links against libusb-1.0,
// and a register without an HID scanner must run on a system without that library. The library sits
// behind a small binding interface so the unit tests drive the driver with a fake device.
import { EventEmitter } from 'node:events';
import { RegisterError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import {
  backoffDelayMs,
  realTimers,
  type BackoffOptions,
  type DeviceHealth,
  type Timers,
} from '../device.js';
import { HidScanDecoder, type KeyboardLayout, type ScanEvent, type ScanTerminator } from './hid-decoder.js';
import { emitScanEvents, SCANNER_NAME, type Scanner, type ScannerEvents } from './scanner.js';

/**
 * hidraw: the kernel's HID driver stays bound and node-hid reads /dev/hidrawN beside it. libusb: node-hid
 * detaches the kernel driver and owns the device while it is open.
 */
export type HidDriver = 'hidraw' | 'libusb';

/** What enumeration says about one HID interface (node-hid's `Device`). */
export interface HidDeviceInfo {
  vendorId: number;
  productId: number;
  path?: string;
  interface?: number;
  usagePage?: number;
  usage?: number;
  product?: string;
}

export type HidTarget = { path: string } | { vendorId: number; productId: number };

/** The part of node-hid's `HIDAsync` the driver uses. */
export interface HidDeviceLike {
  on(event: 'data', listener: (report: Buffer) => void): unknown;
  /** node-hid's read thread stops after an error (an unplug); it passes a string or an Error. */
  on(event: 'error', listener: (err: unknown) => void): unknown;
  close(): Promise<void>;
}

export interface HidBinding {
  devices(): Promise<HidDeviceInfo[]>;
  open(target: HidTarget): Promise<HidDeviceLike>;
}

export type LoadHidBinding = (driver: HidDriver) => Promise<HidBinding>;

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

async function importNodeHid(driver: HidDriver): Promise<HidBinding> {
  const hid = await import('node-hid');
  hid.setDriverType(driver);
  // node-hid loads its native binding lazily, at the first call; load it now so a missing libusb shows
  // at start-up, not when the first enumeration happens to run.
  hid.getHidapiVersion();
  return {
    devices: () => hid.devicesAsync(),
    open: (target) =>
      'path' in target
        ? hid.HIDAsync.open(target.path)
        : hid.HIDAsync.open(target.vendorId, target.productId),
  };
}

// node-hid picks its backend once per process, at the first load; a second driver type would silently
// get the first one's.
let nodeHid: { driver: HidDriver; binding: Promise<HidBinding> } | null = null;

/** The real binding: node-hid with the given backend, loaded once per process. */
export const loadNodeHid: LoadHidBinding = (driver) => {
  if (nodeHid === null) {
    nodeHid = { driver, binding: importNodeHid(driver) };
  } else if (nodeHid.driver !== driver) {
    const message = `all HID scanners must use one driver: node-hid already loaded '${nodeHid.driver}', not '${driver}'`;
    return Promise.reject(new RegisterError('CONFIG_INVALID', message, { driver }));
  }
  return nodeHid.binding;
};

/** Why the HID library can't be used, for the log and the status line; names the package to install. */
export function hidUnavailable(err: unknown, driver: HidDriver): RegisterError {
  if (err instanceof RegisterError) return err;
  const message =
    `the USB HID library (node-hid, ${driver}) cannot be loaded: ${errorText(err)}; ` +
    `it needs the libusb-1.0-0 package (apt-get install libusb-1.0-0), then restart registerd`;
  return new RegisterError('HID_UNAVAILABLE', message, { driver }, err);
}

const USAGE_PAGE_GENERIC_DESKTOP = 0x01;
const USAGE_KEYBOARD = 0x06;

/**
 * The interface to read among those enumeration lists for a VID/PID: a scanner is often a composite
 * device (keyboard plus a vendor or consumer-control interface), and only the keyboard sends the boot
 * reports. hidraw reports usages; libusb doesn't, and there the keyboard is by convention interface 0.
 */
export function pickScannerInterface(
  devices: readonly HidDeviceInfo[],
  vendorId: number,
  productId: number,
): HidDeviceInfo | undefined {
  const matching = devices
    .filter((d) => d.vendorId === vendorId && d.productId === productId)
    .sort((a, b) => (a.interface ?? 0) - (b.interface ?? 0));
  const keyboard = matching.find(
    (d) => d.usagePage === USAGE_PAGE_GENERIC_DESKTOP && d.usage === USAGE_KEYBOARD,
  );
  return keyboard ?? matching[0];
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

export interface HidScannerOptions {
  /** Either both IDs (found again by enumeration after a replug, wherever it lands) … */
  vendorId?: number;
  productId?: number;
  /** … or a device file, normally the udev link `/dev/pos/scanner`. */
  path?: string;
  /** 'hidraw' by default: it works without detaching the kernel driver and reports interface usages. */
  driver?: HidDriver;
  layout?: KeyboardLayout;
  terminator?: ScanTerminator;
  /** Characters per code; the decoder's default (64) holds every retail symbology. */
  maxLength?: number;
  name?: string;
  /** The HID library; node-hid by default. */
  loadBinding?: LoadHidBinding;
  timers?: Timers;
  backoff?: BackoffOptions;
  nowMs?: () => number;
  log?: Logger;
}

function hidTarget(opts: HidScannerOptions): HidTarget {
  if (opts.path !== undefined) return { path: opts.path };
  const { vendorId, productId } = opts;
  const isId = (n: number | undefined): n is number => Number.isInteger(n) && n! >= 0 && n! <= 0xffff;
  if (isId(vendorId) && isId(productId)) return { vendorId, productId };
  const message = 'an HID scanner needs a path or both vendorId and productId (0–0xffff)';
  throw new RegisterError('CONFIG_INVALID', message, { vendorId, productId });
}

export class HidScanner extends EventEmitter<ScannerEvents> implements Scanner {
  readonly name: string;
  readonly #target: HidTarget;
  readonly #where: string;
  readonly #driver: HidDriver;
  readonly #decoder: HidScanDecoder;
  readonly #loadBinding: LoadHidBinding;
  readonly #timers: Timers;
  readonly #backoff: BackoffOptions | undefined;
  readonly #nowMs: () => number;
  readonly #log: Logger;
  #binding: HidBinding | null = null;
  #running = false;
  #device: HidDeviceLike | null = null;
  /** Failed tries since the device was last open; drives the backoff. */
  #attempt = 0;
  #retry: unknown = null;
  /** The connect in progress, so stop() can wait for it instead of racing it. */
  #connecting: Promise<void> = Promise.resolve();
  #badReportLogged = false;
  #health: DeviceHealth;

  constructor(opts: HidScannerOptions) {
    super();
    this.name = opts.name ?? SCANNER_NAME;
    // Both checked here so a bad setting is a CONFIG_INVALID at start-up, not at the first scan.
    this.#target = hidTarget(opts);
    this.#where =
      'path' in this.#target
        ? this.#target.path
        : `${hex4(this.#target.vendorId)}:${hex4(this.#target.productId)}`;
    this.#decoder = new HidScanDecoder({
      layout: opts.layout,
      terminator: opts.terminator,
      maxLength: opts.maxLength,
    });
    this.#driver = opts.driver ?? 'hidraw';
    this.#loadBinding = opts.loadBinding ?? loadNodeHid;
    this.#timers = opts.timers ?? realTimers;
    this.#backoff = opts.backoff;
    this.#nowMs = opts.nowMs ?? Date.now;
    this.#log = opts.log ?? silentLogger;
    this.#health = { state: 'down', detail: `${this.name} not started`, sinceMs: this.#nowMs() };
  }

  health(): DeviceHealth {
    return this.#health;
  }

  /** Loads the HID library and tries the device once; resolves either way (see Scanner). */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#connecting = this.#connect();
    await this.#connecting;
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#retry !== null) this.#timers.clearTimeout(this.#retry);
    this.#retry = null;
    await this.#connecting;
    const device = this.#device;
    this.#device = null;
    this.#decoder.reset();
    if (device !== null) await this.#close(device);
    this.#health = { state: 'down', detail: `${this.name} stopped`, sinceMs: this.#nowMs() };
  }

  async #connect(): Promise<void> {
    this.#retry = null;
    if (!this.#running) return;
    if (this.#binding === null) {
      try {
        this.#binding = await this.#loadBinding(this.#driver);
      } catch (err) {
        // A missing shared library doesn't appear by itself, so there is nothing to retry: report once.
        this.#unavailable(hidUnavailable(err, this.#driver));
        return;
      }
      if (!this.#running) return;
    }
    let device: HidDeviceLike;
    try {
      device = await this.#open(this.#binding);
    } catch (err) {
      if (this.#running) this.#lost(errorText(err));
      return;
    }
    if (!this.#running) return this.#close(device);

    this.#device = device;
    device.on('data', (report) => this.#onReport(device, report));
    device.on('error', (err) => this.#dropped(device, errorText(err)));
    this.#attempt = 0;
    this.#badReportLogged = false;
    // Keys held or half a code from before an unplug must not type into the first code after it.
    this.#decoder.reset();
    this.#health = { state: 'ok', sinceMs: this.#nowMs() };
    this.#log.info({ device: this.name, target: this.#where, driver: this.#driver }, 'device connected');
    this.emit('up');
  }

  async #open(binding: HidBinding): Promise<HidDeviceLike> {
    if ('path' in this.#target) return binding.open(this.#target);
    const { vendorId, productId } = this.#target;
    // Enumerate every time: after a replug the same scanner has a new hidraw node (or USB address).
    const info = pickScannerInterface(await binding.devices(), vendorId, productId);
    if (info === undefined) throw new Error(`no HID device ${this.#where} attached`);
    return binding.open(info.path !== undefined ? { path: info.path } : { vendorId, productId });
  }

  #onReport(device: HidDeviceLike, report: Buffer): void {
    if (this.#device !== device) return;
    const fields = { device: this.name, target: this.#where };
    const readable: ScanEvent[] = [];
    for (const event of this.#decoder.push(report)) {
      if (event.kind !== 'rejected' || event.reason !== 'bad-report') {
        readable.push(event);
        continue;
      }
      // A device that sends such reports sends one per keystroke: logged once per connection, not each.
      if (!this.#badReportLogged) {
        this.#badReportLogged = true;
        const hint = 'unreadable HID reports: is the scanner set to USB keyboard (boot) mode?';
        this.#log.warn({ ...fields, detail: event.detail }, hint);
      }
      this.emit('rejected', { reason: event.reason, detail: event.detail, partial: event.partial });
    }
    emitScanEvents(this, readable, this.#log, fields);
  }

  #dropped(device: HidDeviceLike, reason: string): void {
    if (this.#device !== device) return; // a late error from a device already let go of
    this.#device = null;
    this.#decoder.reset();
    void this.#close(device);
    if (this.#running) this.#lost(reason);
  }

  /**
   * Reports the loss once, then retries with a jittered backoff for as long as the scanner is started:
   * a cashier may replug it hours later. The bound is on the rate (backoff.maxMs), not the count.
   */
  #lost(reason: string): void {
    const detail = `${this.name} not connected: ${reason}`;
    if (this.#health.state === 'ok' || this.#attempt === 0) {
      this.#health = { state: 'down', detail, sinceMs: this.#nowMs() };
      this.#log.warn({ device: this.name, target: this.#where, reason }, 'device lost; retrying');
      this.emit('down', reason);
    } else {
      this.#health = { ...this.#health, detail };
    }
    const delayMs = backoffDelayMs(this.#attempt++, this.#backoff);
    this.#retry = this.#timers.setTimeout(() => {
      this.#connecting = this.#connect().catch((err: unknown) => {
        this.#log.error({ device: this.name, error: errorText(err) }, 'reconnect failed unexpectedly');
      });
    }, delayMs);
  }

  #unavailable(err: RegisterError): void {
    this.#health = { state: 'down', detail: `${err.code}: ${err.message}`, sinceMs: this.#nowMs() };
    const cause = err.cause === undefined ? undefined : errorText(err.cause);
    this.#log.error({ device: this.name, code: err.code, driver: this.#driver, cause }, err.message);
    this.emit('down', err.message);
  }

  async #close(device: HidDeviceLike): Promise<void> {
    try {
      await device.close();
    } catch (err) {
      // An unplugged device may fail to close; it is gone either way.
      this.#log.warn({ device: this.name, error: errorText(err) }, 'closing the HID device failed');
    }
  }
}
