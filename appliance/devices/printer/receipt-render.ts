// The till's receipt document as printer bytes (ESC/POS) or as a picture (SVG), through one ReceiptLine
// description so the paper and the fleet page show the same receipt. Pure: no I/O, no clock; the caller
// sends the bytes. Card numbers appear only as "**** 1234", whatever the terminal handed over.
import receiptline from 'receiptline';
import type { receiptDoc } from '../../till/commands.js';
import { formatMinor } from '../../till/money.js';
import { drawerKickBytes, DEFAULT_DRAWER_KICK, type DrawerKick } from './escpos-status.js';

export type ReceiptDoc = ReturnType<typeof receiptDoc>;
type SaleDoc = Extract<ReceiptDoc, { kind: 'sale' }>;
type RefundDoc = Extract<ReceiptDoc, { kind: 'refund' }>;

/** Code pages the printer is driven in; 'multilingual' switches per character among cp437/852/858/866/1252. */
export type ReceiptEncoding = 'multilingual' | 'cp858' | 'cp1252' | 'cp437';

export interface ReceiptRenderOptions {
  /** Characters per line: 42 on 80 mm paper with font B or 58 mm with font A, 48 on 80 mm with font A. */
  columns: 42 | 48;
  /** Default 'multilingual': the printer's own code page table does the Euro sign and accents. */
  encoding?: ReceiptEncoding;
  /** Pulse the cash drawer (ESC p) at the start of the job, so the drawer opens even if the paper runs out. */
  drawerKick?: boolean | DrawerKick;
  /** IANA zone the time is printed in. Default UTC: the appliance's own zone is configuration, not a guess. */
  timeZone?: string;
}

/** Longest free text (store or product name) printed, characters: a bound, the printer wraps the rest. */
const MAX_TEXT = 120;

// eslint-disable-next-line no-control-regex -- dropping control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/g;

// ReceiptLine gives these characters a meaning in text (columns, properties, rules, cuts, decoration).
const SPECIAL = /[\\|{}\-=~_"`^]/g;

/** Shop-supplied text as a ReceiptLine literal: control characters dropped, special characters escaped. */
function text(s: string): string {
  return s
    .replace(CONTROL, ' ')
    .slice(0, MAX_TEXT)
    .replace(SPECIAL, (c) => `\\${c}`);
}

const money = (minor: number, currency: string): string => text(formatMinor(minor, currency));

/** Only the last four digits of whatever the terminal sent: a full PAN can never reach the paper. */
export function maskPan(maskedPan: string | undefined): string {
  const digits = (maskedPan ?? '').replace(/\D/g, '');
  return digits.length >= 4 ? `**** ${digits.slice(-4)}` : '****';
}

function formatTime(ms: number, timeZone: string): string {
  // sv-SE writes "2026-03-01 14:05:09": ISO order, 24 h, no locale surprises on a receipt.
  return new Intl.DateTimeFormat('sv-SE', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).format(new Date(ms));
}

const percent = (rateBp: number): string => `${(rateBp / 100).toFixed(3).replace(/\.?0+$/, '')}%`;

/** The tax's name, with its rate unless the name already says it ("VAT 7%"). */
const taxName = (name: string, rateBp: number): string =>
  name.includes('%') ? text(name) : `${text(name)} ${percent(rateBp)}`;

/** Two columns, left and right aligned; the right one sized to the widest amount. */
const row = (left: string, right: string): string => `${left} | ${right}`;

function header(
  doc: ReceiptDoc,
  title: string,
  o: Required<Pick<ReceiptRenderOptions, 'timeZone'>>,
): string[] {
  const lines = [
    '{width:*; border:space}',
    `^^"${text(doc.storeName)}"`,
    ...(doc.offline ? ['`~OFFLINE~`', 'Not yet sent to head office'] : []),
    '',
    `{width:*,*}`,
    row(title, `No. ${doc.receiptNo}`),
    row(
      formatTime(doc.time, o.timeZone) + (doc.clock === 'untrusted' ? ' (clock unchecked)' : ''),
      `Cashier ${text(doc.cashier)}`,
    ),
    '-',
  ];
  return lines;
}

function tenderLines(t: SaleDoc['tenders'][number] | RefundDoc['tender'], currency: string): string[] {
  if (t.kind === 'cash') return [row('Cash', money(t.amountMinor, currency))];
  const brand = 'brand' in t && t.brand ? text(t.brand) : 'Card';
  const out = [
    row(`${brand} ${maskPan('maskedPan' in t ? t.maskedPan : undefined)}`, money(t.amountMinor, currency)),
  ];
  const auth = 'authCode' in t && t.authCode ? `Auth ${text(t.authCode)}` : '';
  const mode = 'mode' in t && t.mode === 'offline' ? 'approved offline' : '';
  if (auth || mode) out.push(`|~~${[auth, mode].filter(Boolean).join(', ')}`);
  return out;
}

function footer(doc: ReceiptDoc, ids: string[]): string[] {
  return [
    '-',
    '{width:*}',
    ...(doc.offline ? ['`~OFFLINE~`'] : []),
    ...ids.map((id) => `|${id}`),
    `|Chain ${text(doc.chain)}  Seq ${doc.seq}`,
    '',
  ];
}

/** A double-width total: its amount column is twice as wide as the text. */
function total(label: string, amount: string, columns: number): string[] {
  const w = Math.min(columns - 2 * label.length - 1, 2 * amount.length + 1);
  return [`{width:*,${w}}`, row(`^"${label}"`, `^"${text(amount)}"`)];
}

function amountWidth(amounts: string[], columns: number): number {
  return Math.min(Math.floor(columns / 2), Math.max(...amounts.map((a) => a.length)) + 1);
}

function saleLines(doc: SaleDoc, o: Required<Omit<ReceiptRenderOptions, 'drawerKick'>>): string[] {
  const c = doc.currency;
  const amounts = [doc.subtotalMinor, doc.totalMinor, ...doc.lines.map((l) => l.qty * l.unitMinor)].map((m) =>
    formatMinor(m, c),
  );
  const w = amountWidth(amounts, o.columns);
  const out = [...header(doc, 'Receipt', o), `{width:*,${w}}`];
  for (const l of doc.lines) {
    const gross = l.qty * l.unitMinor;
    if (l.qty === 1) out.push(row(text(l.name), money(gross, c)));
    else out.push(`|${text(l.name)}`, row(`~~${l.qty} x ${money(l.unitMinor, c)}`, money(gross, c)));
    if (l.discountMinor > 0) out.push(row('~~Discount', money(-l.discountMinor, c)));
  }
  out.push('-', row('Subtotal', money(doc.subtotalMinor, c)));
  if (doc.discountMinor > 0) out.push(row('Discounts', money(-doc.discountMinor, c)));
  for (const t of doc.taxes)
    out.push(row(`${taxName(t.name, t.rateBp)} on ${money(t.baseMinor, c)}`, money(t.taxMinor, c)));
  out.push(...total('TOTAL', formatMinor(doc.totalMinor, c), o.columns), `{width:*,${w}}`);
  if (doc.roundingMinor !== 0)
    out.push(
      row('Cash rounding', money(doc.roundingMinor, c)),
      row('To pay', money(doc.totalMinor + doc.roundingMinor, c)),
    );
  out.push('');
  for (const t of doc.tenders) out.push(...tenderLines(t, c));
  if (doc.changeMinor > 0) out.push(row('Change', money(doc.changeMinor, c)));
  out.push(...footer(doc, [`Sale ${text(doc.saleId)}`]));
  return out;
}

function refundLines(doc: RefundDoc, o: Required<Omit<ReceiptRenderOptions, 'drawerKick'>>): string[] {
  const c = doc.currency;
  const w = amountWidth(
    [formatMinor(doc.amountMinor, c), ...doc.lines.map((l) => formatMinor(l.amountMinor, c))],
    o.columns,
  );
  const out = [
    ...header(doc, '^"REFUND"', o),
    `|Refund of receipt No. ${doc.originalReceiptNo}`,
    `{width:*,${w}}`,
  ];
  for (const l of doc.lines) {
    out.push(row(`${l.qty} x ${text(l.name)}`, money(l.amountMinor, c)));
    if (l.taxMinor > 0) out.push(row('~~of which tax', money(l.taxMinor, c)));
  }
  out.push('-', ...total('REFUNDED', formatMinor(doc.amountMinor, c), o.columns), `{width:*,${w}}`, '');
  out.push(...tenderLines(doc.tender, c));
  out.push(...footer(doc, [`Refund ${text(doc.refundId)}`, 'Original sale', text(doc.originalSaleId)]));
  return out;
}

function resolved(o: ReceiptRenderOptions): Required<Omit<ReceiptRenderOptions, 'drawerKick'>> {
  return { columns: o.columns, encoding: o.encoding ?? 'multilingual', timeZone: o.timeZone ?? 'UTC' };
}

/** The receipt as a ReceiptLine description: what both the printer bytes and the SVG are made from. */
export function receiptMarkdown(doc: ReceiptDoc, opts: ReceiptRenderOptions): string {
  const o = resolved(opts);
  return (doc.kind === 'sale' ? saleLines(doc, o) : refundLines(doc, o)).join('\n');
}

function kickCommand(kick: boolean | DrawerKick | undefined): string[] {
  if (!kick) return [];
  const bytes = drawerKickBytes(kick === true ? DEFAULT_DRAWER_KICK : kick);
  // A `command` property passes device bytes through on ESC/POS and is dropped from the SVG.
  const hex = [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
  return [`{command:${hex}}`];
}

/**
 * ESC/POS bytes for the receipt: ESC @ first, the optional drawer kick, the text, a partial cut with
 * feed (GS V B 0) and GS r 1 (the printer answers that with one status byte, which the driver reads or
 * discards).
 */
export function renderReceiptEscPos(doc: ReceiptDoc, opts: ReceiptRenderOptions): Uint8Array {
  const o = resolved(opts);
  const description = [...kickCommand(opts.drawerKick), receiptMarkdown(doc, opts)].join('\n');
  const binary = receiptline.transform(description, {
    cpl: o.columns,
    encoding: o.encoding,
    command: 'escpos',
    cutting: true,
    spacing: false,
  });
  // ReceiptLine returns the bytes as a binary string, one char per byte.
  return new Uint8Array(Buffer.from(binary, 'latin1'));
}

/**
 * The same receipt as an SVG picture. Not byte-stable: ReceiptLine puts a fresh UUID in a filter id, and
 * the picture names a web font the viewing browser may fetch (the appliance itself fetches nothing).
 */
export function renderReceiptSvg(doc: ReceiptDoc, opts: ReceiptRenderOptions): string {
  const o = resolved(opts);
  return receiptline.transform(receiptMarkdown(doc, opts), {
    cpl: o.columns,
    encoding: o.encoding,
    command: 'svg',
  });
}

/** The same receipt as plain text lines, for logs, tests and the simulator's echo. */
export function renderReceiptText(doc: ReceiptDoc, opts: ReceiptRenderOptions): string {
  const o = resolved(opts);
  return receiptline.transform(receiptMarkdown(doc, opts), {
    cpl: o.columns,
    encoding: o.encoding,
    command: 'text',
  });
}
