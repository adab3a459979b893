import t from 'tap';
import fc from 'fast-check';
import { TaxRulesSchema, type TaxRules } from '../../../appliance/till/catalog.js';
import { cashRound, type RoundingMode } from '../../../appliance/till/money.js';
import {
  computeTotals,
  type BasketLine,
  type BasketTotals,
  type Discount,
} from '../../../appliance/till/tax.js';

type Scope = TaxRules['rounding']['scope'];

const line = (
  lineId: string,
  qty: number,
  unitMinor: number,
  taxClass: string,
  discount?: Discount,
): BasketLine =>
  discount === undefined
    ? { lineId, sku: lineId, qty, unitMinor, taxClass }
    : { lineId, sku: lineId, qty, unitMinor, taxClass, discount };

/** Only the numbers of a line, to keep the expected tables short: [gross, discount, net, tax]. */
const amounts = (totals: BasketTotals) =>
  totals.lines.map((l) => [l.grossMinor, l.discountMinor, l.netOfDiscountMinor, l.taxMinor]);

function germany(scope: Scope = 'line', mode: RoundingMode = 'half-up'): TaxRules {
  return TaxRulesSchema.parse({
    mode: 'inclusive',
    rates: { standard: { name: 'MwSt 19 %', rateBp: 1900 }, reduced: { name: 'MwSt 7 %', rateBp: 700 } },
    rounding: { scope, mode },
    cashIncrementMinor: 1,
  });
}

/**
 * New York City: 4 % state + 4.5 % city + 0.375 % MCTD = 8.875 %, and most groceries exempt.
 * 887.5 bp is not a whole basis point, so TaxRulesSchema (rateBp: int) rejects this today; the
 * arithmetic works in millionths and takes it.
 */
function newYork(scope: Scope = 'receipt', mode: RoundingMode = 'half-up'): TaxRules {
  return {
    mode: 'exclusive',
    rates: { prepared: { name: 'NYC 8.875 %', rateBp: 887.5 }, exempt: { name: 'Exempt', rateBp: 0 } },
    rounding: { scope, mode },
    cashIncrementMinor: 1,
  };
}

t.test('a German VAT basket, 19 % and 7 %, tax contained in the shelf price', async (t) => {
  const basket = [
    line('milk', 2, 119, 'reduced'), // 238 × 7/107 = 15.57 → 16
    line('coffee', 1, 899, 'standard'), // 899 × 19/119 = 143.54 → 144
    line('bread', 1, 249, 'reduced'), // 249 × 7/107 = 16.29 → 16
    line('wine', 1, 599, 'standard', { kind: 'percent', bp: 1000 }), // −59.9 → −60; 539 × 19/119 = 86.06 → 86
  ];
  const totals = computeTotals(basket, undefined, germany());
  t.same(amounts(totals), [
    [238, 0, 238, 16],
    [899, 0, 899, 144],
    [249, 0, 249, 16],
    [599, 60, 539, 86],
  ]);
  t.same(
    { ...totals, lines: undefined },
    {
      lines: undefined,
      subtotalMinor: 1985,
      discountMinor: 60,
      taxMinor: 262,
      totalMinor: 1925,
      taxes: [
        { taxClass: 'reduced', name: 'MwSt 7 %', rateBp: 700, baseMinor: 455, taxMinor: 32 },
        { taxClass: 'standard', name: 'MwSt 19 %', rateBp: 1900, baseMinor: 1208, taxMinor: 230 },
      ],
    },
  );
  t.same(totals.lines[0], {
    lineId: 'milk',
    grossMinor: 238,
    discountMinor: 0,
    netOfDiscountMinor: 238,
    taxMinor: 16,
    taxClass: 'reduced',
    rateBp: 700,
  });

  // Per receipt: 487 × 7/107 = 31.86 → 32, shared 15.64 : 16.36 → 16 : 16; 1438 × 19/119 = 229.59 → 230.
  const perReceipt = computeTotals(basket, undefined, germany('receipt'));
  t.same(
    perReceipt.taxes.map((x) => x.taxMinor),
    [32, 230],
  );
  t.same(
    perReceipt.lines.map((l) => l.taxMinor),
    [16, 144, 16, 86],
  );
});

t.test('a German basket with a basket coupon shared in proportion', async (t) => {
  const basket = [line('a', 1, 1000, 'standard'), line('b', 1, 500, 'reduced')];
  // 10 % of 1500 = 150, shared 100 : 50; 900 × 19/119 = 143.70 → 144; 450 × 7/107 = 29.44 → 29.
  const totals = computeTotals(basket, { kind: 'percent', bp: 1000 }, germany());
  t.same(amounts(totals), [
    [1000, 100, 900, 144],
    [500, 50, 450, 29],
  ]);
  t.equal(totals.totalMinor, 1350);
  t.equal(totals.discountMinor, 150);

  // 2.00 off: 133.33 : 66.67 → 133 : 67 (the larger remainder gets the unit).
  const coupon = computeTotals(basket, { kind: 'amount', minor: 200 }, germany());
  t.same(
    coupon.lines.map((l) => l.discountMinor),
    [133, 67],
  );
  t.equal(coupon.totalMinor, 1300);

  // A coupon worth more than the basket takes it to zero and no further.
  const free = computeTotals(basket, { kind: 'amount', minor: 5000 }, germany());
  t.same(amounts(free), [
    [1000, 1000, 0, 0],
    [500, 500, 0, 0],
  ]);
  t.equal(free.totalMinor, 0);
  t.same(
    free.taxes.map((x) => [x.baseMinor, x.taxMinor]),
    [
      [0, 0],
      [0, 0],
    ],
  );

  // A line discount larger than the line is capped at it; the basket discount then sees only what is left.
  const capped = computeTotals(
    [line('a', 2, 300, 'standard', { kind: 'amount', minor: 1000 }), line('b', 1, 500, 'reduced')],
    { kind: 'percent', bp: 5000 },
    germany(),
  );
  t.same(
    capped.lines.map((l) => [l.discountMinor, l.netOfDiscountMinor]),
    [
      [600, 0],
      [250, 250],
    ],
  );
});

t.test('a New York basket, 8.875 % sales tax added at the till', async (t) => {
  const basket = [
    line('sandwich', 1, 895, 'prepared'),
    line('soda', 2, 199, 'prepared'),
    line('apples', 3, 129, 'exempt'),
  ];
  // Per receipt: 1293 × 0.08875 = 114.75 → 115, shared 79.60 : 35.40 → 80 : 35.
  const receipt = computeTotals(basket, undefined, newYork('receipt'));
  t.same(amounts(receipt), [
    [895, 0, 895, 80],
    [398, 0, 398, 35],
    [387, 0, 387, 0],
  ]);
  t.equal(receipt.subtotalMinor, 1680);
  t.equal(receipt.taxMinor, 115);
  t.equal(receipt.totalMinor, 1795);
  t.same(receipt.taxes, [
    { taxClass: 'exempt', name: 'Exempt', rateBp: 0, baseMinor: 387, taxMinor: 0 },
    { taxClass: 'prepared', name: 'NYC 8.875 %', rateBp: 887.5, baseMinor: 1293, taxMinor: 115 },
  ]);
  // Per line: 895 × 0.08875 = 79.43 → 79; 398 × 0.08875 = 35.32 → 35. A cent less than per receipt.
  const perLine = computeTotals(basket, undefined, newYork('line'));
  t.same(
    perLine.lines.map((l) => l.taxMinor),
    [79, 35, 0],
  );
  t.equal(perLine.totalMinor, 1794);
});

t.test('line and receipt rounding differ on many small lines', async (t) => {
  const basket = [line('r1', 1, 10, 'reduced'), line('r2', 1, 10, 'reduced'), line('r3', 1, 10, 'reduced')];
  // Each 10 × 7/107 = 0.65 → 1, three in all; the receipt's 30 × 7/107 = 1.96 → 2, shared 1 : 1 : 0.
  const perLine = computeTotals(basket, undefined, germany('line'));
  const perReceipt = computeTotals(basket, undefined, germany('receipt'));
  t.same(
    perLine.lines.map((l) => l.taxMinor),
    [1, 1, 1],
  );
  t.same(
    perReceipt.lines.map((l) => l.taxMinor),
    [1, 1, 0],
  );
  t.same([perLine.taxes[0]!.baseMinor, perReceipt.taxes[0]!.baseMinor], [27, 28]);
  t.equal(perLine.totalMinor, 30, 'the shelf prices are what is paid either way');
  t.equal(perReceipt.totalMinor, 30);
});

t.test('half-up and half-even on exact halves', async (t) => {
  // 400 × 0.08875 = 35.5 → 36 either way (36 is even); 1200 × 0.08875 = 106.5 → 107 or 106.
  for (const [m, taxes] of [
    ['half-up', [36, 107]],
    ['half-even', [36, 106]],
  ] as const) {
    const totals = computeTotals(
      [line('a', 1, 400, 'prepared'), line('b', 3, 400, 'prepared')],
      undefined,
      newYork('line', m),
    );
    t.same(
      totals.lines.map((l) => l.taxMinor),
      taxes,
      m,
    );
  }
  // UK VAT 20 % inclusive: 15 × 20/120 = 2.5 → 3 or 2; the 50 % discount on 25 is 12.5 → 13 or 12.
  const uk = (m: RoundingMode): TaxRules => ({
    mode: 'inclusive',
    rates: { standard: { name: 'VAT 20 %', rateBp: 2000 } },
    rounding: { scope: 'receipt', mode: m },
    cashIncrementMinor: 1,
  });
  t.equal(computeTotals([line('a', 1, 15, 'standard')], undefined, uk('half-up')).taxMinor, 3);
  t.equal(computeTotals([line('a', 1, 15, 'standard')], undefined, uk('half-even')).taxMinor, 2);
  const half = { kind: 'percent', bp: 5000 } as const;
  t.equal(computeTotals([line('a', 1, 25, 'standard', half)], undefined, uk('half-up')).discountMinor, 13);
  t.equal(computeTotals([line('a', 1, 25, 'standard', half)], undefined, uk('half-even')).discountMinor, 12);
  t.equal(computeTotals([line('a', 1, 25, 'standard')], half, uk('half-even')).discountMinor, 12);
});

t.test('an empty basket, free items and a 0 % class', async (t) => {
  t.same(computeTotals([], undefined, germany()), {
    lines: [],
    subtotalMinor: 0,
    discountMinor: 0,
    taxMinor: 0,
    totalMinor: 0,
    taxes: [],
  });
  const totals = computeTotals([line('bag', 1, 0, 'exempt')], { kind: 'amount', minor: 100 }, newYork());
  t.same(totals.taxes, [{ taxClass: 'exempt', name: 'Exempt', rateBp: 0, baseMinor: 0, taxMinor: 0 }]);
  t.equal(totals.totalMinor, 0);
});

t.test('bad lines are refused with a TypeError that says what is wrong', async (t) => {
  const rules = germany();
  const bad: [BasketLine, RegExp][] = [
    [line('x', 1, 100, 'luxury'), /unknown tax class luxury/],
    [line('x', 1, 100, 'constructor'), /unknown tax class constructor/],
    [line('x', 0, 100, 'standard'), /qty/],
    [line('x', -1, 100, 'standard'), /qty/],
    [line('x', 1.5, 100, 'standard'), /qty/],
    [line('x', NaN, 100, 'standard'), /qty/],
    [line('x', 1, -1, 'standard'), /unitMinor/],
    [line('x', 1, 1.5, 'standard'), /unitMinor/],
    [line('x', 1, 100, 'standard', { kind: 'percent', bp: 10_001 }), /percent/],
    [line('x', 1, 100, 'standard', { kind: 'percent', bp: 0.5 }), /percent/],
    [line('x', 1, 100, 'standard', { kind: 'amount', minor: -1 }), /amount/],
  ];
  for (const [l, message] of bad) {
    t.throws(() => computeTotals([line('ok', 1, 100, 'standard'), l], undefined, rules), {
      name: 'TypeError',
      message,
    });
  }
  t.throws(() => computeTotals([], { kind: 'amount', minor: 1.5 }, rules), TypeError);
  t.throws(() => computeTotals([], { kind: 'bogus' } as unknown as Discount, rules), TypeError);
  const oddRate = { ...rules, rates: { standard: { name: 'odd', rateBp: 0.001 } } };
  t.throws(() => computeTotals([line('x', 1, 100, 'standard')], undefined, oddRate), TypeError);
  t.throws(() => computeTotals([line('x', 2 ** 30, 2 ** 30, 'standard')], undefined, rules), RangeError);
});

// --- properties -------------------------------------------------------------------------------------

/** The textbook rounding in BigInt, independent of money.ts. */
function referenceRound(n: bigint, d: bigint, mode: RoundingMode): bigint {
  const q = n / d;
  const twice = 2n * (n % d);
  return twice > d || (twice === d && (mode === 'half-up' || q % 2n === 1n)) ? q + 1n : q;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

const rateBp = fc.oneof(
  fc.constantFrom(0, 500, 700, 887.5, 1900, 2000, 2100, 2500, 10_000),
  fc.integer({ min: 0, max: 10_000 }),
  fc.integer({ min: 0, max: 1_000_000 }).map((ppm) => ppm / 100),
);

const rulesArb = (mode: TaxRules['mode']) =>
  fc.record({
    mode: fc.constant(mode),
    rates: fc.dictionary(
      fc.constantFrom('a', 'b', 'c', 'd'),
      fc.record({ name: fc.constant('rate'), rateBp }),
      { minKeys: 1, maxKeys: 4 },
    ),
    rounding: fc.record({
      scope: fc.constantFrom<Scope>('line', 'receipt'),
      mode: fc.constantFrom<RoundingMode>('half-up', 'half-even'),
    }),
    cashIncrementMinor: fc.oneof(fc.constantFrom(1, 5, 10, 100), fc.integer({ min: 1, max: 100 })),
  });

const discountArb = (maxAmount: number): fc.Arbitrary<Discount> =>
  fc.oneof(
    fc.record({
      kind: fc.constant('percent' as const),
      bp: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constant(10_000)),
    }),
    fc.record({ kind: fc.constant('amount' as const), minor: fc.integer({ min: 0, max: maxAmount }) }),
  );

/** A price: mostly shop-sized, sometimes 0, sometimes the catalog's largest. */
const unitArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 5_000 }) },
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 100_000_000 }) },
);

const basketArb = (mode: TaxRules['mode']) =>
  rulesArb(mode).chain((rules) =>
    fc.record({
      rules: fc.constant(rules),
      lines: fc.array(
        fc.record(
          {
            lineId: fc.uuid(),
            sku: fc.constant('sku'),
            qty: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 1000 })),
            unitMinor: unitArb,
            taxClass: fc.constantFrom(...Object.keys(rules.rates)),
            discount: discountArb(10_000),
          },
          { requiredKeys: ['lineId', 'sku', 'qty', 'unitMinor', 'taxClass'] },
        ),
        { maxLength: 8 },
      ),
      basketDiscount: fc.option(discountArb(100_000), { nil: undefined }),
    }),
  );

/** Throws on the first invariant the totals break; recomputes discounts and tax from first principles. */
function checkInvariants(lines: BasketLine[], basketDiscount: Discount | undefined, rules: TaxRules): void {
  const totals = computeTotals(lines, basketDiscount, rules);
  const fail = (what: string) => {
    throw new Error(`${what}\n${JSON.stringify({ lines, basketDiscount, rules, totals })}`);
  };
  const exclusive = rules.mode === 'exclusive';
  const roundMode = rules.rounding.mode;
  const L = totals.lines;
  if (L.length !== lines.length || L.some((l, i) => l.lineId !== lines[i]!.lineId))
    fail('lines out of order');

  const nets = L.map((l) => l.netOfDiscountMinor);
  const lineTaxes = L.map((l) => l.taxMinor);
  const numbers = [totals.subtotalMinor, totals.discountMinor, totals.taxMinor, totals.totalMinor];
  for (const l of L) numbers.push(l.grossMinor, l.discountMinor, l.netOfDiscountMinor, l.taxMinor);
  for (const x of totals.taxes) numbers.push(x.baseMinor, x.taxMinor);
  if (!numbers.every((n) => Number.isSafeInteger(n) && n >= 0))
    fail('an amount is negative or not an integer');

  if (sum(nets) + (exclusive ? totals.taxMinor : 0) !== totals.totalMinor) fail('Σ net (+ tax) ≠ total');
  if (sum(lineTaxes) !== totals.taxMinor) fail('Σ line tax ≠ tax');
  if (sum(totals.taxes.map((x) => x.taxMinor)) !== totals.taxMinor) fail('Σ breakdown tax ≠ tax');
  if (totals.subtotalMinor - totals.discountMinor !== sum(nets)) fail('subtotal − discount ≠ Σ net');
  if (sum(L.map((l) => l.grossMinor)) !== totals.subtotalMinor) fail('Σ gross ≠ subtotal');

  // Discounts: the line's own first, then the basket's on what is left.
  const remaining: number[] = [];
  L.forEach((l, i) => {
    const src = lines[i]!;
    if (l.grossMinor !== src.qty * src.unitMinor) fail('gross ≠ qty × unit');
    if (l.grossMinor - l.discountMinor !== l.netOfDiscountMinor) fail('gross − discount ≠ net');
    if (l.rateBp !== rules.rates[src.taxClass]!.rateBp || l.taxClass !== src.taxClass) fail('wrong rate');
    const d = src.discount;
    const own =
      d === undefined
        ? 0
        : d.kind === 'amount'
          ? Math.min(d.minor, l.grossMinor)
          : Number(referenceRound(BigInt(l.grossMinor) * BigInt(d.bp), 10_000n, roundMode));
    remaining.push(l.grossMinor - own);
    if (l.netOfDiscountMinor > l.grossMinor - own) fail('the basket discount added to a line');
  });
  const left = sum(remaining);
  const basketOff =
    basketDiscount === undefined
      ? 0
      : basketDiscount.kind === 'amount'
        ? Math.min(basketDiscount.minor, left)
        : Number(referenceRound(BigInt(left) * BigInt(basketDiscount.bp), 10_000n, roundMode));
  if (left - sum(nets) !== basketOff) fail('the basket discount is not what it should be');

  // Tax: each rounded amount is the exact one rounded, per line or per class.
  const taxOf = (amount: number, bp: number) => {
    const ppm = BigInt(Math.round(bp * 100));
    return Number(referenceRound(BigInt(amount) * ppm, exclusive ? 1_000_000n : 1_000_000n + ppm, roundMode));
  };
  const classes = [...new Set(lines.map((l) => l.taxClass))].sort();
  if (JSON.stringify(totals.taxes.map((x) => x.taxClass)) !== JSON.stringify(classes))
    fail('breakdown classes');
  for (const x of totals.taxes) {
    const members = L.filter((l) => l.taxClass === x.taxClass);
    const classNet = sum(members.map((l) => l.netOfDiscountMinor));
    const classTax = sum(members.map((l) => l.taxMinor));
    if (classTax !== x.taxMinor) fail('Σ line tax of a class ≠ its breakdown');
    if (x.baseMinor !== (exclusive ? classNet : classNet - classTax)) fail('breakdown base');
    if (x.name !== rules.rates[x.taxClass]!.name || x.rateBp !== rules.rates[x.taxClass]!.rateBp)
      fail('breakdown rate');
    if (rules.rounding.scope === 'receipt') {
      if (x.taxMinor !== taxOf(classNet, x.rateBp)) fail('receipt tax is not the class total rounded once');
    } else if (members.some((l) => l.taxMinor !== taxOf(l.netOfDiscountMinor, x.rateBp))) {
      fail('line tax is not the line rounded');
    }
  }
  if (!exclusive && L.some((l) => l.taxMinor > l.netOfDiscountMinor)) fail('contained tax above the price');
}

for (const mode of ['inclusive', 'exclusive'] as const) {
  t.test(`invariants hold for 10,000 random ${mode} baskets`, async (t) => {
    fc.assert(
      fc.property(basketArb(mode), ({ rules, lines, basketDiscount }) =>
        checkInvariants(lines, basketDiscount, rules),
      ),
      { numRuns: 10_000, seed: 42 },
    );
    t.pass();
  });
}

/**
 * How a sale closes: cards are charged exactly what they cover (never more, so never change), and the
 * rest is cash, rounded to the coin increment; change comes out of the cash alone.
 */
function settle(totalMinor: number, cardMinor: number, cashMinor: number, incrementMinor: number) {
  if (cardMinor > totalMinor) throw new Error('a card is never charged more than is owed');
  const due = cashRound(totalMinor - cardMinor, incrementMinor);
  if (cashMinor < due.roundedMinor) return undefined;
  return { changeMinor: cashMinor - due.roundedMinor, roundingMinor: due.adjustmentMinor };
}

t.test('cash rounding applies to cash alone, and tenders − change = total', async (t) => {
  const arb = fc.constantFrom('inclusive' as const, 'exclusive' as const).chain((mode) =>
    basketArb(mode).chain((b) => {
      const total = computeTotals(b.lines, b.basketDiscount, b.rules).totalMinor;
      return fc.record({
        basket: fc.constant(b),
        cardMinor: fc.oneof(fc.constant(0), fc.constant(total), fc.integer({ min: 0, max: total })),
        extraCashMinor: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 10_000 })),
      });
    }),
  );
  fc.assert(
    fc.property(arb, ({ basket, cardMinor, extraCashMinor }) => {
      const { rules, lines, basketDiscount } = basket;
      const totalMinor = computeTotals(lines, basketDiscount, rules).totalMinor;
      const inc = rules.cashIncrementMinor;

      // All card: the exact total, unrounded. All cash: the total rounded to the increment.
      const card = settle(totalMinor, totalMinor, 0, inc)!;
      if (card.changeMinor !== 0 || card.roundingMinor !== 0) return false;
      const cashOnly = cashRound(totalMinor, inc);
      if (cashOnly.roundedMinor % inc !== 0 || 2 * Math.abs(cashOnly.adjustmentMinor) > inc) return false;
      if (inc === 1 && cashOnly.adjustmentMinor !== 0) return false;

      // A split: the card covers part, cash the rest plus whatever the customer hands over.
      const cashDue = cashRound(totalMinor - cardMinor, inc).roundedMinor;
      const cashMinor = cashDue + extraCashMinor;
      const split = settle(totalMinor, cardMinor, cashMinor, inc);
      if (split === undefined) return false;
      if (cardMinor + cashMinor - split.changeMinor !== totalMinor + split.roundingMinor) return false;
      if (split.changeMinor > cashMinor || split.changeMinor < 0) return false;
      if (cardMinor === totalMinor && split.roundingMinor !== 0) return false;
      if (inc === 1 && cardMinor + cashMinor - split.changeMinor !== totalMinor) return false;
      // Short of the rounded cash due by a unit, the sale does not close.
      return cashDue === 0 || settle(totalMinor, cardMinor, cashDue - 1, inc) === undefined;
    }),
    { numRuns: 10_000, seed: 7 },
  );
  t.pass();
});
