// The demo store's log: every component's JSON lines in one file (`<state>/demo.log`), never on the
// terminal, which belongs to the till. Bounded: past maxBytes the file moves to `demo.log.1` (the one
// before is dropped) and a new one starts.
import { closeSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { jsonLogger, type Logger } from '../../appliance/log.js';

/** 10 MiB of log before it rotates: days of a demo store's chatter. */
export const DEMO_LOG_MAX_BYTES = 10 * 1024 * 1024;

export class LogFile {
  #fd: number | null;
  #bytes: number;

  constructor(
    readonly file: string,
    readonly maxBytes = DEMO_LOG_MAX_BYTES,
  ) {
    this.#bytes = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
    if (this.#bytes > maxBytes) this.#rotate();
    this.#fd = openSync(file, 'a', 0o640);
  }

  /** One line (its own newline included). Synchronous: a demo's log is small, and nothing queues. */
  write(line: string): void {
    if (this.#fd === null) return;
    try {
      if (this.#bytes + line.length > this.maxBytes) {
        closeSync(this.#fd);
        this.#rotate();
        this.#fd = openSync(this.file, 'a', 0o640);
      }
      this.#bytes += writeSync(this.#fd, line);
    } catch {
      // A log that cannot be written (disk full) must not stop the store.
    }
  }

  /** A logger whose lines name `component`, written here. */
  logger(component: string): Logger {
    return jsonLogger(component, (l) => this.write(l));
  }

  close(): void {
    if (this.#fd === null) return;
    closeSync(this.#fd);
    this.#fd = null;
  }

  #rotate(): void {
    try {
      renameSync(this.file, `${this.file}.1`);
    } catch {
      // nothing to move
    }
    this.#bytes = 0;
  }
}
