// Frames what a serial / USB-CDC scanner sends into scanned codes: one code per line, ended by CR, LF or
// CRLF depending on how the scanner's suffix is set. Pure: the driver feeds it either the lines that
// @serialport/parser-readline emits or the raw chunks off the port.

import { RegisterError } from '../../errors.js';
import type { ScanEvent } from './hid-decoder.js';

export interface LineScanDecoderOptions {
  maxLength?: number;
}

export const LINE_DECODER_DEFAULTS = {
  // Characters; the same bound as the HID decoder's, for the same reason (GS1-128 holds 48 at most).
  maxLength: 64,
} as const;

const MAX_LENGTH_LIMIT = 4096; // characters; a bound on the bound, so a typo in config can't disable it

// Control characters (C0, DEL, C1) are never barcode text, and U+FFFD is what a garbled or
// wrong-baud-rate byte decodes to; unpaired surrogates can't come from a well-formed line.
const NOT_PRINTABLE = /[\p{Cc}\p{Cs}\uFFFD]/u;
const LINE_END = /\r\n|\r|\n/;

const describe = (char: string): string =>
  'U+' + char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');

/** The decoder for one scanner; use either pushLine or pushChunk for a given port, not both. */
export class LineScanDecoder {
  readonly #maxLength: number;
  // The raw path's unfinished line, never longer than maxLength, and whether it has overflowed.
  #pending = '';
  #overflowed = false;
  // Bytes are decoded as UTF-8 in streaming mode, so a character split across chunks stays whole.
  #utf8 = new TextDecoder('utf-8');

  constructor(opts: LineScanDecoderOptions = {}) {
    const maxLength = opts.maxLength ?? LINE_DECODER_DEFAULTS.maxLength;
    if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > MAX_LENGTH_LIMIT) {
      const message = `scanner maxLength must be an integer 1–${MAX_LENGTH_LIMIT}`;
      throw new RegisterError('CONFIG_INVALID', message, { maxLength });
    }
    this.#maxLength = maxLength;
  }

  /**
   * A line from parser-readline. Its delimiter is one fixed string, so a CRLF scanner on a '\n' parser
   * leaves a CR at the end, and a CR scanner on a '\n' parser hands over several codes in one "line";
   * both are split here the same way as raw input. Note that parser-readline itself buffers without
   * limit until it sees its delimiter; pushChunk is the bounded path.
   */
  pushLine(line: string): ScanEvent[] {
    const events: ScanEvent[] = [];
    for (const piece of line.split(LINE_END)) this.#finish(piece, false, events);
    return events;
  }

  /** Raw bytes (or already decoded text) as they come off the port, split anywhere. */
  pushChunk(chunk: Uint8Array | string): ScanEvent[] {
    const text = typeof chunk === 'string' ? chunk : this.#utf8.decode(chunk, { stream: true });
    const events: ScanEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c !== '\r' && c !== '\n') continue;
      // A CRLF ends the line at the CR; the LF then ends an empty line, which is dropped.
      this.#append(text.slice(start, i));
      this.#finish(this.#pending, this.#overflowed, events);
      this.#pending = '';
      this.#overflowed = false;
      start = i + 1;
    }
    this.#append(text.slice(start));
    return events;
  }

  /** Forgets an unfinished line, e.g. after the port was closed. */
  reset(): void {
    this.#pending = '';
    this.#overflowed = false;
    this.#utf8 = new TextDecoder('utf-8');
  }

  #append(text: string): void {
    if (this.#overflowed) return;
    const room = this.#maxLength - this.#pending.length;
    if (text.length > room) {
      this.#pending += text.slice(0, room);
      this.#overflowed = true;
    } else {
      this.#pending += text;
    }
  }

  #finish(line: string, overflowed: boolean, events: ScanEvent[]): void {
    if (line === '' && !overflowed) return; // blank lines come from CRLF halves and idle scanners
    if (overflowed || line.length > this.#maxLength) {
      const partial = line.slice(0, this.#maxLength);
      const detail = `line is longer than ${this.#maxLength} characters`;
      events.push({ kind: 'rejected', reason: 'too-long', partial, detail });
      return;
    }
    const bad = NOT_PRINTABLE.exec(line);
    if (bad !== null) {
      const detail = `${describe(bad[0])} at position ${bad.index}`;
      events.push({ kind: 'rejected', reason: 'not-printable', partial: line.slice(0, bad.index), detail });
      return;
    }
    events.push({ kind: 'code', code: line });
  }
}
