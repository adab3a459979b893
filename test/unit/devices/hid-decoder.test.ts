// The HID boot-report decoder against byte sequences as keyboard-emulation scanners send them, and a
// property: any string the layout can type, encoded the ways scanners encode it, decodes back.
import t from 'tap';
import fc from 'fast-check';
import { isRegisterError } from '../../../appliance/errors.js';
import {
  GERMAN_LAYOUT,
  HidScanDecoder,
  US_LAYOUT,
  type HidScanDecoderOptions,
  type KeyboardLayout,
  type ScanEvent,
} from '../../../appliance/devices/scanner/hid-decoder.js';

/** A report from its 16 hex digits as a USB capture shows it, spaces allowed. */
const r = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/ /g, ''), 'hex'));
const UP = '00 00 00 00 00 00 00 00';
const ROLLOVER = '00 00 01 01 01 01 01 01';

const code = (c: string): ScanEvent => ({ kind: 'code', code: c });
const rejected = (reason: string, partial: string): { kind: string; reason: string; partial: string } => ({
  kind: 'rejected',
  reason,
  partial,
});

function decodeAll(reports: (string | Uint8Array)[], opts?: HidScanDecoderOptions): ScanEvent[] {
  const decoder = new HidScanDecoder(opts);
  return reports.flatMap((rep) => decoder.push(typeof rep === 'string' ? r(rep) : rep));
}

// A Honeywell-style scan of the STABILO EAN-13 with Enter suffix: each key a press, then all keys up.
// prettier-ignore
const EAN13_SCAN = [
  '00 00 21 00 00 00 00 00', UP, // 4
  '00 00 27 00 00 00 00 00', UP, // 0
  '00 00 27 00 00 00 00 00', UP, // 0
  '00 00 23 00 00 00 00 00', UP, // 6
  '00 00 20 00 00 00 00 00', UP, // 3
  '00 00 25 00 00 00 00 00', UP, // 8
  '00 00 1e 00 00 00 00 00', UP, // 1
  '00 00 20 00 00 00 00 00', UP, // 3
  '00 00 20 00 00 00 00 00', UP, // 3
  '00 00 20 00 00 00 00 00', UP, // 3
  '00 00 26 00 00 00 00 00', UP, // 9
  '00 00 20 00 00 00 00 00', UP, // 3
  '00 00 1e 00 00 00 00 00', UP, // 1
  '00 00 28 00 00 00 00 00', UP, // Enter
];

// prettier-ignore
const cases: [name: string, reports: string[], expected: object[], opts?: HidScanDecoderOptions][] = [
  ['EAN-13 4006381333931 with Enter', EAN13_SCAN, [code('4006381333931')]],
  ['two scans back to back', [...EAN13_SCAN, ...EAN13_SCAN], [code('4006381333931'), code('4006381333931')]],
  [
    'upper case with left Shift, lower case, upper case with right Shift',
    ['02 00 04 00 00 00 00 00', UP, '00 00 05 00 00 00 00 00', UP, '20 00 06 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00', UP],
    [code('AbC')],
  ],
  [
    'Shift pressed in its own report before the key and released after it',
    ['02 00 00 00 00 00 00 00', '02 00 1d 00 00 00 00 00', '02 00 00 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00', UP],
    [code('Z')],
  ],
  ['shifted punctuation: $ % + from the digit row and =', ['02 00 21 00 00 00 00 00', '02 00 22 00 00 00 00 00', UP, '20 00 2e 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00'], [code('$%+')]],
  ['"11" with the release in between', ['00 00 1e 00 00 00 00 00', UP, '00 00 1e 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00', UP], [code('11')]],
  ['"11" without a release is one key held: "1"', ['00 00 1e 00 00 00 00 00', '00 00 1e 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00', UP], [code('1')]],
  [
    'a second key pressed while the first is held types once; releasing the first types nothing',
    ['00 00 1e 00 00 00 00 00', '00 00 1e 1f 00 00 00 00', '00 00 1f 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00'],
    [code('12')],
  ],
  [
    'a rollover error report while a key is held is ignored and does not retype the key',
    ['00 00 1e 00 00 00 00 00', UP, '00 00 1f 00 00 00 00 00', ROLLOVER, '00 00 1f 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00', UP],
    [code('12')],
  ],
  [
    'a rollover error report between release and press keeps the release: "11"',
    ['00 00 1e 00 00 00 00 00', UP, ROLLOVER, '00 00 1e 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00', UP],
    [code('11')],
  ],
  [
    'keypad digits 1–9, 0 and keypad Enter',
    ['00 00 59 00 00 00 00 00', '00 00 5a 00 00 00 00 00', '00 00 5b 00 00 00 00 00', '00 00 5c 00 00 00 00 00',
      '00 00 5d 00 00 00 00 00', '00 00 5e 00 00 00 00 00', '00 00 5f 00 00 00 00 00', '00 00 60 00 00 00 00 00',
      '00 00 61 00 00 00 00 00', '00 00 62 00 00 00 00 00', '00 00 58 00 00 00 00 00', UP],
    [code('1234567890')],
  ],
  [
    'an over-long code is rejected, and the next code reads cleanly',
    ['00 00 1e 00 00 00 00 00', '00 00 1f 00 00 00 00 00', '00 00 20 00 00 00 00 00', '00 00 21 00 00 00 00 00',
      '00 00 22 00 00 00 00 00', '00 00 28 00 00 00 00 00', '00 00 1e 00 00 00 00 00', '00 00 28 00 00 00 00 00'],
    [rejected('too-long', '1234'), code('1')],
    { maxLength: 4 },
  ],
  ['a code of exactly maxLength is accepted', ['00 00 1e 00 00 00 00 00', '00 00 1f 00 00 00 00 00', '00 00 28 00 00 00 00 00'], [code('12')], { maxLength: 2 }],
  [
    'Escape in the middle spoils the code until Enter',
    ['00 00 1e 00 00 00 00 00', '00 00 29 00 00 00 00 00', '00 00 1f 00 00 00 00 00', '00 00 28 00 00 00 00 00', '00 00 20 00 00 00 00 00', '00 00 28 00 00 00 00 00'],
    [rejected('not-printable', '1'), code('3')],
  ],
  [
    'Ctrl+] (GS, a GS1 separator) is not barcode text',
    ['00 00 1e 00 00 00 00 00', '01 00 30 00 00 00 00 00', UP, '00 00 28 00 00 00 00 00'],
    [rejected('not-printable', '1')],
  ],
  ['AltGr on the US layout types nothing', ['40 00 14 00 00 00 00 00', '00 00 28 00 00 00 00 00'], [rejected('not-printable', '')]],
  ['Enter alone is no scan', ['00 00 28 00 00 00 00 00', UP, '00 00 58 00 00 00 00 00', UP], []],
  [
    'Tab as the terminator; Enter is then not part of a code',
    ['00 00 1e 00 00 00 00 00', '00 00 2b 00 00 00 00 00', '00 00 1f 00 00 00 00 00', '00 00 28 00 00 00 00 00', '00 00 2b 00 00 00 00 00'],
    [code('1'), rejected('not-printable', '2')],
    { terminator: 'tab' },
  ],
  [
    'Tab is not part of a code when Enter ends it',
    ['00 00 1e 00 00 00 00 00', '00 00 2b 00 00 00 00 00', '00 00 28 00 00 00 00 00'],
    [rejected('not-printable', '1')],
  ],
  [
    'modifier keycodes in the key array are ignored',
    ['02 00 e1 00 00 00 00 00', '02 00 e1 04 00 00 00 00', UP, '00 00 28 00 00 00 00 00'],
    [code('A')],
  ],
  [
    'the same key twice in one report types once',
    ['00 00 1e 1e 00 00 00 00', UP, '00 00 28 00 00 00 00 00'],
    [code('1')],
  ],
  [
    // Keycodes of a German scanner typing "YZ-12": Y sits where US has Z and vice versa, - where US has /.
    'German layout: Y and Z swap and - moves',
    ['02 00 1d 00 00 00 00 00', '20 00 1c 00 00 00 00 00', '00 00 38 00 00 00 00 00', '00 00 1e 00 00 00 00 00', '00 00 1f 00 00 00 00 00', '00 00 28 00 00 00 00 00'],
    [code('YZ-12')],
    { layout: GERMAN_LAYOUT },
  ],
  [
    'the same German keycodes read with the US layout',
    ['02 00 1d 00 00 00 00 00', '20 00 1c 00 00 00 00 00', '00 00 38 00 00 00 00 00', '00 00 1e 00 00 00 00 00', '00 00 1f 00 00 00 00 00', '00 00 28 00 00 00 00 00'],
    [code('ZY/12')],
  ],
  [
    'German layout: @ is AltGr+Q, # is the ISO key, the keypad decimal key is a comma',
    ['40 00 14 00 00 00 00 00', '00 00 32 00 00 00 00 00', '00 00 63 00 00 00 00 00', '02 00 24 00 00 00 00 00', '00 00 28 00 00 00 00 00'],
    [code('@#,/')],
    { layout: GERMAN_LAYOUT },
  ],
];

t.test('decodes recorded report sequences', async (t) => {
  for (const [name, reports, expected, opts] of cases) {
    t.match(decodeAll(reports, opts), expected, name);
    t.equal(decodeAll(reports, opts).length, expected.length, `${name}: no extra events`);
  }
});

t.test('reports of the wrong length are rejected on their own and decoding carries on', async (t) => {
  const decoder = new HidScanDecoder();
  t.same(decoder.push(r('00 00 1e 00 00 00 00 00')), []);
  // The same report with a report ID in front, as hidraw delivers it from a device with numbered reports.
  t.match(decoder.push(r('01 00 00 1f 00 00 00 00 00')), [
    { kind: 'rejected', reason: 'bad-report', partial: '', detail: /9 bytes/ },
  ]);
  t.match(decoder.push(new Uint8Array(0)), [{ kind: 'rejected', reason: 'bad-report', detail: /0 bytes/ }]);
  t.match(decoder.push(r('00 00 00 00')), [{ kind: 'rejected', reason: 'bad-report' }]);
  t.same(decoder.push(r(UP)), []);
  t.same(decoder.push(r('00 00 1f 00 00 00 00 00')), []);
  t.same(decoder.push(r('00 00 28 00 00 00 00 00')), [code('12')]);
});

t.test('reset forgets a half-read code and the held keys', async (t) => {
  const decoder = new HidScanDecoder();
  decoder.push(r('00 00 1e 00 00 00 00 00'));
  decoder.reset();
  t.same(decoder.push(r('00 00 1e 00 00 00 00 00')), [], 'the held key types again after a reset');
  t.same(decoder.push(r('00 00 28 00 00 00 00 00')), [code('1')]);
});

t.test('bad options are configuration errors', async (t) => {
  for (const opts of [{ maxLength: 0 }, { maxLength: 1.5 }, { maxLength: 1e6 }, { terminator: 'space' }]) {
    let caught: unknown;
    try {
      new HidScanDecoder(opts as HidScanDecoderOptions);
    } catch (err) {
      caught = err;
    }
    t.ok(isRegisterError(caught, 'CONFIG_INVALID'), JSON.stringify(opts));
  }
});

// ---- property: encode what a layout can type, the ways scanners send it, and decode it back ----

const LEFT_SHIFT = 0x02;
const RIGHT_SHIFT = 0x20;
const ALT_GR = 0x40;
const ENTER = 0x28;
const KEYPAD_DIGITS: Record<string, number> = Object.fromEntries(
  [...'1234567890'].map((d, i) => [d, 0x59 + i]),
);

type Stroke = { key: number; shifted: boolean; altGr: boolean };

/** Every way the layout table says a character can be typed. */
function strokesByChar(layout: KeyboardLayout): Map<string, Stroke[]> {
  const byChar = new Map<string, Stroke[]>();
  const add = (char: string, stroke: Stroke): void => {
    byChar.set(char, [...(byChar.get(char) ?? []), stroke]);
  };
  for (const [key, [plain, shifted, altGr]] of Object.entries(layout.keys)) {
    add(plain, { key: Number(key), shifted: false, altGr: false });
    add(shifted, { key: Number(key), shifted: true, altGr: false });
    if (altGr !== undefined) add(altGr, { key: Number(key), shifted: false, altGr: true });
  }
  for (const [digit, key] of Object.entries(KEYPAD_DIGITS)) add(digit, { key, shifted: false, altGr: false });
  return byChar;
}

const report = (modifiers: number, ...keys: number[]): Uint8Array =>
  Uint8Array.from([modifiers, 0, ...keys, 0, 0, 0, 0, 0, 0].slice(0, 8));

/** How one character goes over the wire: which stroke, which Shift, and what the scanner does around it. */
type Typing = { char: string; pick: number; rightShift: boolean; overlap: boolean; rollover: boolean };

function encode(strokes: Map<string, Stroke[]>, typed: Typing[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let held: number | null = null;
  for (const { char, pick, rightShift, overlap, rollover } of typed) {
    const options = strokes.get(char)!;
    const { key, shifted, altGr } = options[pick % options.length]!;
    const modifiers = (shifted ? (rightShift ? RIGHT_SHIFT : LEFT_SHIFT) : 0) | (altGr ? ALT_GR : 0);
    if (overlap && held !== null && held !== key) {
      // Fast scanners press the next key before the report that releases the last one.
      out.push(report(modifiers, held, key), report(modifiers, key));
    } else {
      if (held !== null) out.push(report(0));
      out.push(report(modifiers, key));
    }
    if (rollover) out.push(report(0, 1, 1, 1, 1, 1, 1));
    held = key;
  }
  out.push(report(0), report(0, ENTER), report(0));
  return out;
}

for (const layout of [US_LAYOUT, GERMAN_LAYOUT]) {
  t.test(`${layout.name}: any typed string of up to 64 characters decodes back`, async (t) => {
    const strokes = strokesByChar(layout);
    const typing = fc.record({
      char: fc.constantFrom(...strokes.keys()),
      pick: fc.nat(),
      rightShift: fc.boolean(),
      overlap: fc.boolean(),
      rollover: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(typing, { maxLength: 64 }), (typed) => {
        const text = typed.map((x) => x.char).join('');
        const decoder = new HidScanDecoder({ layout });
        const events = encode(strokes, typed).flatMap((rep) => decoder.push(rep));
        return JSON.stringify(events) === JSON.stringify(text === '' ? [] : [code(text)]);
      }),
      { numRuns: 300, seed: 4006381 },
    );
    t.pass('round-trips');
  });
}

t.test('random reports never produce anything longer than the bound', async (t) => {
  const anyReport = fc.oneof(
    fc.uint8Array({ minLength: 8, maxLength: 8 }),
    fc.constantFrom(report(0), report(0, ENTER)),
    fc.uint8Array({ maxLength: 10 }),
  );
  fc.assert(
    fc.property(
      fc.array(anyReport, { maxLength: 200 }),
      fc.integer({ min: 1, max: 16 }),
      (reports, maxLength) => {
        const decoder = new HidScanDecoder({ maxLength });
        return reports
          .flatMap((rep) => decoder.push(rep))
          .every((event) => (event.kind === 'code' ? event.code : event.partial).length <= maxLength);
      },
    ),
    { numRuns: 300, seed: 333931 },
  );
  t.pass('bounded');
});
