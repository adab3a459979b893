// isWireRecord is the ledger's fast check of a received record; WireRecordSchema is the contract. They
// must give the same answer for anything JSON.parse can produce.
import t from 'tap';
import fc from 'fast-check';
import { isWireRecord, WireRecordSchema } from '../../../cloud-bridge/protocol/wire.js';

const hex64 = 'ab'.repeat(32);
const valid = () => ({
  seq: 1,
  ts: 0,
  clock: 'trusted',
  prevHash: hex64,
  hash: hex64,
  events: [{ type: 'sale.scan', sku: 'X' }],
});

// Values at and around every bound the schema draws.
const edgyNumber = fc.constantFrom(0, -0, 1, -1, 1.5, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e300, 0.1);
const edgyString = fc.oneof(
  fc.constantFrom(
    '',
    'trusted',
    'untrusted',
    'Trusted',
    hex64,
    hex64.slice(1),
    hex64 + 'a',
    hex64.toUpperCase(),
  ),
  fc.constantFrom(
    'é'.repeat(64),
    'é'.repeat(65),
    '😀'.repeat(32),
    '😀'.repeat(33),
    'x'.repeat(64),
    'x'.repeat(65),
  ),
  fc.string(),
);
const anyJson = fc.oneof(edgyNumber, edgyString, fc.constant(null), fc.boolean(), fc.jsonValue());
const event = fc.oneof(
  fc.record({ type: fc.oneof(edgyString, anyJson) }),
  fc.record({ type: edgyString, extra: anyJson }),
  fc.constant({}),
  anyJson,
);
const events = fc.oneof(
  fc.array(event, { maxLength: 4 }),
  fc.constantFrom(1000, 1001).map((n) => Array.from({ length: n }, () => ({ type: 't' }))),
  anyJson,
);
const keys = ['seq', 'ts', 'clock', 'prevHash', 'hash', 'events'] as const;
const mutation = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key: fc.constantFrom(...keys), value: anyJson }),
  fc.record({ op: fc.constant('number' as const), key: fc.constantFrom('seq', 'ts'), value: edgyNumber }),
  fc.record({
    op: fc.constant('string' as const),
    key: fc.constantFrom('clock', 'prevHash', 'hash'),
    value: edgyString,
  }),
  fc.record({ op: fc.constant('events' as const), value: events }),
  fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom(...keys) }),
  fc.record({ op: fc.constant('extra' as const), key: fc.string(), value: anyJson }),
);

t.test('isWireRecord agrees with WireRecordSchema on mutated records', async (t) => {
  let accepted = 0;
  fc.assert(
    fc.property(fc.array(mutation, { maxLength: 3 }), (mutations) => {
      const rec: Record<string, unknown> = valid();
      for (const m of mutations) {
        if (m.op === 'delete') delete rec[m.key];
        else if (m.op === 'events') rec.events = m.value;
        else rec[m.key] = m.value;
      }
      // Only what JSON.parse can produce reaches the check.
      const raw: unknown = JSON.parse(JSON.stringify(rec));
      const fast = isWireRecord(raw);
      if (fast) accepted++;
      return fast === WireRecordSchema.safeParse(raw).success;
    }),
    { numRuns: 20_000, seed: 5150 },
  );
  t.ok(accepted > 100, `both paths met accepted records too (${accepted})`);
});

t.test('isWireRecord on whole other JSON values', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (raw) => isWireRecord(raw) === WireRecordSchema.safeParse(raw).success),
    { numRuns: 5000, seed: 5151 },
  );
  t.equal(isWireRecord(valid()), true);
  t.equal(
    isWireRecord({ ...valid(), seq: 2 ** 53 }),
    WireRecordSchema.safeParse({ ...valid(), seq: 2 ** 53 }).success,
  );
});
