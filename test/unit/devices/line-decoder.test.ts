// Line framing for serial / USB-CDC scanners: CR, LF and CRLF suffixes, empty lines, the length bound
// and non-printable input, through both the parser-readline path and the raw-chunk path.
import t from 'tap';
import fc from 'fast-check';
import { isRegisterError } from '../../../appliance/errors.js';
import type { ScanEvent } from '../../../appliance/devices/scanner/hid-decoder.js';
import {
  LineScanDecoder,
  type LineScanDecoderOptions,
} from '../../../appliance/devices/scanner/line-decoder.js';

const code = (c: string): ScanEvent => ({ kind: 'code', code: c });
const rejected = (reason: string, partial: string): object => ({ kind: 'rejected', reason, partial });

// prettier-ignore
const lineCases: [name: string, lines: string[], expected: object[], opts?: LineScanDecoderOptions][] = [
  ['a plain line', ['4006381333931'], [code('4006381333931')]],
  ['a CRLF scanner on a "\\n" parser leaves a CR behind', ['4006381333931\r'], [code('4006381333931')]],
  ['a CR scanner on a "\\n" parser sends several codes in one line', ['96385074\r4006381333931\r'], [code('96385074'), code('4006381333931')]],
  ['a LF-then-CR leftover at the start', ['\n4006381333931'], [code('4006381333931')]],
  ['empty lines are dropped', ['', '\r', '\r\n', '\n\n'], []],
  ['a line longer than the bound', ['12345', '1234'], [rejected('too-long', '1234'), code('1234')], { maxLength: 4 }],
  ['a control character', ['12\x1b[A', '\x00'], [rejected('not-printable', '12'), rejected('not-printable', '')]],
  ['a tab inside a code', ['12\t34'], [rejected('not-printable', '12')]],
  ['a garbled byte (wrong baud rate)', ['40\uFFFD63'], [rejected('not-printable', '40')]],
  ['letters, punctuation and non-ASCII text pass', ['ABC-123 /$%+.', 'Straße'], [code('ABC-123 /$%+.'), code('Straße')]],
];

t.test('pushLine: lines as @serialport/parser-readline emits them', async (t) => {
  for (const [name, lines, expected, opts] of lineCases) {
    const decoder = new LineScanDecoder(opts);
    const events = lines.flatMap((line) => decoder.pushLine(line));
    t.match(events, expected, name);
    t.equal(events.length, expected.length, `${name}: no extra events`);
  }
});

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

// prettier-ignore
const chunkCases: [name: string, chunks: (string | Uint8Array)[], expected: object[], opts?: LineScanDecoderOptions][] = [
  ['LF suffix', ['4006381333931\n'], [code('4006381333931')]],
  ['CR suffix', ['4006381333931\r'], [code('4006381333931')]],
  ['CRLF suffix gives one code, not a code and an empty line', ['4006381333931\r\n'], [code('4006381333931')]],
  ['CRLF split between chunks', ['4006381333931\r', '\n96385074\r', '\n'], [code('4006381333931'), code('96385074')]],
  ['a code split across many chunks', ['400', '6381', '3', '33931', '\n'], [code('4006381333931')]],
  ['bytes as they come off the port', [bytes('4006381333931\r\n'), bytes('96385074\r\n')], [code('4006381333931'), code('96385074')]],
  ['a UTF-8 character split between chunks stays whole', [Uint8Array.of(0x53, 0x74, 0x72, 0x61, 0xc3), Uint8Array.of(0x9f, 0x65, 0x0a)], [code('Straße')]],
  ['an invalid byte is not printable', [Uint8Array.of(0x34, 0x30, 0xff, 0x36, 0x0a)], [rejected('not-printable', '40')]],
  ['empty lines and bare line ends are dropped', ['\r\n\r\n', '\n', '\r', '\n\r'], []],
  ['nothing before the line end is nothing yet', ['4006381333931'], []],
  ['over-long across chunks, then a good code', ['123', '45', '678\r\n', '12\r\n'], [rejected('too-long', '1234'), code('12')], { maxLength: 4 }],
  ['exactly the bound is accepted', ['1234\n'], [code('1234')], { maxLength: 4 }],
  ['a control character mid-line', ['12\x0734\n56\n'], [rejected('not-printable', '12'), code('56')]],
];

t.test('pushChunk: raw chunks split anywhere', async (t) => {
  for (const [name, chunks, expected, opts] of chunkCases) {
    const decoder = new LineScanDecoder(opts);
    const events = chunks.flatMap((chunk) => decoder.pushChunk(chunk));
    t.match(events, expected, name);
    t.equal(events.length, expected.length, `${name}: no extra events`);
  }
});

t.test('reset forgets an unfinished line', async (t) => {
  const decoder = new LineScanDecoder();
  t.same(decoder.pushChunk('4006'), []);
  decoder.reset();
  t.same(decoder.pushChunk('96385074\n'), [code('96385074')]);
});

t.test('bad options are configuration errors', async (t) => {
  for (const maxLength of [0, -1, 2.5, 100_000]) {
    let caught: unknown;
    try {
      new LineScanDecoder({ maxLength });
    } catch (err) {
      caught = err;
    }
    t.ok(isRegisterError(caught, 'CONFIG_INVALID'), `maxLength ${maxLength}`);
  }
});

t.test('property: printable lines with any line ends, split anywhere, come back as the lines', async (t) => {
  const printable = fc.string({ unit: fc.constantFrom(...'0123456789ABCXYZabcxyz -./+$%ßé'), maxLength: 64 });
  const ending = fc.constantFrom('\r', '\n', '\r\n', '\r\n\r\n', '\n\n');
  const line = fc.tuple(printable, ending).map(([text, end]) => ({ text, end }));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
      const wire = bytes(lines.map((l) => l.text + l.end).join(''));
      // Cut the byte stream at arbitrary places, inside multi-byte characters and CRLFs included.
      const at = [...new Set(cuts.map((c) => (wire.length === 0 ? 0 : c % wire.length)))].sort(
        (a, b) => a - b,
      );
      const chunks = [0, ...at].map((start, i) => wire.subarray(start, [...at, wire.length][i]));
      const decoder = new LineScanDecoder();
      const events = chunks.flatMap((chunk) => decoder.pushChunk(chunk));
      const expected = lines.filter((l) => l.text !== '').map((l) => code(l.text));
      return JSON.stringify(events) === JSON.stringify(expected);
    }),
    { numRuns: 500, seed: 96385074 },
  );
  t.pass('round-trips');
});
