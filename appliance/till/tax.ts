// The basket arithmetic: line and basket discounts, then tax by class, inclusive (VAT) or exclusive
// (sales tax), rounded per line or once per rate. Integer minor units throughout; the totals reconcile
// to the unit, line by line and rate by rate, for every basket.
import type { TaxRules } from './catalog.js';
import { allocate, mulDivRound, type RoundingMode } from './money.js';

export type Discount =
  { kind: 'percent'; bp: number /* 0..10000 */ } | { kind: 'amount'; minor: number /* ≥ 0 */ };

export interface BasketLine {
  lineId: string;
  sku: string;
  /** An integer ≥ 1. */
  qty: number;
  /** The shelf price: tax-inclusive in inclusive mode, net in exclusive mode. */
  unitMinor: number;
  taxClass: string;
  discount?: Discount;
}

export interface LineTotal {
  lineId: string;
  /** qty × unitMinor. */
  grossMinor: number;
  /** The line's own discount plus its share of the basket discount. */
  discountMinor: number;
  /**
   * grossMinor − discountMinor: what the customer pays for the line, before added tax (exclusive) or
   * with the tax in it (inclusive).
   */
  netOfDiscountMinor: number;
  taxMinor: number;
  taxClass: string;
  rateBp: number;
}

export interface TaxBreakdown {
  taxClass: string;
  name: string;
  rateBp: number;
  /** The net amount taxed. */
  baseMinor: number;
  taxMinor: number;
}

export interface BasketTotals {
  lines: LineTotal[];
  /** Σ grossMinor. */
  subtotalMinor: number;
  discountMinor: number;
  taxMinor: number;
  /** What is owed, before cash rounding. */
  totalMinor: number;
  /** One per tax class present, sorted by taxClass. */
  taxes: TaxBreakdown[];
}

/** Rates are worked in millionths (1 bp = 100 ppm), so that 8.875 % (887.5 bp) is an integer too. */
const PPM_PER_BP = 100;
const PPM = 1_000_000;
const BP = 10_000;

/** The rate of a class in ppm; rejects a rate that would not be exact in that unit. */
function ratePpm(taxClass: string, rateBp: number): number {
  const ppm = Math.round(rateBp * PPM_PER_BP);
  if (!Number.isFinite(rateBp) || ppm / PPM_PER_BP !== rateBp || ppm < 0 || ppm > PPM) {
    throw new TypeError(`tax class ${taxClass}: rateBp must be 0..10000 in steps of 0.01, got ${rateBp}`);
  }
  return ppm;
}

function checkLine(line: BasketLine, index: number, rules: TaxRules): void {
  const at = `basket line ${index} (${line.lineId})`;
  if (!Object.hasOwn(rules.rates, line.taxClass)) {
    throw new TypeError(`${at}: unknown tax class ${line.taxClass}`);
  }
  if (!Number.isSafeInteger(line.qty) || line.qty < 1) {
    throw new TypeError(`${at}: qty must be a whole number ≥ 1, got ${line.qty}`);
  }
  if (!Number.isSafeInteger(line.unitMinor) || line.unitMinor < 0) {
    throw new TypeError(`${at}: unitMinor must be a whole number of minor units ≥ 0, got ${line.unitMinor}`);
  }
  if (line.discount !== undefined) checkDiscount(line.discount, at);
}

function checkDiscount(discount: Discount, at: string): void {
  if (discount.kind === 'percent') {
    if (!Number.isInteger(discount.bp) || discount.bp < 0 || discount.bp > BP) {
      throw new TypeError(`${at}: a percent discount is 0..10000 bp, got ${discount.bp}`);
    }
  } else if (discount.kind === 'amount') {
    if (!Number.isSafeInteger(discount.minor) || discount.minor < 0) {
      throw new TypeError(
        `${at}: an amount discount is a whole number of minor units ≥ 0, got ${discount.minor}`,
      );
    }
  } else {
    throw new TypeError(`${at}: unknown discount kind ${(discount as { kind: unknown }).kind}`);
  }
}

/** The discount on an amount: a percentage rounded by the rules, or a fixed amount no larger than it. */
function discountOn(amountMinor: number, discount: Discount | undefined, mode: RoundingMode): number {
  if (discount === undefined) return 0;
  if (discount.kind === 'percent') return mulDivRound(amountMinor, discount.bp, BP, mode);
  return Math.min(discount.minor, amountMinor);
}

/** The tax on an amount: added on top of a net amount, or contained in a tax-inclusive one. */
function taxOn(amountMinor: number, ppm: number, rules: TaxRules): number {
  const divisor = rules.mode === 'exclusive' ? PPM : PPM + ppm;
  return mulDivRound(amountMinor, ppm, divisor, rules.rounding.mode);
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

function assertSafe(value: number, what: string): number {
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`the basket is too large: ${what} passes 2^53 minor units`);
  }
  return value;
}

/**
 * The totals of a basket. Throws a TypeError for a line or discount that cannot be priced (unknown tax
 * class, qty not a whole number ≥ 1, negative or fractional price, discount out of range), and a
 * RangeError for a basket whose amounts would pass 2^53 minor units.
 */
export function computeTotals(
  lines: readonly BasketLine[],
  basketDiscount: Discount | undefined,
  rules: TaxRules,
): BasketTotals {
  lines.forEach((line, i) => checkLine(line, i, rules));
  if (basketDiscount !== undefined) checkDiscount(basketDiscount, 'basket discount');
  const mode = rules.rounding.mode;

  // Line discounts first, then the basket discount on what remains, shared in proportion to it.
  const gross = lines.map((l) => assertSafe(l.qty * l.unitMinor, `line ${l.lineId}`));
  const subtotalMinor = assertSafe(sum(gross), 'the subtotal');
  const lineDiscount = lines.map((l, i) => discountOn(gross[i]!, l.discount, mode));
  const remaining = gross.map((g, i) => g - lineDiscount[i]!);
  const remainingSum = sum(remaining);
  const basketShare = allocate(discountOn(remainingSum, basketDiscount, mode), remaining);
  const amount = remaining.map((r, i) => r - basketShare[i]!);

  // Tax per line, or per class on the sum of its lines and then shared back so the lines still add up.
  const classes = [...new Set(lines.map((l) => l.taxClass))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const ppmOf = new Map(classes.map((c) => [c, ratePpm(c, rules.rates[c]!.rateBp)]));
  const tax = new Array<number>(lines.length).fill(0);
  const taxes: TaxBreakdown[] = [];
  let taxMinor = 0;
  for (const taxClass of classes) {
    const members = lines.flatMap((l, i) => (l.taxClass === taxClass ? [i] : []));
    const ppm = ppmOf.get(taxClass)!;
    const amounts = members.map((i) => amount[i]!);
    const classAmount = sum(amounts);
    const shares =
      rules.rounding.scope === 'line'
        ? amounts.map((a) => taxOn(a, ppm, rules))
        : allocate(taxOn(classAmount, ppm, rules), amounts);
    members.forEach((lineIndex, k) => (tax[lineIndex] = shares[k]!));
    const classTax = sum(shares);
    const { name, rateBp } = rules.rates[taxClass]!;
    const baseMinor = rules.mode === 'exclusive' ? classAmount : classAmount - classTax;
    taxes.push({ taxClass, name, rateBp, baseMinor, taxMinor: classTax });
    taxMinor += classTax;
  }

  const lineTotals = lines.map((l, i): LineTotal => ({
    lineId: l.lineId,
    grossMinor: gross[i]!,
    discountMinor: lineDiscount[i]! + basketShare[i]!,
    netOfDiscountMinor: amount[i]!,
    taxMinor: tax[i]!,
    taxClass: l.taxClass,
    rateBp: rules.rates[l.taxClass]!.rateBp,
  }));
  const amountSum = sum(amount);
  return {
    lines: lineTotals,
    subtotalMinor,
    discountMinor: subtotalMinor - amountSum,
    taxMinor,
    totalMinor: assertSafe(rules.mode === 'exclusive' ? amountSum + taxMinor : amountSum, 'the total'),
    taxes,
  };
}
