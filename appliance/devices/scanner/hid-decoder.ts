// Turns the HID boot-keyboard reports a barcode scanner in keyboard emulation sends into scanned codes.
// Pure and synchronous: the driver (node-hid) hands in each 8-byte input report and acts on the events.
// Reference: USB HID Usage Tables 1.4, Keyboard/Keypad page (0x07), and HID 1.11 appendix B (boot
// protocol: byte 0 modifiers, byte 1 reserved, bytes 2–7 the keys held down right now).

import { RegisterError } from '../../errors.js';

/** One outcome per terminated scan; a bad report is reported on its own and changes nothing. */
export type ScanEvent =
  | { kind: 'code'; code: string }
  | { kind: 'rejected'; reason: ScanRejection; partial: string; detail: string };

export type ScanRejection = 'too-long' | 'not-printable' | 'bad-report';

/** What one key types: plain, with either Shift, and with AltGr (right Alt) where the layout has it. */
export type KeyChars = readonly [plain: string, shifted: string, altGr?: string];

export interface KeyboardLayout {
  readonly name: string;
  /** HID usage ID (page 0x07) → characters. A key that is absent types nothing a barcode can hold. */
  readonly keys: Readonly<Record<number, KeyChars>>;
}

export type ScanTerminator = 'enter' | 'tab';

export interface HidScanDecoderOptions {
  layout?: KeyboardLayout;
  terminator?: ScanTerminator;
  maxLength?: number;
}

export const HID_REPORT_LENGTH = 8;

const MAX_LENGTH_LIMIT = 4096; // characters; a bound on the bound, so a typo in config can't disable it

// Modifier byte bits (HID 1.11 §8.3).
const LEFT_CTRL = 0x01;
const LEFT_SHIFT = 0x02;
const LEFT_ALT = 0x04;
const LEFT_GUI = 0x08;
const RIGHT_CTRL = 0x10;
const RIGHT_SHIFT = 0x20;
const RIGHT_ALT = 0x40; // AltGr on European layouts
const RIGHT_GUI = 0x80;
const SHIFT = LEFT_SHIFT | RIGHT_SHIFT;
// A scanner sends these only for control characters (Ctrl+] is GS in GS1 codes) or ALT+keypad codes,
// which we don't accept as barcode text.
const CONTROL = LEFT_CTRL | RIGHT_CTRL | LEFT_ALT | LEFT_GUI | RIGHT_GUI;

// Keycodes with a fixed meaning, whatever the layout.
const KEY_NONE = 0x00;
const KEY_ERROR_ROLLOVER = 0x01;
const KEY_ERROR_UNDEFINED = 0x03; // 0x01–0x03: ErrorRollOver, POSTFail, ErrorUndefined
const KEY_ENTER = 0x28;
const KEY_TAB = 0x2b;
const KEY_KEYPAD_ENTER = 0x58;
const KEY_LEFT_CTRL = 0xe0;
const KEY_RIGHT_GUI = 0xe7; // 0xe0–0xe7: modifiers, which boot reports carry in byte 0, not as keys

const TERMINATOR_KEYS: Readonly<Record<ScanTerminator, readonly number[]>> = {
  enter: [KEY_ENTER, KEY_KEYPAD_ENTER],
  tab: [KEY_TAB],
};

// The keypad types the same on every layout we know except the decimal key, which a layout may
// override. Scanners use keypad digits in "numeric keypad" mode so the layout doesn't matter for them.
// Shift is ignored here: NumLock is on for a scanner, and a PC's Shift+keypad navigation isn't text.
const KEYPAD: Readonly<Record<number, string>> = {
  0x54: '/',
  0x55: '*',
  0x56: '-',
  0x57: '+',
  0x59: '1',
  0x5a: '2',
  0x5b: '3',
  0x5c: '4',
  0x5d: '5',
  0x5e: '6',
  0x5f: '7',
  0x60: '8',
  0x61: '9',
  0x62: '0',
  0x63: '.',
};

function letters(order: string): Record<number, KeyChars> {
  const keys: Record<number, KeyChars> = {};
  for (let i = 0; i < 26; i++) keys[0x04 + i] = [order[i]!, order[i]!.toUpperCase()];
  return keys;
}

function digitRow(shifted: string): Record<number, KeyChars> {
  const keys: Record<number, KeyChars> = {};
  // The row runs 1…9 then 0 (0x1e–0x27).
  for (let i = 0; i < 10; i++) keys[0x1e + i] = [String((i + 1) % 10), shifted[i]!];
  return keys;
}

/** US English, the layout scanners ship with. */
export const US_LAYOUT: KeyboardLayout = {
  name: 'us',
  keys: {
    ...letters('abcdefghijklmnopqrstuvwxyz'),
    ...digitRow('!@#$%^&*()'),
    0x2c: [' ', ' '],
    0x2d: ['-', '_'],
    0x2e: ['=', '+'],
    0x2f: ['[', '{'],
    0x30: [']', '}'],
    0x31: ['\\', '|'],
    0x32: ['\\', '|'], // the ISO "non-US #" key; on a US layout it types what 0x31 does
    0x33: [';', ':'],
    0x34: ["'", '"'],
    0x35: ['`', '~'],
    0x36: [',', '<'],
    0x37: ['.', '>'],
    0x38: ['/', '?'],
    0x64: ['\\', '|'], // the ISO key left of Z
  },
};

export const HID_DECODER_DEFAULTS = {
  // The factory setting of almost every scanner is US keyboard emulation.
  layout: US_LAYOUT,
  // Enter is the factory suffix; Tab is the usual alternative on scanners set up for forms.
  terminator: 'enter' as ScanTerminator,
  // Characters. GS1-128 carries at most 48 data characters and EAN/UPC at most 13 (+5 add-on), so 64
  // takes every retail code while a stuck key or a scanned QR page is cut off early.
  maxLength: 64,
} as const;

/**
 * German QWERTZ (T1, as on DIN 2137 keyboards): Y and Z swap, punctuation moves, and @ { [ ] } \ ~ | €
 * need AltGr. The dead keys (´ ` ^) are left out: they type nothing on their own, so a scanner that
 * sends them would give a different code than the label shows.
 */
export const GERMAN_LAYOUT: KeyboardLayout = {
  name: 'de',
  keys: {
    ...letters('abcdefghijklmnopqrstuvwxzy'),
    0x14: ['q', 'Q', '@'],
    0x08: ['e', 'E', '€'],
    0x10: ['m', 'M', 'µ'],
    ...digitRow('!"§$%&/()='),
    0x1f: ['2', '"', '²'],
    0x20: ['3', '§', '³'],
    0x24: ['7', '/', '{'],
    0x25: ['8', '(', '['],
    0x26: ['9', ')', ']'],
    0x27: ['0', '=', '}'],
    0x2c: [' ', ' '],
    0x2d: ['ß', '?', '\\'],
    0x2f: ['ü', 'Ü'],
    0x30: ['+', '*', '~'],
    0x31: ['#', "'"],
    0x32: ['#', "'"], // the ISO key right of Ä: where German keyboards put # and '
    0x33: ['ö', 'Ö'],
    0x34: ['ä', 'Ä'],
    0x36: [',', ';'],
    0x37: ['.', ':'],
    0x38: ['-', '_'],
    0x63: [',', ','], // the keypad's decimal key types a comma on a German layout
    0x64: ['<', '>', '|'],
  },
};

export interface HidDecoderState {
  /** Keycodes down in the last accepted report: a key types only on the report where it first appears. */
  readonly held: readonly number[];
  /** The code so far, never longer than maxLength. */
  readonly buffer: string;
  /** Set once the current code is spoiled; keys are then ignored until the terminator. */
  readonly spoiled: { reason: 'too-long' | 'not-printable'; detail: string } | null;
}

export const INITIAL_HID_STATE: HidDecoderState = { held: [], buffer: '', spoiled: null };

export interface HidDecoderConfig {
  layout: KeyboardLayout;
  terminatorKeys: readonly number[];
  maxLength: number;
}

const hex = (n: number): string => '0x' + n.toString(16).padStart(2, '0');

/** What a newly pressed key means under the given modifiers. */
function keyAction(
  config: HidDecoderConfig,
  key: number,
  modifiers: number,
): { kind: 'terminator' } | { kind: 'char'; char: string } | { kind: 'not-printable'; detail: string } {
  if (config.terminatorKeys.includes(key)) return { kind: 'terminator' };
  if (modifiers & CONTROL) {
    return { kind: 'not-printable', detail: `key ${hex(key)} with modifiers ${hex(modifiers)}` };
  }
  const chars = config.layout.keys[key];
  if (chars !== undefined) {
    const char = modifiers & RIGHT_ALT ? chars[2] : modifiers & SHIFT ? chars[1] : chars[0];
    if (char !== undefined) return { kind: 'char', char };
    return {
      kind: 'not-printable',
      detail: `key ${hex(key)} types nothing with AltGr on '${config.layout.name}'`,
    };
  }
  const keypad = KEYPAD[key];
  if (keypad !== undefined && !(modifiers & RIGHT_ALT)) return { kind: 'char', char: keypad };
  return { kind: 'not-printable', detail: `key ${hex(key)} has no character on '${config.layout.name}'` };
}

/**
 * One report in, the next state and any events out. The caller keeps the state; `HidScanDecoder` is
 * that caller for the driver.
 */
export function decodeHidReport(
  config: HidDecoderConfig,
  state: HidDecoderState,
  report: Uint8Array,
): { state: HidDecoderState; events: ScanEvent[] } {
  if (report.length !== HID_REPORT_LENGTH) {
    // A report of another length isn't a boot keyboard report (a report ID prefix, a consumer-control
    // report): we can't read it, and guessing could type a wrong digit, so it is skipped, loudly.
    const detail = `report is ${report.length} bytes, a boot keyboard report is ${HID_REPORT_LENGTH}`;
    return { state, events: [{ kind: 'rejected', reason: 'bad-report', partial: '', detail }] };
  }
  const modifiers = report[0]!;
  const down: number[] = [];
  for (const key of report.subarray(2)) {
    // The keyboard is saying "too many keys, I can't tell which": the keys it lists are meaningless,
    // so the report is dropped and the last real report stays the reference for the next edge.
    if (key >= KEY_ERROR_ROLLOVER && key <= KEY_ERROR_UNDEFINED) return { state, events: [] };
    if (key === KEY_NONE || (key >= KEY_LEFT_CTRL && key <= KEY_RIGHT_GUI) || down.includes(key)) continue;
    down.push(key);
  }

  // Reports describe which keys are held, not keystrokes, and a scanner may repeat a report or keep a
  // key listed across several; only a key that was not down before is a new keystroke. That is also why
  // "11" arrives as press, release, press.
  const events: ScanEvent[] = [];
  let { buffer, spoiled } = state;
  for (const key of down) {
    if (state.held.includes(key)) continue;
    const action = keyAction(config, key, modifiers);
    if (action.kind === 'terminator') {
      if (spoiled !== null) {
        events.push({ kind: 'rejected', reason: spoiled.reason, partial: buffer, detail: spoiled.detail });
      } else if (buffer !== '') {
        events.push({ kind: 'code', code: buffer });
      }
      buffer = '';
      spoiled = null;
    } else if (spoiled !== null) {
      continue;
    } else if (action.kind === 'not-printable') {
      spoiled = { reason: 'not-printable', detail: action.detail };
    } else if (buffer.length >= config.maxLength) {
      spoiled = { reason: 'too-long', detail: `code is longer than ${config.maxLength} characters` };
    } else {
      buffer += action.char;
    }
  }
  return { state: { held: down, buffer, spoiled }, events };
}

/** Checks the options once, at start-up; a bad value is a configuration error, not a scan error. */
export function hidDecoderConfig(opts: HidScanDecoderOptions): HidDecoderConfig {
  const maxLength = opts.maxLength ?? HID_DECODER_DEFAULTS.maxLength;
  if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > MAX_LENGTH_LIMIT) {
    const message = `scanner maxLength must be an integer 1–${MAX_LENGTH_LIMIT}`;
    throw new RegisterError('CONFIG_INVALID', message, { maxLength });
  }
  const terminator = opts.terminator ?? HID_DECODER_DEFAULTS.terminator;
  const terminatorKeys = TERMINATOR_KEYS[terminator];
  if (terminatorKeys === undefined) {
    throw new RegisterError('CONFIG_INVALID', `scanner terminator must be 'enter' or 'tab'`, { terminator });
  }
  return { layout: opts.layout ?? HID_DECODER_DEFAULTS.layout, terminatorKeys, maxLength };
}

/** The decoder for one scanner: feed it every input report, in order. */
export class HidScanDecoder {
  readonly #config: HidDecoderConfig;
  #state: HidDecoderState = INITIAL_HID_STATE;

  constructor(opts: HidScanDecoderOptions = {}) {
    this.#config = hidDecoderConfig(opts);
  }

  push(report: Uint8Array): ScanEvent[] {
    const { state, events } = decodeHidReport(this.#config, this.#state, report);
    this.#state = state;
    return events;
  }

  /** Forgets a half-read code and the held keys, e.g. after the device was unplugged. */
  reset(): void {
    this.#state = INITIAL_HID_STATE;
  }
}
