// What the scanner (or the cashier's keypad) hands the till, sorted into GS1 codes whose check digit
// must be right and the store's own codes, before anything is looked up in the catalog.

export type BarcodeKind = 'ean13' | 'upca' | 'ean8' | 'instore';

export type BarcodeRejection = 'empty' | 'too-long' | 'not-printable' | 'whitespace' | 'check-digit';

export type NormalizedBarcode =
  { ok: true; kind: BarcodeKind; code: string } | { ok: false; reason: BarcodeRejection; message: string };

/** The catalog's own bound on a barcode (ProductSchema.barcodes). */
export const MAX_BARCODE_LENGTH = 40;

const GTIN_KIND: Readonly<Record<number, 'ean8' | 'upca' | 'ean13'>> = { 8: 'ean8', 12: 'upca', 13: 'ean13' };
const GTIN_NAME = { ean8: 'EAN-8', upca: 'UPC-A', ean13: 'EAN-13' } as const;

/** The GS1 check digit for the digits before it: weights 3, 1, 3, … from the right (mod 10). */
export function gtinCheckDigit(body: string): number {
  if (!/^[0-9]+$/.test(body)) throw new TypeError(`a GTIN body is digits only, got ${JSON.stringify(body)}`);
  let sum = 0;
  for (let i = body.length - 1, weight = 3; i >= 0; i--, weight = 4 - weight) {
    sum += (body.charCodeAt(i) - 48) * weight;
  }
  return (10 - (sum % 10)) % 10;
}

/** Whether code is an EAN-8, UPC-A or EAN-13 with the right check digit. */
export function isValidGtin(code: string): boolean {
  if (!/^[0-9]+$/.test(code) || GTIN_KIND[code.length] === undefined) return false;
  return gtinCheckDigit(code.slice(0, -1)) === code.charCodeAt(code.length - 1) - 48;
}

/**
 * Restricted-circulation numbers (GS1 General Specifications): the store assigns them itself, often
 * with a weight or price inside, so they are looked up among in-store codes. EAN-13 prefixes 20–29, and
 * 02 and 04, which are UPC-A number systems 2 (random weight) and 4 (retailer use); EAN-8 prefixes 0 and 2.
 */
function isRestrictedCirculation(code: string): boolean {
  switch (code.length) {
    case 13:
      return code[0] === '2' || code.startsWith('02') || code.startsWith('04');
    case 12:
      return code[0] === '2' || code[0] === '4';
    case 8:
      return code[0] === '0' || code[0] === '2';
    default:
      return false;
  }
}

function reject(reason: BarcodeRejection, message: string): NormalizedBarcode {
  return { ok: false, reason, message };
}

/**
 * Sorts a scanned or keyed code. Digits of GTIN length (8, 12, 13) must carry the right check digit; an
 * EAN-13 with a leading 0 is a UPC-A and comes back in its 12-digit form. Any other printable ASCII
 * code, digits of another length included (PLUs, short in-store codes), is in-store. Nothing is trimmed:
 * the scanner reader owns its framing, and a stray space would only make the lookup miss.
 */
export function normalizeBarcode(raw: string): NormalizedBarcode {
  if (raw.length === 0 || /^ +$/.test(raw)) return reject('empty', 'the barcode is empty');
  if (raw.length > MAX_BARCODE_LENGTH) {
    return reject('too-long', `the barcode is ${raw.length} characters long; at most ${MAX_BARCODE_LENGTH}`);
  }
  const bad = /[^\x20-\x7e]/.exec(raw);
  if (bad) {
    const at = bad.index;
    const unit = raw.charCodeAt(at).toString(16).padStart(4, '0');
    return reject(
      'not-printable',
      `the barcode has a character other than printable ASCII (U+${unit} at ${at})`,
    );
  }
  if (raw.startsWith(' ') || raw.endsWith(' ')) {
    return reject('whitespace', 'the barcode has leading or trailing spaces');
  }
  const kind = /^[0-9]+$/.test(raw) ? GTIN_KIND[raw.length] : undefined;
  if (kind === undefined) return { ok: true, kind: 'instore', code: raw };
  if (!isValidGtin(raw)) {
    const expected = gtinCheckDigit(raw.slice(0, -1));
    return reject(
      'check-digit',
      `${raw} is not a valid ${GTIN_NAME[kind]}: its check digit should be ${expected}`,
    );
  }
  if (isRestrictedCirculation(raw)) return { ok: true, kind: 'instore', code: raw };
  if (kind === 'ean13' && raw[0] === '0') return { ok: true, kind: 'upca', code: raw.slice(1) };
  return { ok: true, kind, code: raw };
}

/**
 * The forms under which a code may be listed in the catalog: a UPC-A as itself and as its EAN-13 form
 * with a leading 0 (and the reverse), the code as given first. Anything else only as itself.
 */
export function barcodeKeys(code: string): string[] {
  if (!/^[0-9]+$/.test(code)) return [code];
  if (code.length === 12) return [code, `0${code}`];
  if (code.length === 13 && code[0] === '0') return [code, code.slice(1)];
  return [code];
}
