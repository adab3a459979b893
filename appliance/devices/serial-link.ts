// One serial port that comes back by itself: the scanner, the card terminal and a serial printer all
// sit on a cable a cashier can pull. The link opens the port, reports a loss once, retries with a
// jittered backoff, and reports when it is back. Data is handed on as it arrives; framing is the
// driver's business.
import { EventEmitter } from 'node:events';
import { read } from 'node:fs';
import { promisify } from 'node:util';
import { autoDetect, LinuxBinding, type LinuxOpenOptions } from '@serialport/bindings-cpp';
import { unixRead } from '@serialport/bindings-cpp/dist/unix-read.js';
import { SerialPortStream } from '@serialport/stream';
import { RegisterError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { backoffDelayMs, realTimers, type BackoffOptions, type DeviceHealth, type Timers } from './device.js';

/** The part of a serialport stream the link uses: `serialport`'s SerialPort, or SerialPortMock in tests. */
export interface PortLike extends EventEmitter {
  open(cb: (err: Error | null) => void): void;
  write(data: Uint8Array, cb?: (err: Error | null | undefined) => void): boolean;
  drain(cb: (err: Error | null) => void): void;
  close(cb?: (err: Error | null) => void): void;
  readonly isOpen: boolean;
}

export type OpenPort = (path: string, baudRate: number) => PortLike;

const readAsync = promisify(read);

/**
 * serialport's Linux reader treats a read of 0 bytes as "nothing yet" and reads again at once, forever
 * (bindings-cpp issue 162): a tty whose other end hung up — a pulled USB-serial adapter on some
 * chips, a pseudo-terminal whose socat died — then spins a core and is never reported lost. The port
 * is opened non-blocking with VMIN 1, where no data is EAGAIN, so 0 bytes can only mean a hang-up: it
 * is turned into serialport's own disconnect error, which closes the port and lets the link reconnect.
 */
const hangupAwareRead: typeof readAsync = (async (...args: Parameters<typeof readAsync>) => {
  const r = await readAsync(...args);
  if (r.bytesRead === 0)
    throw Object.assign(new Error('the device hung up'), { code: 'EOF', disconnect: true });
  return r;
}) as typeof readAsync;

const HangupAwareLinuxBinding: typeof LinuxBinding = {
  ...LinuxBinding,
  async open(options: LinuxOpenOptions) {
    const port = await LinuxBinding.open(options);
    port.read = (buffer, offset, length) =>
      unixRead({ binding: port, buffer, offset, length, fsReadAsync: hangupAwareRead });
    return port;
  },
};

/** The OS binding, with the hang-up fix on Linux. */
export const serialBinding = process.platform === 'linux' ? HangupAwareLinuxBinding : autoDetect();

export interface OpenSerialOptions {
  /** RTS/CTS hardware handshaking (printers with a CTS line). */
  rtscts?: boolean;
}

export const openSerialPort = (path: string, baudRate: number, opts: OpenSerialOptions = {}): PortLike =>
  new SerialPortStream({
    binding: serialBinding,
    path,
    baudRate,
    autoOpen: false,
    ...(opts.rtscts ? { rtscts: true } : {}),
  }) as unknown as PortLike;

export interface SerialLinkOptions {
  path: string;
  /** 9600 is what scanners and most ECR terminals ship set to. */
  baudRate?: number;
  /** What the device is, for logs and the cashier ("card terminal"). */
  name: string;
  open?: OpenPort;
  timers?: Timers;
  backoff?: BackoffOptions;
  nowMs?: () => number;
  log?: Logger;
}

export interface SerialLinkEvents {
  data: [chunk: Buffer];
  up: [];
  down: [reason: string];
}

export class SerialLink extends EventEmitter<SerialLinkEvents> {
  private port: PortLike | null = null;
  private running = false;
  private attempt = 0;
  private retry: unknown = null;
  private healthNow: DeviceHealth;
  private readonly log: Logger;
  private readonly openPort: OpenPort;
  private readonly timers: Timers;
  private readonly nowMs: () => number;

  constructor(private readonly opts: SerialLinkOptions) {
    super();
    this.log = opts.log ?? silentLogger;
    this.openPort = opts.open ?? openSerialPort;
    this.timers = opts.timers ?? realTimers;
    this.nowMs = opts.nowMs ?? Date.now;
    this.healthNow = { state: 'down', detail: `${opts.name} not opened yet`, sinceMs: this.nowMs() };
  }

  get isUp(): boolean {
    return this.port?.isOpen === true && this.healthNow.state === 'ok';
  }

  health(): DeviceHealth {
    return this.healthNow;
  }

  /** Starts trying to open the port; resolves after the first try, whether or not it succeeded. */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    return this.tryOpen();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.retry !== null) this.timers.clearTimeout(this.retry);
    this.retry = null;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    port?.removeAllListeners();
  }

  /** Writes and waits until the bytes have left for the device; rejects at once while the link is down. */
  write(bytes: Uint8Array): Promise<void> {
    const port = this.port;
    if (!port || !this.isUp) {
      return Promise.reject(
        new RegisterError('DEVICE_DOWN', `${this.opts.name} is not connected (${this.opts.path})`),
      );
    }
    return new Promise((resolve, reject) => {
      port.write(bytes, (err) => {
        if (err) return reject(err);
        port.drain((e) => (e ? reject(e) : resolve()));
      });
    });
  }

  private tryOpen(): Promise<void> {
    this.retry = null;
    if (!this.running) return Promise.resolve();
    let port: PortLike;
    try {
      port = this.openPort(this.opts.path, this.opts.baudRate ?? 9600);
    } catch (err) {
      this.lost(String((err as Error).message ?? err));
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      port.open((err) => {
        if (!this.running) {
          if (!err) port.close();
          return resolve();
        }
        if (err) {
          this.lost(err.message);
          return resolve();
        }
        this.port = port;
        port.on('data', (chunk: Buffer) => this.emit('data', chunk));
        // A pulled cable shows as an error and/or a close with `disconnected`; either ends this port.
        port.on('error', (e: Error) => this.dropped(port, e.message));
        port.on('close', (e?: Error | null) => this.dropped(port, e?.message ?? 'port closed'));
        this.attempt = 0;
        this.healthNow = { state: 'ok', sinceMs: this.nowMs() };
        this.log.info({ device: this.opts.name, path: this.opts.path }, 'device connected');
        this.emit('up');
        resolve();
      });
    });
  }

  private dropped(port: PortLike, reason: string): void {
    if (this.port !== port) return; // already handled (error and close both fire)
    this.port = null;
    port.removeAllListeners();
    port.on('error', () => {}); // a late error from the dead port must not crash the daemon
    if (port.isOpen) port.close();
    if (this.running) this.lost(reason);
  }

  /** Report the loss once, then retry with backoff. */
  private lost(reason: string): void {
    const wasUp = this.healthNow.state === 'ok';
    const detail = `${this.opts.name} not connected: ${reason}`;
    if (wasUp || this.attempt === 0) {
      this.healthNow = { state: 'down', detail, sinceMs: this.nowMs() };
      this.log.warn({ device: this.opts.name, path: this.opts.path, reason }, 'device lost; retrying');
      this.emit('down', reason);
    } else {
      this.healthNow = { ...this.healthNow, detail };
    }
    const delay = backoffDelayMs(this.attempt++, this.opts.backoff);
    this.retry = this.timers.setTimeout(() => void this.tryOpen(), delay);
  }
}
