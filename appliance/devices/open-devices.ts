// The countertop as configured: builds each device's driver from `devices` in the config, hands the
// register what it needs (the terminal, printing, the drawer, health) and feeds scans to it. Every
// driver starts and stops here, so registerd only holds one thing.
import * as path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Clock } from '../clock.js';
import type { JournalFs } from '../journal/fs.js';
import { SimulatedCardTerminal, type CardTerminal } from '../till/card.js';
import type { Devices, Register } from '../till/register.js';
import { NO_DEVICE, type DeviceHealth } from './device.js';
import { EcrTerminal } from './terminal/ecr-terminal.js';
import { EscPosPrinter } from './printer/printer.js';
import { SerialTransport, TcpTransport, UsbLpTransport, type PrinterTransport } from './printer/transport.js';
import { HidScanner } from './scanner/hid-scanner.js';
import { SerialScanner } from './scanner/serial-scanner.js';
import type { Scanner } from './scanner/scanner.js';
import { GERMAN_LAYOUT, US_LAYOUT } from './scanner/hid-decoder.js';

export interface DeviceSet {
  /** What the register is given. */
  devices: Devices;
  terminal: CardTerminal;
  printer: EscPosPrinter | null;
  scanners: Scanner[];
  /** Starts every driver; a device that is not there yet is retried by its driver, never fatal. */
  start(register: Register): Promise<void>;
  stop(): Promise<void>;
}

export interface OpenDevicesOptions {
  stateDir: string;
  clock: Clock;
  log: Logger;
  /** A terminal to use instead of the configured one (tests). */
  terminal?: CardTerminal;
  /** The file system under the reprint queue: the real one unless the soak's simulated power. */
  fs?: JournalFs;
  /** Called when a device's health changes (the control socket pushes the state). */
  onChange?: () => void;
}

type DeviceConfig = Config['devices'];

function openTerminal(cfg: DeviceConfig['terminal'], o: OpenDevicesOptions): CardTerminal {
  if (cfg.kind === 'simulated') return new SimulatedCardTerminal();
  return new EcrTerminal({
    path: cfg.path,
    baudRate: cfg.baudRate,
    ackTimeoutMs: cfg.ackTimeoutMs,
    resultTimeoutMs: cfg.resultTimeoutMs,
    nowMs: () => o.clock.nowMs(),
    log: o.log,
  });
}

function openPrinter(cfg: DeviceConfig['printer'], o: OpenDevicesOptions): EscPosPrinter | null {
  if (cfg.kind === 'none') return null;
  const common = { nowMs: () => o.clock.nowMs(), log: o.log };
  let transport: PrinterTransport;
  if (cfg.kind === 'usb') transport = new UsbLpTransport({ ...common, path: cfg.path });
  else if (cfg.kind === 'serial')
    transport = new SerialTransport({ ...common, path: cfg.path, baudRate: cfg.baudRate });
  else transport = new TcpTransport({ ...common, host: cfg.host, port: cfg.port });
  return new EscPosPrinter({
    transport,
    queueFile: path.join(o.stateDir, 'reprint-queue.json'),
    ...(o.fs ? { queueFs: o.fs } : {}),
    render: {
      columns: cfg.columns,
      encoding: cfg.encoding,
      ...(cfg.timeZone ? { timeZone: cfg.timeZone } : {}),
    },
    ...common,
    onChange: () => o.onChange?.(),
  });
}

function openScanner(cfg: DeviceConfig['scanners'][number], name: string, o: OpenDevicesOptions): Scanner {
  const common = { name, nowMs: () => o.clock.nowMs(), log: o.log };
  if (cfg.kind === 'serial') return new SerialScanner({ ...common, path: cfg.path, baudRate: cfg.baudRate });
  return new HidScanner({
    ...common,
    ...(cfg.path !== undefined ? { path: cfg.path } : { vendorId: cfg.vendorId, productId: cfg.productId }),
    driver: cfg.driver,
    layout: cfg.layout === 'de' ? GERMAN_LAYOUT : US_LAYOUT,
  });
}

export function openDevices(cfg: DeviceConfig, o: OpenDevicesOptions): DeviceSet {
  const terminal = o.terminal ?? openTerminal(cfg.terminal, o);
  const printer = openPrinter(cfg.printer, o);
  const scannerNames = cfg.scanners.map((_, i) => (i === 0 ? 'scanner' : `scanner${i + 1}`));
  const scanners = cfg.scanners.map((s, i) => openScanner(s, scannerNames[i]!, o));

  const health = (): Record<string, DeviceHealth> => {
    const all: Record<string, DeviceHealth> = {
      terminal: terminal.health?.() ?? { state: 'ok', detail: 'simulated' },
      printer: printer?.health() ?? NO_DEVICE,
    };
    if (scanners.length === 0) all.scanner = NO_DEVICE;
    scanners.forEach((s, i) => (all[scannerNames[i]!] = s.health()));
    return all;
  };

  const devices: Devices = {
    terminal,
    health,
    ...(printer ? { print: (doc) => printer.print(doc), kickDrawer: () => printer.kickDrawer() } : {}),
  };

  return {
    devices,
    terminal,
    printer,
    scanners,
    async start(register) {
      terminal.setEventHandler?.((e) => register.onTerminalEvent(e));
      for (const s of scanners) {
        s.on('scan', (code) => void register.scanned(code));
        s.on('rejected', () => o.onChange?.());
        s.on('up', () => o.onChange?.());
        s.on('down', () => o.onChange?.());
      }
      if (terminal instanceof EcrTerminal) {
        terminal.on('up', () => o.onChange?.());
        terminal.on('down', () => o.onChange?.());
      }
      await Promise.all([terminal.start?.(), printer?.start(), ...scanners.map((s) => s.start())]);
    },
    async stop() {
      await Promise.allSettled([terminal.stop?.(), printer?.stop(), ...scanners.map((s) => s.stop())]);
      for (const s of scanners) s.removeAllListeners();
    },
  };
}
