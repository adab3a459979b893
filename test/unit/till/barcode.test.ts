import t from 'tap';
import fc from 'fast-check';
import {
  barcodeKeys,
  gtinCheckDigit,
  isValidGtin,
  normalizeBarcode,
  type NormalizedBarcode,
} from '../../../appliance/till/barcode.js';

t.test('normalizeBarcode: real codes, in-store codes and rejections', async (t) => {
  const ok = (kind: string, code: string): NormalizedBarcode =>
    ({ ok: true, kind, code }) as NormalizedBarcode;
  const cases: [raw: string, expected: NormalizedBarcode | string][] = [
    // GS1 codes from real packs
    ['4006381333931', ok('ean13', '4006381333931')], // STABILO pen, the classic EAN-13 example
    ['5000112637922', ok('ean13', '5000112637922')], // Coca-Cola, UK
    ['9780306406157', ok('ean13', '9780306406157')], // an ISBN-13
    ['036000291452', ok('upca', '036000291452')], // the UPC-A example in every spec
    ['0036000291452', ok('upca', '036000291452')], // the same UPC-A as the scanner's EAN-13
    ['96385074', ok('ean8', '96385074')], // the EAN-8 example
    // wrong check digits
    ['4006381333932', 'check-digit'],
    ['4006381333930', 'check-digit'],
    ['5000112637929', 'check-digit'],
    ['036000291453', 'check-digit'],
    ['0036000291453', 'check-digit'],
    ['96385075', 'check-digit'],
    ['4006381339331', 'check-digit'], // two adjacent digits swapped
    ['2012345678900', 'check-digit'], // in-store codes are checked too
    // restricted circulation: the store's own numbers, still check-digit validated
    ['2012345678903', ok('instore', '2012345678903')],
    ['2900000000001', ok('instore', '2900000000001')],
    ['0212345678909', ok('instore', '0212345678909')], // UPC-A number system 2 as EAN-13
    ['212345678909', ok('instore', '212345678909')], // UPC-A number system 2, random weight
    ['412345678903', ok('instore', '412345678903')], // UPC-A number system 4, retailer use
    ['01234565', ok('instore', '01234565')], // EAN-8 prefix 0
    ['21234569', ok('instore', '21234569')], // EAN-8 prefix 2
    // codes that are not GTINs at all
    ['4011', ok('instore', '4011')], // a PLU (bananas)
    ['12345678901234', ok('instore', '12345678901234')], // 14 digits: not a length this till checks
    ['ABC-123', ok('instore', 'ABC-123')],
    ['400638133393X', ok('instore', '400638133393X')],
    ['GIFT CARD 50', ok('instore', 'GIFT CARD 50')],
    ['x'.repeat(40), ok('instore', 'x'.repeat(40))],
    ['~', ok('instore', '~')],
    // rejections
    ['', 'empty'],
    ['   ', 'empty'],
    ['x'.repeat(41), 'too-long'],
    ['4'.repeat(41), 'too-long'],
    ['4006381333931\r\n', 'not-printable'],
    ['400638\t1333931', 'not-printable'],
    ['4006381333931\u0000', 'not-printable'],
    ['Käse', 'not-printable'],
    ['４００６３８１３３３９３１', 'not-printable'], // full-width digits from an IME
    ['٤٠٠٦٣٨١٣٣٣٩٣١', 'not-printable'], // Arabic-Indic digits
    [' 4006381333931', 'whitespace'],
    ['4006381333931 ', 'whitespace'],
  ];
  for (const [raw, expected] of cases) {
    const got = normalizeBarcode(raw);
    const label = JSON.stringify(raw);
    if (typeof expected === 'string') {
      t.equal(got.ok, false, `${label} is rejected`);
      if (!got.ok) {
        t.equal(got.reason, expected, `${label}: ${got.message}`);
        t.ok(got.message.length > 0);
      }
    } else {
      t.same(got, expected, label);
    }
  }
});

t.test('a wrong check digit says what it should be', async (t) => {
  const got = normalizeBarcode('4006381333932');
  t.same(got, {
    ok: false,
    reason: 'check-digit',
    message: '4006381333932 is not a valid EAN-13: its check digit should be 1',
  });
});

t.test('gtinCheckDigit and isValidGtin', async (t) => {
  t.equal(gtinCheckDigit('400638133393'), 1);
  t.equal(gtinCheckDigit('03600029145'), 2);
  t.equal(gtinCheckDigit('9638507'), 4);
  t.equal(gtinCheckDigit('0000000'), 0);
  t.throws(() => gtinCheckDigit(''), TypeError);
  t.throws(() => gtinCheckDigit('12a'), TypeError);
  t.ok(isValidGtin('4006381333931'));
  t.ok(isValidGtin('036000291452'));
  t.ok(isValidGtin('96385074'));
  t.notOk(isValidGtin('96385075'));
  t.notOk(isValidGtin('4011'), 'not a GTIN length');
  t.notOk(isValidGtin('40063813339a1'));
});

t.test('every single-digit error is caught', async (t) => {
  const gtin = fc
    .constantFrom(7, 11, 12)
    .chain((n) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: n, maxLength: n }))
    .map((body) => body + gtinCheckDigit(body));
  fc.assert(
    fc.property(gtin, fc.nat(), fc.integer({ min: 1, max: 9 }), (code, at, delta) => {
      const i = at % code.length;
      const wrong = code.slice(0, i) + ((Number(code[i]) + delta) % 10) + code.slice(i + 1);
      return (
        isValidGtin(code) && !isValidGtin(wrong) && normalizeBarcode(code).ok && !normalizeBarcode(wrong).ok
      );
    }),
    { numRuns: 5000, seed: 13 },
  );
  t.pass();
});

t.test('barcodeKeys: a UPC-A is found under both of its forms', async (t) => {
  const cases: [string, string[]][] = [
    ['036000291452', ['036000291452', '0036000291452']],
    ['0036000291452', ['0036000291452', '036000291452']],
    ['4006381333931', ['4006381333931']],
    ['96385074', ['96385074']],
    ['4011', ['4011']],
    ['ABC-123', ['ABC-123']],
    ['212345678909', ['212345678909', '0212345678909']],
  ];
  for (const [code, keys] of cases) t.same(barcodeKeys(code), keys, code);
  // Whatever form the scanner sends, the normalized code's keys include both forms.
  for (const raw of ['036000291452', '0036000291452']) {
    const got = normalizeBarcode(raw);
    t.ok(
      got.ok &&
        barcodeKeys(got.code).includes('0036000291452') &&
        barcodeKeys(got.code).includes('036000291452'),
    );
  }
});
