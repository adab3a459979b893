import t from 'tap';
import fc from 'fast-check';
import {
  allocate,
  cashRound,
  currencyExponent,
  formatMinor,
  mulDivRound,
  roundDiv,
  type RoundingMode,
} from '../../../appliance/till/money.js';

/** The textbook definition, in BigInt: the reference the fast paths are checked against. */
function referenceRoundDiv(n: bigint, d: bigint, mode: RoundingMode): bigint {
  const sign = n < 0n !== d < 0n ? -1n : 1n;
  const a = n < 0n ? -n : n;
  const b = d < 0n ? -d : d;
  const q = a / b;
  const twice = 2n * (a % b);
  const up = twice > b || (twice === b && (mode === 'half-up' || q % 2n === 1n));
  return sign * (up ? q + 1n : q);
}

const MAX = Number.MAX_SAFE_INTEGER;
const safeInt = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger());
const nonZero = safeInt.filter((d) => d !== 0);
const mode = fc.constantFrom<RoundingMode>('half-up', 'half-even');

t.test('roundDiv: the half cases, both signs, both modes', async (t) => {
  const cases: [number, number, number, number][] = [
    // numerator, denominator, half-up, half-even
    [0, 7, 0, 0],
    [10, 5, 2, 2],
    [14, 10, 1, 1],
    [15, 10, 2, 2],
    [16, 10, 2, 2],
    [25, 10, 3, 2],
    [35, 10, 4, 4],
    [-15, 10, -2, -2],
    [-25, 10, -3, -2],
    [-14, 10, -1, -1],
    [25, -10, -3, -2],
    [-25, -10, 3, 2],
    [1, 2, 1, 0],
    [-1, 2, -1, 0],
    [3, 2, 2, 2],
    [1, 3, 0, 0],
    [2, 3, 1, 1],
    [MAX, 1, MAX, MAX],
    [MAX, 2, 2 ** 52, 2 ** 52], // 2^52 − 0.5: up to 2^52 either way, since 2^52 is even
    [MAX - 2, 2, 2 ** 52 - 1, 2 ** 52 - 2], // 2^52 − 1.5
    [-MAX, MAX, -1, -1],
  ];
  for (const [n, d, up, even] of cases) {
    t.equal(roundDiv(n, d, 'half-up'), up, `${n}/${d} half-up`);
    t.equal(roundDiv(n, d, 'half-even'), even, `${n}/${d} half-even`);
  }
  t.ok(Object.is(roundDiv(-1, 3, 'half-up'), 0), 'a quotient that rounds to zero is +0, not -0');
});

t.test('roundDiv refuses what it cannot do exactly', async (t) => {
  t.throws(() => roundDiv(1, 0, 'half-up'), RangeError);
  t.throws(() => roundDiv(1.5, 1, 'half-up'), RangeError);
  t.throws(() => roundDiv(2 ** 53, 3, 'half-up'), RangeError);
  t.throws(() => roundDiv(1, NaN, 'half-even'), RangeError);
});

t.test('roundDiv agrees with a BigInt reference and is symmetric in sign', async (t) => {
  fc.assert(
    fc.property(safeInt, nonZero, mode, (n, d, m) => {
      const q = roundDiv(n, d, m);
      return (
        BigInt(q) === referenceRoundDiv(BigInt(n), BigInt(d), m) &&
        roundDiv(-n, d, m) === (q === 0 ? 0 : -q) &&
        roundDiv(n, -d, m) === (q === 0 ? 0 : -q)
      );
    }),
    { numRuns: 20_000, seed: 1 },
  );
  t.pass('20,000 random quotients');
});

t.test('mulDivRound is exact past 2^53 and refuses a result that is not', async (t) => {
  t.equal(mulDivRound(100_000_000_000, 1_000_000, 1_190_000, 'half-up'), 84_033_613_445);
  t.equal(mulDivRound(3, 5, 2, 'half-even'), 8);
  t.equal(mulDivRound(-3, 5, 2, 'half-up'), -8);
  t.throws(() => mulDivRound(MAX, MAX, 1, 'half-up'), RangeError);
  t.throws(() => mulDivRound(MAX, 3, 0, 'half-up'), RangeError);
  // |a × b| < 2^72 and d ≥ 2^20: the product often passes 2^53, the quotient never does.
  const operand = fc.integer({ min: -(2 ** 36), max: 2 ** 36 });
  fc.assert(
    fc.property(operand, operand, fc.integer({ min: 2 ** 20, max: 2 ** 40 }), mode, (a, b, d, m) => {
      const expected = referenceRoundDiv(BigInt(a) * BigInt(b), BigInt(d), m);
      return BigInt(mulDivRound(a, b, d, m)) === expected;
    }),
    { numRuns: 10_000, seed: 2 },
  );
});

t.test('cashRound: 0.05 and 0.10 increments', async (t) => {
  const cases: [total: number, increment: number, mode: RoundingMode, rounded: number][] = [
    [100, 5, 'half-up', 100],
    [101, 5, 'half-up', 100],
    [102, 5, 'half-up', 100],
    [103, 5, 'half-up', 105],
    [104, 5, 'half-up', 105],
    [107, 5, 'half-up', 105],
    [108, 5, 'half-up', 110],
    [-102, 5, 'half-up', -100],
    [-103, 5, 'half-up', -105],
    [105, 10, 'half-up', 110],
    [105, 10, 'half-even', 100],
    [115, 10, 'half-even', 120],
    [104, 10, 'half-even', 100],
    [1249, 1, 'half-up', 1249],
    [0, 5, 'half-up', 0],
    [2, 5, 'half-up', 0],
  ];
  for (const [total, increment, m, rounded] of cases) {
    t.same(
      cashRound(total, increment, m),
      { roundedMinor: rounded, adjustmentMinor: rounded - total },
      `${total}`,
    );
  }
  t.same(cashRound(102, 5), { roundedMinor: 100, adjustmentMinor: -2 }, 'half-up by default');
  t.throws(() => cashRound(100, 0), RangeError);
  t.throws(() => cashRound(100, 2.5), RangeError);
  t.throws(() => cashRound(0.5, 5), RangeError);
});

t.test('cashRound lands on the nearest multiple of the increment', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: -(10 ** 12), max: 10 ** 12 }),
      fc.integer({ min: 1, max: 100 }),
      mode,
      (x, inc, m) => {
        const { roundedMinor, adjustmentMinor } = cashRound(x, inc, m);
        return (
          roundedMinor % inc === 0 &&
          roundedMinor - x === adjustmentMinor &&
          2 * Math.abs(adjustmentMinor) <= inc
        );
      },
    ),
    { numRuns: 10_000, seed: 3 },
  );
  t.pass();
});

t.test('allocate: largest remainder, ties to the lower index', async (t) => {
  const cases: [total: number, weights: number[], shares: number[]][] = [
    [100, [1, 1, 1], [34, 33, 33]],
    [2, [1, 1, 1], [1, 1, 0]],
    [1, [1, 1, 1], [1, 0, 0]],
    [10, [0, 1, 0], [0, 10, 0]],
    [10, [3, 7], [3, 7]],
    [5, [3, 7], [2, 3]], // 1.5 and 3.5 tie on the remainder: the lower index gets the unit
    [7, [2, 3, 5], [1, 2, 4]], // 1.4, 2.1, 3.5
    [-100, [1, 1, 1], [-34, -33, -33]],
    [0, [0, 0], [0, 0]],
    [0, [5, 2], [0, 0]],
    [0, [], []],
    [1001, [1, 999_999], [0, 1001]],
  ];
  for (const [total, weights, shares] of cases)
    t.same(allocate(total, weights), shares, `${total} over ${weights}`);
  // Past 2^53 in the intermediate product: 10^12 × 10^9.
  t.same(allocate(10 ** 12, [10 ** 9, 2 * 10 ** 9]), [333_333_333_333, 666_666_666_667]);
  t.throws(() => allocate(1, [0, 0]), RangeError);
  t.throws(() => allocate(1, []), RangeError);
  t.throws(() => allocate(1, [1, -1]), RangeError);
  t.throws(() => allocate(1, [0.5]), RangeError);
  t.throws(() => allocate(0.5, [1]), RangeError);
});

t.test('allocate: shares sum to the total and each is its proportion rounded down or up', async (t) => {
  const weights = fc.array(
    fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 10 ** 11 })),
    {
      minLength: 1,
      maxLength: 12,
    },
  );
  fc.assert(
    fc.property(fc.integer({ min: -(10 ** 11), max: 10 ** 11 }), weights, (total, ws) => {
      const sum = ws.reduce((a, b) => a + b, 0);
      fc.pre(sum > 0);
      const shares = allocate(total, ws);
      if (shares.reduce((a, b) => a + b, 0) !== total) return false;
      return shares.every((s, i) => {
        const exact = BigInt(Math.abs(total)) * BigInt(ws[i]!);
        const lo = exact / BigInt(sum);
        const hi = exact % BigInt(sum) === 0n ? lo : lo + 1n;
        const mag = BigInt(Math.abs(s));
        return mag >= lo && mag <= hi && (total >= 0 ? s >= 0 : s <= 0);
      });
    }),
    { numRuns: 10_000, seed: 4 },
  );
  t.pass();
});

t.test('formatMinor for receipts', async (t) => {
  const cases: [number, string, string][] = [
    [1249, 'EUR', '12.49 EUR'],
    [-1249, 'EUR', '-12.49 EUR'],
    [5, 'EUR', '0.05 EUR'],
    [-5, 'USD', '-0.05 USD'],
    [0, 'EUR', '0.00 EUR'],
    [100_000_000, 'CHF', '1000000.00 CHF'],
    [1250, 'JPY', '1250 JPY'],
    [-7, 'JPY', '-7 JPY'],
    [1234, 'KWD', '1.234 KWD'],
    [5, 'BHD', '0.005 BHD'],
    [Number.MAX_SAFE_INTEGER, 'EUR', '90071992547409.91 EUR'],
  ];
  for (const [minor, currency, text] of cases) t.equal(formatMinor(minor, currency), text);
  t.equal(currencyExponent('EUR'), 2);
  t.throws(() => formatMinor(1.5, 'EUR'), RangeError);
  t.throws(() => formatMinor(1, 'eur'), RangeError);
});
