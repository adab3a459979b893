// A serial or USB-CDC scanner: one code per line on a port that may be unplugged at any time.
//
// Framing is LineScanDecoder.pushChunk on the raw bytes, not @serialport/parser-readline (which the
// design card names). parser-readline keeps everything it has read until it sees its delimiter, with no
// limit: a scanner on the wrong baud rate, or one that never sends its suffix, grows that buffer for as
// long as the daemon runs. It also splits on one fixed delimiter, so a CR-suffix scanner on a '\n'
// parser hands over nothing until some later LF. pushChunk holds at most maxLength characters of an
// unfinished line and ends a line at CR, LF or CRLF alike, so the scanner's suffix setting doesn't matter.
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../../log.js';
import type { BackoffOptions, DeviceHealth, Timers } from '../device.js';
import { SerialLink, type OpenPort } from '../serial-link.js';
import { LineScanDecoder } from './line-decoder.js';
import { emitScanEvents, SCANNER_NAME, type Scanner, type ScannerEvents } from './scanner.js';

export interface SerialScannerOptions {
  /** The port, normally the udev link `/dev/pos/scanner`. */
  path: string;
  /** Bits per second; SerialLink's default (9600) is the factory setting of serial scanners. */
  baudRate?: number;
  name?: string;
  /** Characters per code; LineScanDecoder's default (64) holds every retail symbology. */
  maxLength?: number;
  open?: OpenPort;
  timers?: Timers;
  backoff?: BackoffOptions;
  nowMs?: () => number;
  log?: Logger;
}

export class SerialScanner extends EventEmitter<ScannerEvents> implements Scanner {
  readonly name: string;
  readonly #opts: SerialScannerOptions;
  readonly #decoder: LineScanDecoder;
  readonly #log: Logger;
  readonly #nowMs: () => number;
  #link: SerialLink | null = null;
  /** What health() says while there is no link: before start() or after stop(). */
  #idle: DeviceHealth;

  constructor(opts: SerialScannerOptions) {
    super();
    this.name = opts.name ?? SCANNER_NAME;
    this.#opts = opts;
    // Built here so a bad maxLength is a CONFIG_INVALID at start-up, not at the first scan.
    this.#decoder = new LineScanDecoder({ maxLength: opts.maxLength });
    this.#log = opts.log ?? silentLogger;
    this.#nowMs = opts.nowMs ?? Date.now;
    this.#idle = { state: 'down', detail: `${this.name} not started`, sinceMs: this.#nowMs() };
  }

  health(): DeviceHealth {
    return this.#link === null ? this.#idle : this.#link.health();
  }

  async start(): Promise<void> {
    if (this.#link !== null) return;
    const { path, baudRate, open, timers, backoff, nowMs, log } = this.#opts;
    const link = new SerialLink({ path, baudRate, name: this.name, open, timers, backoff, nowMs, log });
    this.#link = link;
    const fields = { device: this.name, path };
    link.on('data', (chunk) => emitScanEvents(this, this.#decoder.pushChunk(chunk), this.#log, fields));
    // Half a code read before a cable was pulled must not glue onto the first code after it is back.
    link.on('up', () => {
      this.#decoder.reset();
      this.emit('up');
    });
    link.on('down', (reason) => {
      this.#decoder.reset();
      this.emit('down', reason);
    });
    await link.start();
  }

  async stop(): Promise<void> {
    const link = this.#link;
    if (link === null) return;
    this.#link = null;
    await link.stop();
    link.removeAllListeners();
    this.#decoder.reset();
    this.#idle = { state: 'down', detail: `${this.name} stopped`, sinceMs: this.#nowMs() };
  }
}
