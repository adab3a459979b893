// How bytes reach a receipt printer and come back: a USB printer-class device file (/dev/usb/lp*), a
// serial port, or a raw TCP socket (port 9100). Each transport reconnects by itself with a jittered
// backoff, reports a loss once, keeps at most one write in flight and bounds every write in time, so a
// printer that stops taking data can never make the driver wait or buffer without end. What the bytes
// mean (jobs, status replies) is the driver's business.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { RegisterError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import {
  backoffDelayMs,
  realTimers,
  type BackoffOptions,
  type DeviceHealth,
  type Timers,
} from '../device.js';
import { SerialLink, openSerialPort, type OpenPort, type PortLike } from '../serial-link.js';

export interface PrinterTransportEvents {
  /** Bytes the printer sent back (status replies), as they arrive: no framing. */
  data: [chunk: Buffer];
  up: [];
  down: [reason: string];
}

/** A byte pipe to one printer. `start()` resolves after the first connection attempt, whatever its outcome. */
export interface PrinterTransport extends EventEmitter<PrinterTransportEvents> {
  /** "usb /dev/usb/lp0", "serial /dev/ttyUSB0", "tcp 10.0.0.7:9100": for logs and the cashier. */
  readonly name: string;
  readonly isUp: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Resolves once the bytes have left for the printer. Rejects with DEVICE_DOWN while down, DEVICE_BUSY
   * while an earlier write is still in flight, DEVICE_TIMEOUT when the printer stops taking data.
   */
  write(bytes: Uint8Array): Promise<void>;
  health(): DeviceHealth;
}

export const TRANSPORT_DEFAULTS = {
  /**
   * 10 000 ms for one write to leave: a receiptline job is ~6 KB, which takes ~6.5 s at 9600 baud (the
   * slowest link we drive); slower means the printer holds its flow control (offline, buffer full).
   */
  writeTimeoutMs: 10_000,
  /** USB printer class device the kernel's usblp driver creates for the first printer. */
  usbPath: '/dev/usb/lp0',
  /**
   * 20 ms between reads while a reply is expected: a printer answers DLE EOT within a few ms, so this
   * adds at most 20 ms to each of a poll's four round trips.
   */
  usbReplyReadMs: 20,
  /** 1000 ms between reads otherwise: the printer only speaks when asked, but a read also notices an unplug. */
  usbIdleReadMs: 1000,
  /** 10 000 ms after a write during which replies are expected: covers a job's GS r answer after printing. */
  usbReplyWindowMs: 10_000,
  /** 10 ms before retrying a write usblp refused with EAGAIN: its previous 8 KiB transfer is still under way. */
  usbWriteRetryMs: 10,
  /** Raw ESC/POS over TCP ("JetDirect"): what Epson, Star and Bixolon network interfaces listen on. */
  tcpPort: 9100,
  /** 3000 ms to connect: a printer on the shop LAN answers in ms; this covers a Wi-Fi one waking from power save. */
  tcpConnectTimeoutMs: 3000,
  /** 5000 ms idle before TCP keepalive probes: notices a powered-off printer while nothing is printed. */
  tcpKeepAliveMs: 5000,
  /** 19 200 baud: the config's default for serial printers (docs/configuration.md). */
  serialBaudRate: 19_200,
} as const;

/** One read of the USB device file, bytes: status replies are one byte each; ASB messages are four. */
const USB_READ_CHUNK_BYTES = 64;

export interface TransportCommonOptions {
  timers?: Timers;
  nowMs?: () => number;
  log?: Logger;
  backoff?: BackoffOptions;
  /** Longest a write may take to leave, ms. */
  writeTimeoutMs?: number;
}

/**
 * At most one write in flight, each bounded in time. When the deadline passes the caller gets
 * DEVICE_TIMEOUT at once, but the gate stays shut until the underlying write settles (a serial write
 * cannot be called back), so nothing piles up behind a printer that stopped reading.
 */
class WriteGate {
  private inFlight = false;

  constructor(
    private readonly name: string,
    private readonly timers: Timers,
    private readonly timeoutMs: () => number,
  ) {}

  run(send: () => Promise<void>, onTimeout: () => void): Promise<void> {
    if (this.inFlight)
      return Promise.reject(
        new RegisterError('DEVICE_BUSY', `${this.name} has not taken the previous data yet`),
      );
    this.inFlight = true;
    const sent = send().finally(() => {
      this.inFlight = false;
    });
    return new Promise<void>((resolve, reject) => {
      const ms = this.timeoutMs();
      const timer = this.timers.setTimeout(() => {
        reject(new RegisterError('DEVICE_TIMEOUT', `${this.name} took no data for ${ms} ms`, { ms }));
        onTimeout();
      }, ms);
      sent.then(
        () => {
          this.timers.clearTimeout(timer);
          resolve();
        },
        (err: unknown) => {
          this.timers.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }
}

const reasonOf = (err: unknown): string =>
  (err as NodeJS.ErrnoException)?.code ?? String((err as Error)?.message ?? err);

const downError = (name: string, reason: string): RegisterError =>
  new RegisterError('DEVICE_DOWN', `${name} is not connected (${reason})`, { reason });

/**
 * The reconnect loop the USB and TCP transports share (the serial one has SerialLink's): connect, report
 * up; on a loss report down once, then retry with backoff until stopped.
 */
abstract class ReconnectingTransport
  extends EventEmitter<PrinterTransportEvents>
  implements PrinterTransport
{
  abstract readonly name: string;
  protected running = false;
  protected readonly timers: Timers;
  protected readonly nowMs: () => number;
  protected readonly log: Logger;
  private connected = false;
  private attempt = 0;
  private retry: unknown = null;
  private healthNow: DeviceHealth | null = null;
  private gateNow: WriteGate | null = null;

  constructor(private readonly common: TransportCommonOptions) {
    super();
    this.timers = common.timers ?? realTimers;
    this.nowMs = common.nowMs ?? Date.now;
    this.log = common.log ?? silentLogger;
  }

  get isUp(): boolean {
    return this.connected;
  }

  health(): DeviceHealth {
    return this.healthNow ?? { state: 'down', detail: `${this.name} not opened yet` };
  }

  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    return this.tryConnect();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.retry !== null) this.timers.clearTimeout(this.retry);
    this.retry = null;
    this.connected = false;
    await this.disconnect();
  }

  write(bytes: Uint8Array): Promise<void> {
    if (!this.connected) return Promise.reject(downError(this.name, this.health().detail ?? 'down'));
    return this.gate().run(
      () => this.send(bytes),
      () => this.abortSend(),
    );
  }

  /** Open the connection and install its handlers; reject with the reason it failed. */
  protected abstract connect(): Promise<void>;
  /** Close whatever is open; idempotent, never rejects. */
  protected abstract disconnect(): Promise<void>;
  protected abstract send(bytes: Uint8Array): Promise<void>;
  /** The write's deadline passed: stop it so the connection is usable (or dropped) again. */
  protected abstract abortSend(): void;

  /** The open connection failed: close it, report once, retry. */
  protected dropped(reason: string): void {
    if (!this.connected && this.healthNow?.state !== 'ok') return;
    this.connected = false;
    void this.disconnect();
    this.lost(reason);
  }

  private gate(): WriteGate {
    this.gateNow ??= new WriteGate(
      this.name,
      this.timers,
      () => this.common.writeTimeoutMs ?? TRANSPORT_DEFAULTS.writeTimeoutMs,
    );
    return this.gateNow;
  }

  private async tryConnect(): Promise<void> {
    this.retry = null;
    if (!this.running) return;
    try {
      await this.connect();
    } catch (err) {
      this.lost(reasonOf(err));
      return;
    }
    if (!this.running) {
      await this.disconnect();
      return;
    }
    this.attempt = 0;
    this.connected = true;
    this.healthNow = { state: 'ok', sinceMs: this.nowMs() };
    this.log.info({ device: this.name }, 'printer connection up');
    this.emit('up');
  }

  private lost(reason: string): void {
    if (!this.running) return;
    const detail = `${this.name} not connected: ${reason}`;
    if (this.healthNow?.state !== 'down') {
      this.healthNow = { state: 'down', detail, sinceMs: this.nowMs() };
      this.log.warn({ device: this.name, reason }, 'printer connection lost; retrying');
      this.emit('down', reason);
    } else {
      this.healthNow = { ...this.healthNow, detail };
    }
    const delay = backoffDelayMs(this.attempt++, this.common.backoff);
    this.retry = this.timers.setTimeout(() => void this.tryConnect(), delay);
  }
}

export interface UsbLpTransportOptions extends TransportCommonOptions {
  /** The usblp device file. */
  path?: string;
  replyReadMs?: number;
  idleReadMs?: number;
  replyWindowMs?: number;
  writeRetryMs?: number;
}

/**
 * A USB printer-class device file (the kernel's usblp driver). Opened non-blocking, because a blocking
 * read would hold one of libuv's four pool threads (which also hash PINs) until the printer spoke: reads
 * are polled, briskly for a while after each write (replies only come when asked) and slowly otherwise,
 * which also notices an unplug (ENODEV, or end of file). usblp returns the printer's bytes on read only
 * for bidirectional printers; a printer without a read endpoint never answers a status request, and the
 * driver then reports it as not answering. Any character device that behaves alike (a pty) works too.
 */
export class UsbLpTransport extends ReconnectingTransport {
  readonly name: string;
  private fd: number | null = null;
  private readTimer: unknown = null;
  private readUntilMs = 0;
  private readInFlight: Promise<void> | null = null;
  private writeInFlight: Promise<void> | null = null;
  private abortCurrent: (() => void) | null = null;
  private readonly readBuf = Buffer.alloc(USB_READ_CHUNK_BYTES);

  constructor(private readonly opts: UsbLpTransportOptions = {}) {
    super(opts);
    this.name = `usb ${opts.path ?? TRANSPORT_DEFAULTS.usbPath}`;
  }

  private get path(): string {
    return this.opts.path ?? TRANSPORT_DEFAULTS.usbPath;
  }

  protected connect(): Promise<void> {
    // O_NOCTTY: a tty standing in for the printer must not become our controlling terminal.
    const flags = fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY;
    return new Promise((resolve, reject) => {
      fs.open(this.path, flags, (err, fd) => {
        if (err) return reject(err);
        this.fd = fd;
        this.scheduleRead(0);
        resolve();
      });
    });
  }

  protected async disconnect(): Promise<void> {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    if (this.readTimer !== null) this.timers.clearTimeout(this.readTimer);
    this.readTimer = null;
    this.abortCurrent?.();
    // Never close while a pool thread still uses the number: it could be reused by another open.
    await Promise.all([this.readInFlight, this.writeInFlight]);
    await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
  }

  protected send(bytes: Uint8Array): Promise<void> {
    const fd = this.fd;
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    let aborted = false;
    this.expectReplies();
    return new Promise<void>((resolve, reject) => {
      this.abortCurrent = () => {
        aborted = true;
      };
      const step = (): void => {
        if (aborted || fd === null || this.fd !== fd) return reject(downError(this.name, 'closed'));
        this.writeInFlight = new Promise<void>((done) =>
          fs.write(fd, buf, offset, buf.length - offset, null, (err, n) => {
            done();
            if (err) {
              // usblp: EAGAIN while its previous transfer is under way; a pty: while its buffer is full.
              if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') {
                this.timers.setTimeout(step, this.opts.writeRetryMs ?? TRANSPORT_DEFAULTS.usbWriteRetryMs);
                return;
              }
              reject(downError(this.name, reasonOf(err)));
              this.dropped(`write failed: ${reasonOf(err)}`);
              return;
            }
            offset += n;
            if (offset < buf.length) return step();
            this.abortCurrent = null;
            this.expectReplies();
            resolve();
          }),
        );
      };
      step();
    });
  }

  protected abortSend(): void {
    this.abortCurrent?.();
    this.abortCurrent = null;
  }

  /** Read briskly for a while: the printer answers what was just written. */
  private expectReplies(): void {
    this.readUntilMs = this.nowMs() + (this.opts.replyWindowMs ?? TRANSPORT_DEFAULTS.usbReplyWindowMs);
    if (this.readTimer !== null) {
      this.timers.clearTimeout(this.readTimer);
      this.readTimer = null;
      this.scheduleRead(0);
    }
  }

  private scheduleRead(delayMs: number): void {
    if (this.readTimer !== null || this.fd === null || this.readInFlight) return;
    this.readTimer = this.timers.setTimeout(() => {
      this.readTimer = null;
      this.readOnce();
    }, delayMs);
  }

  private nextReadDelayMs(): number {
    return this.nowMs() < this.readUntilMs
      ? (this.opts.replyReadMs ?? TRANSPORT_DEFAULTS.usbReplyReadMs)
      : (this.opts.idleReadMs ?? TRANSPORT_DEFAULTS.usbIdleReadMs);
  }

  private readOnce(): void {
    const fd = this.fd;
    if (fd === null) return;
    this.readInFlight = new Promise<void>((done) =>
      fs.read(fd, this.readBuf, 0, this.readBuf.length, null, (err, n) => {
        this.readInFlight = null;
        done();
        if (this.fd !== fd) return;
        if (err) {
          if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK')
            return this.scheduleRead(this.nextReadDelayMs());
          return this.dropped(`read failed: ${reasonOf(err)}`);
        }
        // usblp never returns 0 on a non-blocking read; a tty does once its other end is gone.
        if (n === 0) return this.dropped('device hung up');
        const chunk = Buffer.from(this.readBuf.subarray(0, n));
        this.scheduleRead(0);
        this.emit('data', chunk);
      }),
    );
  }
}

export interface TcpTransportOptions extends TransportCommonOptions {
  host: string;
  port?: number;
  connectTimeoutMs?: number;
  keepAliveMs?: number;
}

/**
 * Raw ESC/POS over TCP. Nagle is off: a 3-byte DLE EOT must leave at once, not wait for more data.
 * Network interfaces often take one connection at a time and may close an idle one; either is a loss
 * like any other and is reconnected.
 */
export class TcpTransport extends ReconnectingTransport {
  readonly name: string;
  private socket: net.Socket | null = null;

  constructor(private readonly opts: TcpTransportOptions) {
    super(opts);
    this.name = `tcp ${opts.host}:${opts.port ?? TRANSPORT_DEFAULTS.tcpPort}`;
  }

  protected connect(): Promise<void> {
    const ms = this.opts.connectTimeoutMs ?? TRANSPORT_DEFAULTS.tcpConnectTimeoutMs;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({
        host: this.opts.host,
        port: this.opts.port ?? TRANSPORT_DEFAULTS.tcpPort,
      });
      const timer = this.timers.setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection within ${ms} ms`));
      }, ms);
      socket.once('error', (err) => {
        this.timers.clearTimeout(timer);
        socket.destroy();
        reject(err);
      });
      socket.once('connect', () => {
        this.timers.clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        socket.setKeepAlive(true, this.opts.keepAliveMs ?? TRANSPORT_DEFAULTS.tcpKeepAliveMs);
        let reason = 'connection closed by the printer';
        socket.on('data', (chunk: Buffer) => this.emit('data', chunk));
        socket.on('error', (err) => {
          reason = reasonOf(err);
        });
        socket.on('close', () => {
          if (this.socket === socket) this.dropped(reason);
        });
        this.socket = socket;
        resolve();
      });
    });
  }

  protected async disconnect(): Promise<void> {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.removeAllListeners('data');
    socket.destroy();
  }

  protected send(bytes: Uint8Array): Promise<void> {
    const socket = this.socket;
    if (!socket) return Promise.reject(downError(this.name, 'closed'));
    return new Promise((resolve, reject) => {
      socket.write(bytes, (err) => (err ? reject(downError(this.name, reasonOf(err))) : resolve()));
    });
  }

  protected abortSend(): void {
    // The stream now holds part of a job: start over on a fresh connection.
    this.socket?.destroy(new Error('write timed out'));
  }
}

export interface SerialTransportOptions extends TransportCommonOptions {
  path: string;
  baudRate?: number;
  /**
   * RTS/CTS handshaking. Off by default: a cable without the CTS line would never let a byte through,
   * and a receipt (a few KB) prints faster than 19 200 baud delivers it, so the printer's buffer holds.
   */
  rtscts?: boolean;
  /** Opens the port; serialport's SerialPort unless a test hands in a mock. */
  open?: OpenPort;
}

/** A serial printer through SerialLink, which already reconnects by itself. */
export class SerialTransport extends EventEmitter<PrinterTransportEvents> implements PrinterTransport {
  readonly name: string;
  private readonly link: SerialLink;
  private readonly gate: WriteGate;
  private readonly onData = (chunk: Buffer): void => void this.emit('data', chunk);
  private readonly onUp = (): void => void this.emit('up');
  private readonly onDown = (reason: string): void => void this.emit('down', reason);

  constructor(private readonly opts: SerialTransportOptions) {
    super();
    this.name = `serial ${opts.path}`;
    this.link = new SerialLink({
      path: opts.path,
      baudRate: opts.baudRate ?? TRANSPORT_DEFAULTS.serialBaudRate,
      name: 'receipt printer',
      open: opts.open ?? ((p, baudRate) => openWithFlowControl(p, baudRate, opts.rtscts ?? false)),
      timers: opts.timers,
      backoff: opts.backoff,
      nowMs: opts.nowMs,
      log: opts.log,
    });
    this.gate = new WriteGate(
      this.name,
      opts.timers ?? realTimers,
      () => opts.writeTimeoutMs ?? TRANSPORT_DEFAULTS.writeTimeoutMs,
    );
  }

  get isUp(): boolean {
    return this.link.isUp;
  }

  health(): DeviceHealth {
    return this.link.health();
  }

  start(): Promise<void> {
    this.link.on('data', this.onData).on('up', this.onUp).on('down', this.onDown);
    return this.link.start();
  }

  async stop(): Promise<void> {
    this.link.off('data', this.onData).off('up', this.onUp).off('down', this.onDown);
    await this.link.stop();
  }

  write(bytes: Uint8Array): Promise<void> {
    // A serial write cannot be withdrawn: on a timeout the gate stays shut until the port settles it.
    return this.gate.run(
      () => this.link.write(bytes),
      () => {},
    );
  }
}

function openWithFlowControl(path: string, baudRate: number, rtscts: boolean): PortLike {
  return openSerialPort(path, baudRate, { rtscts });
}
