// What registerd sees of a barcode scanner, whichever cable it hangs on: codes, rejected reads, and
// whether it is connected. The HID and serial drivers both implement this; the daemon never knows which.
import type { EventEmitter } from 'node:events';
import type { Logger } from '../../log.js';
import type { DeviceHealth } from '../device.js';
import type { ScanEvent, ScanRejection } from './hid-decoder.js';

/** A read that produced no code: over-long, non-printable, or (HID) a report the decoder can't read. */
export interface ScanRejected {
  reason: ScanRejection;
  /** For the log and the cashier's status line: what was wrong, never the scanned text. */
  detail: string;
  /** The text read before the fault, so the UI can say "read 4006… then garbage"; not logged. */
  partial: string;
}

export interface ScannerEvents {
  scan: [code: string];
  rejected: [rejection: ScanRejected];
  up: [];
  down: [reason: string];
}

/**
 * One scanner. Constructing it does nothing; `start()` begins connecting (and resolves after the first
 * try, connected or not: a missing scanner never holds up the till), `stop()` lets go of the device.
 * A lost device is reported once with `down`, retried by itself, and announced with `up` when back.
 */
export interface Scanner extends EventEmitter<ScannerEvents> {
  /** For logs and the status line: "scanner", "scanner 2". */
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): DeviceHealth;
}

/** The default name; the daemon numbers them when there are several. */
export const SCANNER_NAME = 'scanner';

/**
 * Hands a decoder's events on as scanner events. Logs rejections without their text: a partial read can
 * be anything the scanner saw (a loyalty card, a QR code with a URL), and the log leaves the device.
 */
export function emitScanEvents(
  scanner: EventEmitter<ScannerEvents>,
  events: readonly ScanEvent[],
  log: Logger,
  fields: Record<string, unknown>,
): void {
  for (const event of events) {
    if (event.kind === 'code') {
      scanner.emit('scan', event.code);
    } else {
      const { reason, detail, partial } = event;
      log.warn({ ...fields, reason, detail, partialLength: partial.length }, 'scan rejected');
      scanner.emit('rejected', { reason, detail, partial });
    }
  }
}
