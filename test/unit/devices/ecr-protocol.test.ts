// The ECR protocol's messages and framing (docs/protocols/ecr.md): every message round-trips, lines
// split anywhere reassemble, and every kind of bad line becomes a protocol error that never quotes a
// card number, with the next good line unaffected.
import t from 'tap';
import {
  EcrFramer,
  MAX_LINE_BYTES,
  decodeLine,
  encodePosMessage,
  encodeTerminalMessage,
  isWireTxn,
  looksLikePan,
  redactDigits,
  type EcrSide,
  type FrameEvent,
  type PosMessage,
  type TerminalMessage,
} from '../../../appliance/devices/terminal/ecr-protocol.js';

const TXN = '01890a5d-ac96-774b-bcce-b302099a8057'; // a UUIDv7, as the register makes them
const PAN = '4111111111111111'; // the Visa test card: Luhn-valid

const posMessages: PosMessage[] = [
  {
    v: 1,
    type: 'payment.request',
    txn: TXN,
    amount: 1299,
    currency: 'EUR',
    offlineAllowed: true,
    kind: 'sale',
  },
  {
    v: 1,
    type: 'payment.request',
    txn: 't-2',
    amount: 1,
    currency: 'USD',
    offlineAllowed: false,
    kind: 'refund',
  },
  { v: 1, type: 'abort', txn: TXN },
  { v: 1, type: 'status.query', txn: TXN },
  { v: 1, type: 'ack', txn: TXN, of: 'payment.result' },
  { v: 1, type: 'ack', txn: TXN, of: 'saf.result' },
];

const terminalMessages: TerminalMessage[] = [
  { v: 1, type: 'ack', txn: TXN },
  { v: 1, type: 'status', txn: TXN, message: 'Karte einführen · 12,99 €' },
  {
    v: 1,
    type: 'payment.result',
    txn: TXN,
    outcome: 'approved',
    mode: 'online',
    authCode: '123456',
    maskedPan: '************4242',
    brand: 'VISA',
  },
  {
    v: 1,
    type: 'payment.result',
    txn: TXN,
    outcome: 'approved',
    mode: 'offline',
    authCode: 'Y1',
    maskedPan: 'XXXXXXXXXXXX0005',
    brand: 'Mastercard',
    saf: true,
  },
  {
    v: 1,
    type: 'payment.result',
    txn: TXN,
    outcome: 'declined',
    mode: 'offline',
    reason: 'offline_not_allowed',
    message: 'Offline: not allowed',
  },
  { v: 1, type: 'payment.result', txn: TXN, outcome: 'cancelled', mode: 'online' },
  { v: 1, type: 'payment.result', txn: TXN, outcome: 'error', mode: 'online', reason: 'busy' },
  { v: 1, type: 'status.reply', txn: TXN, state: 'unknown' },
  { v: 1, type: 'status.reply', txn: TXN, state: 'in_progress' },
  {
    v: 1,
    type: 'status.reply',
    txn: TXN,
    state: 'final',
    result: { outcome: 'approved', mode: 'offline', authCode: 'Y1', saf: true, maskedPan: '**********1234' },
  },
  { v: 1, type: 'saf.result', txn: TXN, outcome: 'approved', authCode: 'A1B2C3' },
  { v: 1, type: 'saf.result', txn: TXN, outcome: 'declined', message: 'Declined by the issuer' },
];

const messagesOf = <M>(events: FrameEvent<M>[]) =>
  events.map((e) => (e.kind === 'message' ? e.message : { error: e.error }));

t.test('every message round-trips through encode and the framer', async (t) => {
  const fromPos = new EcrFramer('pos');
  for (const m of posMessages) {
    const frame = encodePosMessage(m);
    t.equal(frame[frame.length - 1], 0x0a, `${m.type}: one LF-terminated line`);
    t.equal(frame.indexOf(0x0a), frame.length - 1, `${m.type}: no LF inside`);
    t.same(messagesOf(fromPos.push(frame)), [m], `pos ${m.type}`);
  }
  const fromTerminal = new EcrFramer('terminal');
  for (const m of terminalMessages) {
    t.same(messagesOf(fromTerminal.push(encodeTerminalMessage(m))), [m], `terminal ${m.type}`);
  }
});

t.test(
  'lines split at every byte, in any chunking, reassemble (UTF-8 split mid-character too)',
  async (t) => {
    const stream = Buffer.concat(terminalMessages.map(encodeTerminalMessage));
    const cut = stream.indexOf('€') + 1; // inside the three bytes of €
    t.ok(cut > 1, 'the stream has a multi-byte character');
    for (const size of [1, 2, 3, 7, 64, stream.length]) {
      const framer = new EcrFramer('terminal');
      const out: FrameEvent<TerminalMessage>[] = [];
      for (let i = 0; i < stream.length; i += size) out.push(...framer.push(stream.subarray(i, i + size)));
      t.same(messagesOf(out), terminalMessages, `chunks of ${size} bytes`);
    }
    const framer = new EcrFramer('terminal');
    const first = framer.push(stream.subarray(0, cut));
    const rest = framer.push(stream.subarray(cut));
    t.same(messagesOf([...first, ...rest]), terminalMessages, 'split inside €');
  },
);

t.test('CRLF is tolerated and empty lines say nothing', async (t) => {
  const framer = new EcrFramer('terminal');
  const line = JSON.stringify({ v: 1, type: 'ack', txn: 'a' });
  t.same(messagesOf(framer.push(Buffer.from(`\n\r\n${line}\r\n\n`))), [{ v: 1, type: 'ack', txn: 'a' }]);
});

t.test('an over-long line is one error, its bytes are not kept, and the next line decodes', async (t) => {
  const framer = new EcrFramer('terminal');
  const ack = encodeTerminalMessage({ v: 1, type: 'ack', txn: 'a' });
  const long = Buffer.alloc(3 * MAX_LINE_BYTES, 'x');
  const events: FrameEvent<TerminalMessage>[] = [];
  for (let i = 0; i < long.length; i += 1000) events.push(...framer.push(long.subarray(i, i + 1000)));
  t.same(events, [], 'nothing until the line ends');
  events.push(...framer.push(Buffer.concat([Buffer.from('\n'), ack])));
  t.same(messagesOf(events), [
    {
      error: {
        reason: 'too-long',
        detail: `line is longer than ${MAX_LINE_BYTES} bytes`,
        bytes: long.length,
      },
    },
    { v: 1, type: 'ack', txn: 'a' },
  ]);

  const exact = new EcrFramer('terminal', 256);
  const padded = JSON.stringify({ v: 1, type: 'status', txn: 'a', message: 'm'.repeat(200) });
  const fits = padded.slice(0, -1) + ' '.repeat(256 - padded.length) + '}';
  t.equal(fits.length, 256);
  t.equal(messagesOf(exact.push(Buffer.from(fits + '\n'))).length, 1, 'exactly the limit is accepted');
  t.match(messagesOf(exact.push(Buffer.from(fits + ' \n'))), [{ error: { reason: 'too-long', bytes: 257 } }]);
  t.throws(() => new EcrFramer('terminal', 10), { code: 'CONFIG_INVALID' }, 'the bound is bounded');
});

const badLines: { name: string; line: string | Buffer; reason: string; detail?: RegExp; side?: EcrSide }[] = [
  { name: 'text', line: 'hello', reason: 'not-json' },
  { name: 'truncated JSON', line: '{"v":1,"type":"ack","tx', reason: 'not-json' },
  { name: 'an array', line: '[1,2]', reason: 'not-json' },
  { name: 'a string', line: '"ack"', reason: 'not-json' },
  { name: 'null', line: 'null', reason: 'not-json' },
  { name: 'not UTF-8', line: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), reason: 'not-json', detail: /UTF-8/ },
  { name: 'no version', line: '{"type":"ack","txn":"a"}', reason: 'version' },
  {
    name: 'version 2',
    line: '{"v":2,"type":"ack","txn":"a"}',
    reason: 'version',
    detail: /version 2 is not 1/,
  },
  { name: 'unknown type', line: '{"v":1,"type":"hello","txn":"a"}', reason: 'invalid', detail: /type/ },
  {
    name: 'extra field',
    line: '{"v":1,"type":"ack","txn":"a","x":1}',
    reason: 'invalid',
    detail: /unrecognized/,
  },
  { name: 'missing txn', line: '{"v":1,"type":"ack"}', reason: 'invalid', detail: /txn/ },
  { name: 'bad txn', line: '{"v":1,"type":"ack","txn":"a b"}', reason: 'invalid', detail: /txn/ },
  {
    name: "the POS's ack read as the terminal's",
    line: '{"v":1,"type":"ack","txn":"a","of":"saf.result"}',
    reason: 'invalid',
  },
  {
    name: 'a request read as from the terminal',
    line: '{"v":1,"type":"abort","txn":"a"}',
    reason: 'invalid',
  },
  {
    name: 'unknown outcome',
    line: '{"v":1,"type":"payment.result","txn":"a","outcome":"maybe","mode":"online"}',
    reason: 'invalid',
    detail: /outcome/,
  },
  {
    name: 'saf on an online approval',
    line: '{"v":1,"type":"payment.result","txn":"a","outcome":"approved","mode":"online","saf":true}',
    reason: 'invalid',
    detail: /saf is only for an offline approval/,
  },
  {
    name: 'saf on a decline',
    line: '{"v":1,"type":"payment.result","txn":"a","outcome":"declined","mode":"offline","saf":true}',
    reason: 'invalid',
  },
  {
    name: 'final without a result',
    line: '{"v":1,"type":"status.reply","txn":"a","state":"final"}',
    reason: 'invalid',
    detail: /result/,
  },
  {
    name: 'in_progress with a result',
    line: '{"v":1,"type":"status.reply","txn":"a","state":"in_progress","result":{"outcome":"cancelled","mode":"online"}}',
    reason: 'invalid',
  },
  {
    name: 'a control character for the display',
    line: '{"v":1,"type":"status","txn":"a","message":"\\u001b[2J"}',
    reason: 'invalid',
    detail: /message/,
  },
  {
    name: 'a saf.result that was cancelled',
    line: '{"v":1,"type":"saf.result","txn":"a","outcome":"cancelled"}',
    reason: 'invalid',
  },
  {
    name: 'amount zero',
    line: '{"v":1,"type":"payment.request","txn":"a","amount":0,"currency":"EUR","offlineAllowed":true,"kind":"sale"}',
    reason: 'invalid',
    detail: /amount/,
    side: 'pos',
  },
  {
    name: 'fractional amount',
    line: '{"v":1,"type":"payment.request","txn":"a","amount":12.5,"currency":"EUR","offlineAllowed":true,"kind":"sale"}',
    reason: 'invalid',
    side: 'pos',
  },
  {
    name: 'lower-case currency',
    line: '{"v":1,"type":"payment.request","txn":"a","amount":1,"currency":"eur","offlineAllowed":true,"kind":"sale"}',
    reason: 'invalid',
    detail: /currency/,
    side: 'pos',
  },
  {
    name: 'an ack of something else',
    line: '{"v":1,"type":"ack","txn":"a","of":"status"}',
    reason: 'invalid',
    side: 'pos',
  },
];

t.test('bad lines are protocol errors, and the next good line still decodes', async (t) => {
  for (const c of badLines) {
    const side = c.side ?? 'terminal';
    const framer = new EcrFramer(side);
    const bytes = typeof c.line === 'string' ? Buffer.from(c.line) : c.line;
    const good =
      side === 'terminal'
        ? encodeTerminalMessage({ v: 1, type: 'ack', txn: 'next' })
        : encodePosMessage({ v: 1, type: 'abort', txn: 'next' });
    const out = framer.push(Buffer.concat([bytes, Buffer.from('\n'), good]));
    t.equal(out.length, 2, `${c.name}: one error, one message`);
    t.match(out[0], { kind: 'error', error: { reason: c.reason, bytes: bytes.length } }, c.name);
    if (c.detail && out[0]!.kind === 'error') t.match(out[0].error.detail, c.detail, `${c.name}: detail`);
    t.match(out[1], { kind: 'message', message: { txn: 'next' } }, `${c.name}: the next line decodes`);
  }
});

t.test('an error names the type and txn when they are well-formed, for tracing', async (t) => {
  const r = decodeLine(
    'terminal',
    '{"v":1,"type":"payment.result","txn":"t-9","outcome":"maybe","mode":"online"}',
  );
  t.match(r, { ok: false, error: { reason: 'invalid', type: 'payment.result', txn: 't-9' } });
  const odd = decodeLine('terminal', '{"v":1,"type":"<script>","txn":"a b"}');
  t.ok(!odd.ok && odd.error.type === undefined && odd.error.txn === undefined, 'odd ones are left out');
});

const panLines: { name: string; line: string }[] = [
  {
    name: 'a full PAN as maskedPan',
    line: `{"v":1,"type":"payment.result","txn":"a","outcome":"approved","mode":"online","maskedPan":"${PAN}"}`,
  },
  {
    name: 'a PAN grouped by spaces in a message',
    line: '{"v":1,"type":"status","txn":"a","message":"card 4111 1111 1111 1111 read"}',
  },
  {
    name: 'a PAN in a status.reply result',
    line: `{"v":1,"type":"status.reply","txn":"a","state":"final","result":{"outcome":"approved","mode":"online","maskedPan":"${PAN}"}}`,
  },
  { name: 'a PAN as an extra key', line: `{"v":1,"type":"ack","txn":"a","${PAN}":1}` },
  { name: 'a PAN as a number', line: `{"v":1,"type":"ack","txn":"a","pan":${PAN}}` },
  { name: 'a PAN as the txn', line: `{"v":1,"type":"ack","txn":"${PAN}"}` },
  { name: 'a PAN with a wrong version', line: `{"v":9,"type":"ack","txn":"a","pan":"${PAN}"}` },
  {
    name: 'an Amex number (15 digits)',
    line: '{"v":1,"type":"status","txn":"a","message":"378282246310005"}',
  },
];

t.test('anything that looks like a full PAN is refused whole, and never quoted', async (t) => {
  for (const c of panLines) {
    const framer = new EcrFramer('terminal');
    const [e] = framer.push(Buffer.from(c.line + '\n'));
    t.match(e, { kind: 'error', error: { reason: 'pan' } }, c.name);
    const said = JSON.stringify(e);
    t.notOk(/4111|378282/.test(said), `${c.name}: the error holds no digits of it`);
  }
  // Only the last four digits may show; a PAN-shaped value that fails Luhn is still no masked PAN.
  for (const masked of ['411111******1111', '1234567812345678', '****', '************42424']) {
    const r = decodeLine(
      'terminal',
      `{"v":1,"type":"payment.result","txn":"a","outcome":"approved","mode":"online","maskedPan":"${masked}"}`,
    );
    t.match(r, { ok: false, error: { reason: 'invalid' } }, `${masked} is not a masked PAN`);
    t.notOk(!r.ok && /\d{6}/.test(JSON.stringify(r.error)), `${masked}: no digit run in the error`);
  }
});

t.test('the PAN guard: what counts as one', async (t) => {
  const cases: [string, boolean][] = [
    [PAN, true],
    ['4111 1111 1111 1111', true],
    ['x5555555555554444y', true],
    ['378282246310005', true],
    ['4111111111111112', false], // fails Luhn
    ['411111111111', false], // 12 digits
    ['41111111111111111111', false], // 20 digits: a longer run is not a PAN
    ['4111-1111-1111-1111', false], // dashes end runs (UUIDs have them)
    [TXN, false],
    ['12345678-1234-7123-8123-123456789012', false],
    ['************4242', false],
    ['', false],
  ];
  for (const [text, pan] of cases) t.equal(looksLikePan(text), pan, `${JSON.stringify(text)} → ${pan}`);
  t.equal(redactDigits('key 4111111111111111: unrecognized'), 'key [digits]: unrecognized');
  t.equal(redactDigits('result.outcome: invalid_value'), 'result.outcome: invalid_value');
  t.ok(isWireTxn(TXN));
  t.notOk(isWireTxn(PAN), 'a PAN is never a txn');
  t.notOk(isWireTxn(''), 'nor is nothing');
  t.notOk(isWireTxn('x'.repeat(65)), 'nor is something too long');
});

t.test('encoding refuses what the peer would refuse, without quoting it', async (t) => {
  const bad = {
    v: 1,
    type: 'payment.request',
    txn: 'a',
    amount: 0,
    currency: 'EUR',
    offlineAllowed: true,
    kind: 'sale',
  };
  t.throws(() => encodePosMessage(bad as PosMessage), { code: 'DEVICE_PROTOCOL', message: /amount/ });
  const panResult = {
    v: 1,
    type: 'payment.result',
    txn: 'a',
    outcome: 'approved',
    mode: 'online',
    maskedPan: PAN,
  } as TerminalMessage;
  t.throws(() => encodeTerminalMessage(panResult), { code: 'DEVICE_PROTOCOL', message: /pan/ });
  try {
    encodeTerminalMessage(panResult);
  } catch (err) {
    t.notOk(String((err as Error).message).includes('4111'), 'the error does not quote the PAN');
  }
  const long = { v: 1, type: 'status', txn: 'a', message: 'x'.repeat(201) } as TerminalMessage;
  t.throws(() => encodeTerminalMessage(long), { code: 'DEVICE_PROTOCOL' }, 'message length is bounded');
});
