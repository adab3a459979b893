import t from 'tap';
import fc from 'fast-check';
import canonicalize from 'canonicalize';
import {
  canonicalJson,
  checkSealedPayload,
  genesisHash,
  recordHash,
  sealRecord,
} from '../../../cloud-bridge/protocol/record.js';

t.test('canonicalJson agrees with the RFC 8785 reference implementation', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => canonicalJson(value) === canonicalize(value)),
    { numRuns: 5000, seed: 8785 },
  );
  // The corners JCS pins down: key order by UTF-16 code units, number forms, escapes.
  const tricky = { '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, a: [1e21, 1e-7, -0, 0.1, 'é\u2028"\\'], b: null };
  t.equal(canonicalJson(tricky), canonicalize(tricky));
  t.equal(canonicalJson({ b: 1, a: undefined, c: () => 1 }), '{"b":1}');
  t.equal(canonicalJson([undefined]), '[null]');
  t.equal(canonicalJson({ d: new Date(0) }), '{"d":"1970-01-01T00:00:00.000Z"}');
});

t.test(
  'canonicalJson of values already in canonical order (parsed from JCS, as the ledger gets them)',
  async (t) => {
    // JSON.parse keeps JCS's key order, except integer-like keys, which JavaScript lists numerically first.
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const parsed: unknown = JSON.parse(canonicalize(value)!);
        return canonicalJson(parsed) === canonicalize(parsed);
      }),
      { numRuns: 5000, seed: 8786 },
    );
    const ordered = JSON.parse('{"10":1,"9":2,"a":{"b":[1,{"c":-0,"d":1e21}]}}') as unknown;
    t.equal(canonicalJson(ordered), '{"10":1,"9":2,"a":{"b":[1,{"c":0,"d":1e+21}]}}');
    t.throws(() => canonicalJson({ a: 1, b: '\ud800' }), 'a lone surrogate in ordered keys is still refused');
    t.throws(() => canonicalJson({ a: [NaN] }), 'so is NaN');
    t.equal(canonicalJson({ a: 1, b: undefined }), '{"a":1}');
  },
);

t.test('canonicalJson refuses what has no canonical form', async (t) => {
  t.throws(() => canonicalJson(NaN));
  t.throws(() => canonicalJson({ x: Infinity }));
  t.throws(() => canonicalJson('\ud800'));
  t.throws(() => canonicalJson({ ['\udc00']: 1 }));
  t.throws(() => canonicalJson(10n));
  t.throws(() => canonicalJson(undefined));
});

t.test('a sealed record: canonical payload, hash over the body, checkable from its bytes', async (t) => {
  const prev = genesisHash('till-1', 1);
  const body = {
    seq: 1,
    ts: 1764201600000,
    clock: 'trusted' as const,
    events: [{ type: 'x', hash: 'nested' }],
  };
  const { record, payload } = sealRecord(prev, body);
  t.equal(record.hash, recordHash(prev, body));
  t.equal(payload, canonicalJson(record), 'the payload is the JCS form of the whole record');
  t.same(checkSealedPayload(Buffer.from(payload)), { hash: record.hash, prevHash: prev, ok: true });

  const tampered = Buffer.from(payload.replace('"nested"', '"nestee"'));
  t.equal(checkSealedPayload(tampered)?.ok, false, 'a changed body no longer matches its hash');
  t.equal(checkSealedPayload(Buffer.from('{"seq":1}')), undefined, 'not a sealed payload');
  t.throws(() => sealRecord('nothex', body), /prevHash/);
});

t.test('the genesis hash differs per device and epoch', async (t) => {
  t.not(genesisHash('till-1', 1), genesisHash('till-1', 2));
  t.not(genesisHash('till-1', 1), genesisHash('till-2', 1));
  t.match(genesisHash('till-1', 1), /^[0-9a-f]{64}$/);
});

t.test('canonicalJson takes the careful path for what is not plain data', async (t) => {
  const cases: unknown[] = [
    JSON.parse('{"__proto__":{"x":1},"a":{"b":2}}'),
    { a: { toJSON: () => ({ z: 1, y: 2 }) }, b: 1 },
    { when: new Date(0), nested: [{ b: 1, a: 2 }, { c: 3 }] },
    Object.assign(Object.create(null), { b: 1, a: 2 }),
    [{ z: 1, a: 2 }, { m: { y: 1, b: [{ d: 1, c: 2 }] } }],
    { '10': 1, '9': 2, a: 3, B: 4 },
  ];
  for (const c of cases) t.equal(canonicalJson(c), canonicalize(c), JSON.stringify(canonicalize(c)));
});

t.test('canonicalJson is not fooled by hidden or inherited properties', async (t) => {
  const hidden = { a: 1 };
  Object.defineProperty(hidden, 'x', { value: 2, enumerable: false });
  const withHidden = [{ x: 1 }, hidden];
  t.equal(canonicalJson(withHidden), canonicalize(withHidden));
  const proto = Object.prototype as Record<string, unknown>;
  proto.polluted = 7;
  try {
    t.equal(canonicalJson({ a: 1 }), '{"a":1}');
  } finally {
    delete proto.polluted;
  }
});
