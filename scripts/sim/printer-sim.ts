// A receipt printer for tests and the demo store: it takes ESC/POS over TCP (port 9100 style), the peer
// end of a pseudo-terminal pair, or an in-memory connection; decodes the byte stream back to the text a
// real printer would put on paper (receipts split at cuts), records drawer kicks, cuts and commands it
// does not know, and answers real-time status requests for the state it is put in: ok, paper near end,
// paper out, cover open, or offline (no answers, no reading). Memory is bounded throughout.
//
// Standalone: tsx scripts/sim/printer-sim.ts --tcp PORT | --pty PATH [--out FILE] [--host H]
// [--columns N] [--state S]; one JSON line per event on stdout; type a state name on stdin to switch.
import { EventEmitter, once } from 'node:events';
import { appendFileSync, realpathSync, renameSync, statSync } from 'node:fs';
import * as net from 'node:net';
import * as readline from 'node:readline';
import { pathToFileURL } from 'node:url';
import { SerialPortStream } from '@serialport/stream';
import { serialBinding } from '../../appliance/devices/serial-link.js';
import { jsonLogger, silentLogger, type Logger } from '../../appliance/log.js';

// ---------------------------------------------------------------------------------------------------
// Decoding: ESC/POS bytes → lines of text, cuts, kicks, requests.

const ESC = 0x1b;
const GS = 0x1d;
const FS = 0x1c;
const DLE = 0x10;
const NUL = 0x00;
const HT = 0x09;
const LF = 0x0a;
const FF = 0x0c;
const CR = 0x0d;

/** Longest command header (prefix, command and fixed parameters) we collect: DLE DC4 8 and ESC W are 10. */
const MAX_HEADER_BYTES = 10;
/** Longest NUL-terminated parameter run (GS k data, ESC D tab stops) before we give up on the command. */
const MAX_NUL_RUN_BYTES = 256;
/** Widest line kept, characters: 80 mm paper holds 64 in the smallest font; the rest is dropped. */
const MAX_LINE_CHARS = 256;
/** Font A is 12 dots wide, font B 9 (Epson TM series); receiptline lays out in font A. */
const FONT_DOTS = [12, 9] as const;

// Upper halves (0x80-0xff) of the code pages receiptline's `multilingual` switches between with ESC t n.
const CODE_PAGES: Record<number, string> = {
  0x00: 'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0',
  0x10: '€\ufffd‚ƒ„…†‡ˆ‰Š‹Œ\ufffdŽ\ufffd\ufffd‘’“”•–—˜™š›œ\ufffdžŸ\u00a0¡¢£¤¥¦§¨©ª«¬\u00ad®¯°±²³´µ¶·¸¹º»¼½¾¿ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ',
  0x11: 'АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмноп░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀рстуфхцчшщъыьэюяЁёЄєЇїЎў°∙·√№¤■\u00a0',
  0x12: 'ÇüéâäůćçłëŐőîŹÄĆÉĹĺôöĽľŚśÖÜŤťŁ×čáíóúĄąŽžĘę¬źČş«»░▒▓│┤ÁÂĚŞ╣║╗╝Żż┐└┴┬├─┼Ăă╚╔╩╦╠═╬¤đĐĎËďŇÍÎě┘┌█▄ŢŮ▀ÓßÔŃńňŠšŔÚŕŰýÝţ´\u00ad˝˛ˇ˘§÷¸°¨˙űŘř■\u00a0',
  0x13: 'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈ€ÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u00ad±‗¾¶§÷¸°¨·¹³²■\u00a0',
};

/** Page 1 (Katakana) is where receiptline draws rules: shown as the text renderer shows them. */
function katakanaRule(b: number): string {
  if (b === 0x95) return '-';
  if (b === 0x96) return '|';
  return b >= 0x8f && b <= 0x9f ? '+' : '?';
}

function decodeChar(page: number, b: number): string {
  if (b < 0x80) return String.fromCharCode(b);
  if (page === 1) return katakanaRule(b);
  return CODE_PAGES[page]?.[b - 0x80] ?? '?';
}

/** ESC commands of a fixed total length (prefix included), by command byte. */
const ESC_FIXED: Record<string, number> = {
  '@': 2, '!': 3, ' ': 3, '$': 4, '%': 3, '-': 3, '2': 2, '3': 3, '=': 3, '?': 3, B: 4, E: 3, G: 3, J: 3,
  K: 3, L: 2, M: 3, R: 3, S: 2, T: 3, U: 3, V: 3, W: 10, '\\': 4, a: 3, d: 3, e: 3, i: 2, m: 2, p: 5,
  r: 3, t: 3, u: 3, v: 2, '{': 3,
}; // prettier-ignore

/** GS commands of a fixed total length. */
const GS_FIXED: Record<string, number> = {
  '!': 3, $: 4, '/': 3, ':': 2, B: 3, E: 3, H: 3, I: 3, L: 4, P: 4, T: 3, W: 4, '\\': 4, '^': 5, a: 3,
  b: 3, f: 3, g: 6, h: 3, j: 3, r: 3, w: 3,
}; // prettier-ignore

/** FS commands of a fixed total length. */
const FS_FIXED: Record<string, number> = { '!': 3, '&': 2, '-': 3, '.': 2, C: 3, S: 4, W: 3, p: 4 };

type Length = number | 'nul' | 'more' | 'unknown';

/** Total header length of the command begun in `cmd` (prefix included), as far as its bytes tell. */
function headerLength(cmd: readonly number[]): Length {
  const [prefix, c, m] = cmd;
  if (c === undefined) return 'more';
  const ch = String.fromCharCode(c);
  switch (prefix) {
    case ESC:
      if (ch === '*') return 5; // ESC * m nL nH + bit image
      if (ch === '(') return 5; // ESC ( fn pL pH + parameters
      if (ch === 'D') return 'nul'; // tab stops, NUL-terminated
      if (ch === 'c') return 4; // ESC c 3|4|5 n
      return ESC_FIXED[ch] ?? 'unknown';
    case GS:
      if (ch === '(') return 5; // GS ( fn pL pH + parameters (QR and 2D codes, graphics, …)
      if (ch === 'v') return 8; // GS v 0 m xL xH yL yH + raster
      if (ch === '8') return 7; // GS 8 L p1 p2 p3 p4 + graphics data
      if (ch === '*') return 4; // GS * x y + x·y·8 bytes
      if (ch === 'V') {
        if (m === undefined) return 'more';
        return m === 0 || m === 1 || m === 0x30 || m === 0x31 ? 3 : 4;
      }
      if (ch === 'k') {
        if (m === undefined) return 'more';
        return m <= 6 ? 'nul' : 4; // GS k m d… NUL, or GS k m n d1…dn
      }
      return GS_FIXED[ch] ?? 'unknown';
    case FS:
      if (ch === '(') return 5; // FS ( fn pL pH + parameters
      if (ch === '2') return 4; // FS 2 c1 c2 + 72 bytes of a user-defined Kanji
      return FS_FIXED[ch] ?? 'unknown';
    case DLE:
      if (c === 0x04 || c === 0x05) return 3; // DLE EOT n, DLE ENQ n
      if (c === 0x14) {
        if (m === undefined) return 'more';
        if (m === 1 || m === 2) return 5; // DLE DC4 1 m t (pulse), DLE DC4 2 1 8 (power off)
        if (m === 7) return 4; // DLE DC4 7 m (buzzer)
        if (m === 8) return 10; // DLE DC4 8 1 3 20 1 6 2 8 (clear buffers)
        return 'unknown';
      }
      return 'unknown';
    default:
      return 'unknown';
  }
}

/** Bytes of data that follow a complete header (raster, barcodes, 2D codes), skipped unread. */
function dataLength(cmd: readonly number[]): number {
  const [prefix, c] = cmd;
  const at = (i: number): number => cmd[i] ?? 0;
  const ch = String.fromCharCode(c ?? 0);
  if (ch === '(') return at(3) + 256 * at(4);
  if (prefix === ESC && ch === '*') return (at(2) <= 1 ? 1 : 3) * (at(3) + 256 * at(4));
  if (prefix === GS && ch === 'v') return (at(4) + 256 * at(5)) * (at(6) + 256 * at(7));
  if (prefix === GS && ch === '8') return at(3) + 256 * at(4) + 65_536 * at(5) + 16_777_216 * at(6);
  if (prefix === GS && ch === '*') return at(2) * at(3) * 8;
  if (prefix === GS && ch === 'k') return at(3);
  if (prefix === FS && ch === '2') return 72;
  return 0;
}

export interface DecodedKick {
  /** Kick-out connector pin: 2 (m = 0) or 5 (m = 1). */
  pin: 2 | 5;
  onMs: number;
  offMs: number;
  /** Sent as DLE DC4 1 (executed at once, even offline) rather than ESC p (in order with the text). */
  realtime: boolean;
}

/** What the decoder found, in stream order. */
export interface DecoderSink {
  line(text: string): void;
  cut(kind: 'full' | 'partial'): void;
  kick(kick: DecodedKick): void;
  /** DLE EOT n: answered at once in every state but off. */
  realtimeStatus(n: number): void;
  /** GS r n (ESC v counts as GS r 1): answered in order, after what came before has printed. */
  transmitStatus(n: number): void;
  unknown(bytes: number[]): void;
}

/**
 * A streaming ESC/POS decoder: chunks may split anywhere. Text is placed by the printer's own rules
 * (absolute and relative positions in dots, print area, character scale), so a receiptline job decodes
 * to the lines receiptline's text renderer gives; double-width characters come out as "T O T A L".
 * Every command is consumed by its known length and data is skipped by its declared size; a command it
 * does not know is reported with its first two bytes, and decoding goes on after them.
 */
export class EscPosDecoder {
  private cmd: number[] = [];
  private mode: 'text' | 'command' | 'nul' | 'skip' = 'text';
  private skipLeft = 0;
  private cells: string[] = [];
  private posDots = 0;
  private leftDots = 0;
  private widthDots: number;
  private align = 0;
  private positioned = false;
  private font = 0;
  private scale = 1;
  private page = 0;
  private kanji = false;
  private kanjiLead = false;

  constructor(
    private readonly sink: DecoderSink,
    /** Characters per line in font A, for the print area until GS W says otherwise. */
    private readonly columns = 48,
  ) {
    this.widthDots = columns * FONT_DOTS[0];
  }

  feed(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      if (this.mode === 'skip') {
        const n = Math.min(this.skipLeft, chunk.length - i);
        this.skipLeft -= n;
        i += n - 1;
        if (this.skipLeft === 0) this.mode = 'text';
        continue;
      }
      this.byte(chunk[i]!);
    }
  }

  /** Hand on a line not yet ended (the stream closed without a line feed). */
  flush(): void {
    if (this.cells.length) this.endLine();
  }

  private byte(b: number): void {
    if (this.mode === 'command') return this.commandByte(b);
    if (this.mode === 'nul') {
      this.cmd.push(b);
      if (b === NUL) this.mode = 'text';
      else if (this.cmd.length > MAX_NUL_RUN_BYTES) {
        this.sink.unknown(this.cmd.slice(0, 4));
        this.mode = 'text';
      }
      return;
    }
    if (b === ESC || b === GS || b === FS || b === DLE) {
      this.cmd = [b];
      this.mode = 'command';
      return;
    }
    if (b === LF || b === FF) return this.endLine();
    if (b === CR || b === NUL) return; // CR: some drivers send CR LF; NUL: padding
    if (b === HT) {
      const col = this.column();
      this.posDots = (Math.floor(col / 8) + 1) * 8 * this.fontDots - this.leftDots;
      return;
    }
    if (b < 0x20 || b === 0x7f) return this.sink.unknown([b]);
    if (this.kanji && b >= 0x80) {
      // A two-byte character in Kanji mode: shown as one replacement character, two columns wide.
      if (!this.kanjiLead) return void (this.kanjiLead = true);
      this.kanjiLead = false;
      return this.put('\ufffd', 2);
    }
    this.put(decodeChar(this.page, b), 1);
  }

  private commandByte(b: number): void {
    this.cmd.push(b);
    const len = headerLength(this.cmd);
    if (len === 'more') return;
    if (len === 'unknown') {
      this.sink.unknown(this.cmd.slice());
      this.mode = 'text';
      return;
    }
    if (len === 'nul') {
      this.mode = 'nul';
      return;
    }
    if (this.cmd.length < Math.min(len, MAX_HEADER_BYTES)) return;
    const cmd = this.cmd;
    this.mode = 'text';
    this.execute(cmd);
    const data = dataLength(cmd);
    if (data > 0) {
      this.mode = 'skip';
      this.skipLeft = data;
    }
  }

  private get fontDots(): number {
    return FONT_DOTS[this.font] ?? FONT_DOTS[0];
  }

  private column(): number {
    return Math.round((this.leftDots + this.posDots) / this.fontDots);
  }

  private put(ch: string, width: number): void {
    const col = this.column();
    const cells = width * this.scale;
    if (col + cells <= MAX_LINE_CHARS) {
      this.cells[col] = ch;
      for (let k = 1; k < cells; k++) this.cells[col + k] = ' ';
    }
    this.posDots += this.fontDots * cells;
  }

  private endLine(): void {
    let text = Array.from(this.cells, (c) => c ?? ' ').join('');
    if (!this.positioned && this.align !== 0) {
      const width = Math.round(this.widthDots / this.fontDots);
      const body = text.trim();
      const pad = Math.max(0, this.align === 1 ? Math.floor((width - body.length) / 2) : width - body.length);
      text = ' '.repeat(Math.round(this.leftDots / this.fontDots) + pad) + body;
    }
    this.cells = [];
    this.posDots = 0;
    this.positioned = false;
    this.sink.line(text);
  }

  private reset(): void {
    // ESC @ clears the print buffer and every setting, like a printer that was just switched on.
    this.cells = [];
    this.posDots = 0;
    this.leftDots = 0;
    this.widthDots = this.columns * FONT_DOTS[0];
    this.align = 0;
    this.positioned = false;
    this.font = 0;
    this.scale = 1;
    this.page = 0;
    this.kanji = false;
    this.kanjiLead = false;
  }

  private execute(cmd: number[]): void {
    const [prefix, c, a = 0, b = 0, d = 0] = cmd;
    const ch = String.fromCharCode(c!);
    const word = a + 256 * b;
    if (prefix === ESC) {
      if (ch === '@') this.reset();
      else if (ch === '!') {
        this.font = a & 1;
        this.scale = a & 0x20 ? 2 : 1;
      } else if (ch === 'a')
        this.align = a % 0x30; // 0|48 left, 1|49 centre, 2|50 right
      else if (ch === 't') this.page = a;
      else if (ch === 'M') this.font = a % 0x30 === 1 ? 1 : 0;
      else if (ch === '$') {
        this.posDots = word;
        this.positioned = true;
      } else if (ch === '\\') {
        this.posDots += word >= 0x8000 ? word - 0x10000 : word;
        this.positioned = true;
      } else if (ch === 'd') {
        this.endLine();
        for (let k = 1; k < a; k++) this.sink.line('');
      } else if (ch === 'J') this.endLine();
      else if (ch === 'p')
        this.sink.kick({ pin: a % 0x30 === 0 ? 2 : 5, onMs: b * 2, offMs: d * 2, realtime: false });
      else if (ch === 'i' || ch === 'm') this.cutHere('partial');
      else if (ch === 'v') this.sink.transmitStatus(1);
    } else if (prefix === GS) {
      if (ch === '!') this.scale = ((a >> 4) & 0x07) + 1;
      else if (ch === 'L') this.leftDots = word;
      else if (ch === 'W') this.widthDots = word;
      else if (ch === 'V')
        this.cutHere(a === 0 || a === 0x30 || a === 65 || a === 97 || a === 103 ? 'full' : 'partial');
      else if (ch === 'r') this.sink.transmitStatus(a % 0x30);
    } else if (prefix === FS) {
      if (ch === '&') this.kanji = true;
      else if (ch === '.') this.kanji = false;
    } else if (prefix === DLE) {
      if (c === 0x04) this.sink.realtimeStatus(a);
      else if (c === 0x14 && a === 1)
        this.sink.kick({ pin: b === 0 ? 2 : 5, onMs: d * 100, offMs: d * 100, realtime: true });
    }
  }

  private cutHere(kind: 'full' | 'partial'): void {
    // A cut prints what is in the buffer first.
    if (this.cells.length) this.endLine();
    this.sink.cut(kind);
  }
}

// ---------------------------------------------------------------------------------------------------
// The simulated printer.

export type SimPrinterState = 'ok' | 'paper-near-end' | 'paper-out' | 'cover-open' | 'offline';
export const SIM_STATES: readonly SimPrinterState[] = [
  'ok',
  'paper-near-end',
  'paper-out',
  'cover-open',
  'offline',
];

/** Answers to DLE EOT 1..4 in each state (bit meanings: escpos-status.ts). */
const STATUS_BYTES: Record<Exclude<SimPrinterState, 'offline'>, readonly [number, number, number, number]> = {
  ok: [0x12, 0x12, 0x12, 0x12],
  'paper-near-end': [0x12, 0x12, 0x12, 0x1e],
  'paper-out': [0x1a, 0x32, 0x12, 0x7e],
  'cover-open': [0x1a, 0x16, 0x12, 0x12],
};

/** The answer to GS r 1: bits 0-1 near end, bits 2-3 paper end. */
const PAPER_SENSOR_BYTE: Record<Exclude<SimPrinterState, 'offline'>, number> = {
  ok: 0x00,
  'paper-near-end': 0x03,
  'paper-out': 0x0f,
  'cover-open': 0x00,
};

/** Whether paper comes out: with the paper out or the cover open a printer stops (and drops, here) the job. */
const PRINTS: Record<SimPrinterState, boolean> = {
  ok: true,
  'paper-near-end': true,
  'paper-out': false,
  'cover-open': false,
  offline: false,
};

export interface SimReceipt {
  /** Counts receipts since the simulator started. */
  seq: number;
  lines: string[];
  text: string;
  /** How it ended: a cut, or the connection closed without one. */
  cut: 'full' | 'partial' | 'none';
  atMs: number;
}

export interface SimKick extends DecodedKick {
  atMs: number;
}

export interface SimUnknown {
  /** The command's first bytes, hex. */
  bytes: string;
  atMs: number;
}

export interface PrinterSimulatorEvents {
  receipt: [receipt: SimReceipt];
  kick: [kick: SimKick];
  cut: [kind: 'full' | 'partial'];
  unknown: [u: SimUnknown];
  state: [state: SimPrinterState];
  /** A real-time status request answered. */
  status: [n: number, byte: number];
}

export interface PrinterSimulatorOptions {
  /** Characters per line in font A before a job sets its print area (receiptline always does). */
  columns?: number;
  /** Receipts kept for inspection; older ones are forgotten. */
  maxReceipts?: number;
  /** Kicks and unknown commands kept, each. */
  maxRecords?: number;
  /** Lines one receipt may hold; more are dropped (a stream without cuts must not grow without end). */
  maxLinesPerReceipt?: number;
  /** Append every receipt as text to this file (for the demo store), rotated to `.1` past maxOutBytes. */
  out?: string;
  maxOutBytes?: number;
  state?: SimPrinterState;
  nowMs?: () => number;
  log?: Logger;
}

export const SIM_DEFAULTS = {
  columns: 48,
  /** 100 receipts: a demo's worth; tests look at the last few. */
  maxReceipts: 100,
  /** 200 records of each kind. */
  maxRecords: 200,
  /** 2000 lines: ten times a long receipt. */
  maxLinesPerReceipt: 2000,
  /** 5 MiB of --out text before it rotates: some 10 000 receipts. */
  maxOutBytes: 5 * 1024 * 1024,
  /** Bytes an in-memory connection holds while offline (a stream connection is paused instead). */
  maxHeldBytes: 64 * 1024,
  /** Retry to open the pty's peer end after a loss, ms: 100 ms, doubling to 2 s (socat restarting). */
  ptyRetryMs: 100,
  ptyRetryMaxMs: 2000,
} as const;

/** An in-memory connection to the simulator: write what the driver sends; replies come to `send`. */
export interface SimConnection {
  write(chunk: Uint8Array): void;
  close(): void;
}

interface Endpoint {
  send(bytes: Buffer): void;
  /** Stop and restart reading (a stream); without them the connection holds bytes while offline. */
  pause?(): void;
  resume?(): void;
}

const hex = (bytes: number[]): string => bytes.map((b) => b.toString(16).padStart(2, '0')).join(' ');

export class PrinterSimulator extends EventEmitter<PrinterSimulatorEvents> {
  private stateNow: SimPrinterState;
  private readonly links = new Set<Link>();
  private readonly receiptsKept: SimReceipt[] = [];
  private readonly kicksKept: SimKick[] = [];
  private readonly unknownKept: SimUnknown[] = [];
  private receiptSeq = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private pty: {
    path: string;
    port: SerialPortStream | null;
    retry: NodeJS.Timeout | null;
    delayMs: number;
  } | null = null;
  /** Counters for tests and the demo. */
  readonly counts = { cuts: 0, statusRequests: 0, discardedLines: 0, discardedKicks: 0, droppedBytes: 0 };
  readonly nowMs: () => number;
  readonly log: Logger;

  constructor(readonly opts: PrinterSimulatorOptions = {}) {
    super();
    this.stateNow = opts.state ?? 'ok';
    this.nowMs = opts.nowMs ?? Date.now;
    this.log = opts.log ?? silentLogger;
  }

  get state(): SimPrinterState {
    return this.stateNow;
  }

  /** Offline stops reading and answering; leaving it reads on. Paper out and cover open drop what prints. */
  setState(state: SimPrinterState): void {
    if (state === this.stateNow) return;
    const wasOffline = this.stateNow === 'offline';
    this.stateNow = state;
    this.log.info({ state }, 'printer state');
    this.emit('state', state);
    if (state === 'offline') for (const l of this.links) l.pause();
    else if (wasOffline) for (const l of this.links) l.resume();
  }

  get receipts(): readonly SimReceipt[] {
    return this.receiptsKept;
  }

  get kicks(): readonly SimKick[] {
    return this.kicksKept;
  }

  get unknownCommands(): readonly SimUnknown[] {
    return this.unknownKept;
  }

  /** The last receipt whose text includes `text`. */
  findReceipt(text: string): SimReceipt | undefined {
    return this.receiptsKept.findLast((r) => r.text.includes(text));
  }

  /** Resolves with the first receipt from now on (or already kept) whose text includes `text`; bounded. */
  waitForReceipt(text: string, timeoutMs: number): Promise<SimReceipt> {
    const found = this.findReceipt(text);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onReceipt = (r: SimReceipt): void => {
        if (!r.text.includes(text)) return;
        clearTimeout(timer);
        this.off('receipt', onReceipt);
        resolve(r);
      };
      // A referenced timer: the wait itself keeps the process alive until it ends.
      const timer = setTimeout(() => {
        this.off('receipt', onReceipt);
        reject(new Error(`no receipt with ${JSON.stringify(text)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('receipt', onReceipt);
    });
  }

  /** An in-memory connection (for unit tests): bytes in through write(), replies to `send`. */
  connect(send: (bytes: Buffer) => void): SimConnection {
    const link = new Link(this, { send });
    this.links.add(link);
    if (this.stateNow === 'offline') link.pause();
    return {
      write: (chunk) => link.write(chunk),
      close: () => {
        link.close();
        this.links.delete(link);
      },
    };
  }

  /** Listen like a network printer; port 0 picks a free one. Resolves with the bound port. */
  async listenTcp(port = 0, host = '127.0.0.1'): Promise<number> {
    if (this.server) throw new Error('the simulator is already listening on TCP');
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    server.listen(port, host);
    await once(server, 'listening');
    const bound = (server.address() as net.AddressInfo).port;
    this.log.info({ host, port: bound }, 'listening on tcp');
    return bound;
  }

  /** Stop listening and drop every connection: the network cable pulled. */
  async closeTcp(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Serve the peer end of a pty; reopened by itself after a loss (socat restarted) until closePty(). */
  async openPty(path: string): Promise<void> {
    if (this.pty) throw new Error('the simulator already serves a pty');
    this.pty = { path, port: null, retry: null, delayMs: SIM_DEFAULTS.ptyRetryMs };
    await this.tryOpenPty();
  }

  async closePty(): Promise<void> {
    const pty = this.pty;
    this.pty = null;
    if (!pty) return;
    if (pty.retry) clearTimeout(pty.retry);
    const port = pty.port;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  async stop(): Promise<void> {
    await Promise.all([this.closeTcp(), this.closePty()]);
    for (const l of this.links) l.close();
    this.links.clear();
  }

  // --- called by the links ----------------------------------------------------------------------

  /** @internal */
  get printing(): boolean {
    return PRINTS[this.stateNow];
  }

  /** @internal The answer to DLE EOT n, or none (offline, or n out of range). */
  statusByte(n: number): number | undefined {
    if (this.stateNow === 'offline' || n < 1 || n > 4) return undefined;
    this.counts.statusRequests++;
    const byte = STATUS_BYTES[this.stateNow][n - 1]!;
    this.emit('status', n, byte);
    return byte;
  }

  /** @internal The answer to GS r n: only while printing, since it is answered in turn with the job. */
  transmitStatusByte(n: number): number | undefined {
    if (!this.printing || this.stateNow === 'offline') return undefined;
    return n === 1 ? PAPER_SENSOR_BYTE[this.stateNow] : 0x00;
  }

  /** @internal */
  recordReceipt(lines: string[], cut: SimReceipt['cut']): void {
    const receipt: SimReceipt = {
      seq: ++this.receiptSeq,
      lines,
      text: lines.join('\n'),
      cut,
      atMs: this.nowMs(),
    };
    push(this.receiptsKept, receipt, this.opts.maxReceipts ?? SIM_DEFAULTS.maxReceipts);
    this.log.info({ dir: 'in', seq: receipt.seq, lines: lines.length, cut }, 'receipt printed');
    if (this.opts.out) this.appendOut(receipt);
    this.emit('receipt', receipt);
  }

  /** @internal */
  recordCut(kind: 'full' | 'partial'): void {
    this.counts.cuts++;
    this.emit('cut', kind);
  }

  /** @internal */
  recordKick(kick: DecodedKick): void {
    const k: SimKick = { ...kick, atMs: this.nowMs() };
    push(this.kicksKept, k, this.opts.maxRecords ?? SIM_DEFAULTS.maxRecords);
    this.log.info({ dir: 'in', ...kick }, 'drawer kick');
    this.emit('kick', k);
  }

  /** @internal */
  recordUnknown(bytes: number[]): void {
    const u: SimUnknown = { bytes: hex(bytes.slice(0, 8)), atMs: this.nowMs() };
    push(this.unknownKept, u, this.opts.maxRecords ?? SIM_DEFAULTS.maxRecords);
    this.log.warn({ dir: 'in', bytes: u.bytes }, 'unknown command');
    this.emit('unknown', u);
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    const link = new Link(this, {
      send: (bytes) => void socket.write(bytes),
      pause: () => socket.pause(),
      resume: () => socket.resume(),
    });
    this.links.add(link);
    socket.on('data', (chunk: Buffer) => link.write(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.links.delete(link);
      link.close();
    });
    if (this.stateNow === 'offline') link.pause();
  }

  private async tryOpenPty(): Promise<void> {
    const pty = this.pty;
    if (!pty) return;
    pty.retry = null;
    // The hang-up-aware binding: with serialport's own, a read racing socat's death gets 0 bytes and
    // retries forever, spinning a core, and the port never closes, so the pty is never reopened.
    const port = new SerialPortStream({
      binding: serialBinding,
      path: pty.path,
      baudRate: 19_200,
      autoOpen: false,
    });
    const err = await new Promise<Error | null>((resolve) => port.open(resolve));
    if (this.pty !== pty) {
      if (!err) port.close();
      return;
    }
    if (err) {
      pty.retry = setTimeout(() => void this.tryOpenPty(), pty.delayMs);
      pty.delayMs = Math.min(pty.delayMs * 2, SIM_DEFAULTS.ptyRetryMaxMs);
      return;
    }
    pty.port = port;
    pty.delayMs = SIM_DEFAULTS.ptyRetryMs;
    const link = new Link(this, {
      send: (bytes) => void port.write(bytes),
      pause: () => port.pause(),
      resume: () => port.resume(),
    });
    this.links.add(link);
    port.on('data', (chunk: Buffer) => link.write(chunk));
    port.on('error', () => {});
    port.on('close', () => {
      this.links.delete(link);
      link.close();
      if (this.pty !== pty) return;
      pty.port = null;
      this.log.warn({ path: pty.path }, 'pty closed; reopening');
      pty.retry = setTimeout(() => void this.tryOpenPty(), pty.delayMs);
    });
    if (this.stateNow === 'offline') link.pause();
    this.log.info({ path: pty.path }, 'serving pty');
  }

  private appendOut(r: SimReceipt): void {
    const file = this.opts.out!;
    try {
      const size = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
      if (size > (this.opts.maxOutBytes ?? SIM_DEFAULTS.maxOutBytes)) renameSync(file, `${file}.1`);
      const head = `----- receipt ${r.seq} · ${new Date(r.atMs).toISOString()} · cut ${r.cut} -----`;
      appendFileSync(file, `${head}\n${r.lines.map((l) => l.trimEnd()).join('\n')}\n\n`);
    } catch (err) {
      this.log.error({ file, err: String((err as Error)?.message ?? err) }, 'cannot write --out file');
    }
  }
}

function push<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

/** One connection's stream: its own decoder (a new connection is a new stream) and current receipt. */
class Link {
  private readonly decoder: EscPosDecoder;
  private lines: string[] = [];
  private held: Buffer[] = [];
  private heldBytes = 0;
  private paused = false;
  private closed = false;

  constructor(
    private readonly sim: PrinterSimulator,
    private readonly endpoint: Endpoint,
  ) {
    const maxLines = sim.opts.maxLinesPerReceipt ?? SIM_DEFAULTS.maxLinesPerReceipt;
    this.decoder = new EscPosDecoder(
      {
        line: (text) => {
          if (!sim.printing) sim.counts.discardedLines++;
          else if (this.lines.length < maxLines) this.lines.push(text);
        },
        cut: (kind) => {
          if (!sim.printing) return;
          sim.recordCut(kind);
          if (this.lines.length) sim.recordReceipt(this.lines, kind);
          this.lines = [];
        },
        kick: (kick) => {
          // ESC p waits its turn like text, so a stopped printer does not pulse; DLE DC4 1 does at once.
          if (kick.realtime || sim.printing) sim.recordKick(kick);
          else sim.counts.discardedKicks++;
        },
        realtimeStatus: (n) => this.reply(sim.statusByte(n)),
        transmitStatus: (n) => this.reply(sim.transmitStatusByte(n)),
        unknown: (bytes) => sim.recordUnknown(bytes),
      },
      sim.opts.columns ?? SIM_DEFAULTS.columns,
    );
  }

  write(chunk: Uint8Array): void {
    if (this.closed) return;
    if (this.paused) {
      // Only in-memory connections get here: a stream is paused at its source.
      if (this.heldBytes + chunk.length > SIM_DEFAULTS.maxHeldBytes) {
        this.sim.counts.droppedBytes += chunk.length;
        return;
      }
      this.held.push(Buffer.from(chunk));
      this.heldBytes += chunk.length;
      return;
    }
    this.decoder.feed(chunk);
  }

  pause(): void {
    this.paused = true;
    this.endpoint.pause?.();
  }

  resume(): void {
    this.paused = false;
    this.endpoint.resume?.();
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const chunk of held) this.decoder.feed(chunk);
  }

  close(): void {
    if (this.closed) return;
    this.decoder.flush();
    this.closed = true;
    if (this.lines.length && this.sim.printing) this.sim.recordReceipt(this.lines, 'none');
    this.lines = [];
  }

  private reply(byte: number | undefined): void {
    if (byte === undefined || this.closed) return;
    this.endpoint.send(Buffer.of(byte));
  }
}

// ---------------------------------------------------------------------------------------------------
// Standalone.

const USAGE =
  'usage: tsx scripts/sim/printer-sim.ts --tcp PORT | --pty PATH [--out FILE] [--host HOST] [--columns N] [--state STATE]';

export interface SimArgs {
  tcp?: number;
  pty?: string;
  out?: string;
  host: string;
  columns: number;
  state: SimPrinterState;
}

export function parseSimArgs(argv: string[]): SimArgs {
  const args: SimArgs = { host: '127.0.0.1', columns: SIM_DEFAULTS.columns, state: 'ok' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    if (flag === '--tcp') {
      const port = Number(value);
      if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`--tcp ${value}: not a port`);
      args.tcp = port;
    } else if (flag === '--pty') args.pty = value;
    else if (flag === '--out') args.out = value;
    else if (flag === '--host') args.host = value;
    else if (flag === '--columns') args.columns = Number(value);
    else if (flag === '--state') {
      if (!SIM_STATES.includes(value as SimPrinterState))
        throw new Error(`--state: one of ${SIM_STATES.join(', ')}`);
      args.state = value as SimPrinterState;
    } else throw new Error(`unknown option ${flag}\n${USAGE}`);
  }
  if (args.tcp === undefined && args.pty === undefined) throw new Error(USAGE);
  return args;
}

async function main(argv: string[]): Promise<void> {
  let args: SimArgs;
  try {
    args = parseSimArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const say = (event: string, data: Record<string, unknown>): void =>
    void process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
  const sim = new PrinterSimulator({
    columns: args.columns,
    out: args.out,
    state: args.state,
    log: jsonLogger('printer-sim'),
  });
  sim.on('receipt', (r) =>
    say('receipt', { seq: r.seq, cut: r.cut, lines: r.lines.map((l) => l.trimEnd()) }),
  );
  sim.on('kick', (k) => say('kick', { ...k }));
  sim.on('unknown', (u) => say('unknown', { ...u }));
  sim.on('state', (state) => say('state', { state }));
  if (args.tcp !== undefined)
    say('listening', { tcp: { host: args.host, port: await sim.listenTcp(args.tcp, args.host) } });
  if (args.pty !== undefined) {
    await sim.openPty(args.pty);
    say('listening', { pty: args.pty });
  }
  const input = readline.createInterface({ input: process.stdin });
  input.on('line', (line) => {
    const state = line.trim() as SimPrinterState;
    if (SIM_STATES.includes(state)) sim.setState(state);
    else if (state) say('error', { message: `type one of: ${SIM_STATES.join(', ')}` });
  });
  const quit = (): void => {
    input.close();
    void sim.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  void main(process.argv.slice(2));
}
