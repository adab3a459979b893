// Integer money arithmetic for the till: rounding a quotient, cash rounding, splitting an amount, and
// printing it. Every amount is an integer of minor units; no money ever passes through a fraction.

export type RoundingMode = 'half-up' | 'half-even';

function assertSafeInteger(value: number, what: string): void {
  if (!Number.isSafeInteger(value))
    throw new RangeError(`${what} must be an integer below 2^53, got ${value}`);
}

/** Rounds |n| / |d| (both ≥ 0, d > 0) to an integer: q + 1 when the remainder is past, or at, a half. */
function roundQuotient(q: number, r: number, d: number, mode: RoundingMode): number {
  // 2r is exact: doubling a double only changes its exponent.
  const twice = 2 * r;
  if (twice > d || (twice === d && (mode === 'half-up' || q % 2 === 1))) return q + 1;
  return q;
}

/**
 * numerator / denominator rounded to an integer; half-up rounds a half away from zero, half-even to
 * the even neighbour, and both treat a negative quotient as the mirror of the positive one.
 */
export function roundDiv(numerator: number, denominator: number, mode: RoundingMode): number {
  assertSafeInteger(numerator, 'numerator');
  assertSafeInteger(denominator, 'denominator');
  if (denominator === 0) throw new RangeError('denominator must not be 0');
  const a = Math.abs(numerator);
  const d = Math.abs(denominator);
  // % of integer doubles is exact, and so is dividing out an exact multiple.
  const r = a % d;
  const q = roundQuotient((a - r) / d, r, d, mode);
  return numerator < 0 !== denominator < 0 && q !== 0 ? -q : q;
}

function roundDivBig(numerator: bigint, denominator: bigint, mode: RoundingMode): bigint {
  const negative = numerator < 0n !== denominator < 0n;
  const a = numerator < 0n ? -numerator : numerator;
  const d = denominator < 0n ? -denominator : denominator;
  let q = a / d;
  const twice = 2n * (a % d);
  if (twice > d || (twice === d && (mode === 'half-up' || q % 2n === 1n))) q += 1n;
  return negative ? -q : q;
}

/**
 * a × b / divisor rounded to an integer, exact even when a × b passes 2^53 (a price times a tax rate
 * in parts per million does). The result must itself fit in a safe integer.
 */
export function mulDivRound(a: number, b: number, divisor: number, mode: RoundingMode): number {
  assertSafeInteger(a, 'a');
  assertSafeInteger(b, 'b');
  assertSafeInteger(divisor, 'divisor');
  const product = a * b;
  if (Number.isSafeInteger(product)) return roundDiv(product, divisor, mode);
  if (divisor === 0) throw new RangeError('divisor must not be 0');
  const result = Number(roundDivBig(BigInt(a) * BigInt(b), BigInt(divisor), mode));
  assertSafeInteger(result, 'a × b / divisor');
  return result;
}

export interface CashRounding {
  /** What the customer pays in cash: a multiple of the increment. */
  roundedMinor: number;
  /** roundedMinor − totalMinor: negative when the shop gives a little away, positive when it gains it. */
  adjustmentMinor: number;
}

/** Rounds a cash total to the smallest coin in circulation, e.g. incrementMinor 5 for 0.05. */
export function cashRound(
  totalMinor: number,
  incrementMinor: number,
  mode: RoundingMode = 'half-up',
): CashRounding {
  assertSafeInteger(totalMinor, 'totalMinor');
  if (!Number.isSafeInteger(incrementMinor) || incrementMinor < 1) {
    throw new RangeError(`incrementMinor must be a positive integer, got ${incrementMinor}`);
  }
  const roundedMinor = roundDiv(totalMinor, incrementMinor, mode) * incrementMinor;
  assertSafeInteger(roundedMinor, 'the rounded total');
  return { roundedMinor, adjustmentMinor: roundedMinor - totalMinor };
}

/** The exact quotient and remainder of a × b / d for a, b ≥ 0 and d > 0. */
function mulDivMod(a: number, b: number, d: number): [quotient: number, remainder: number] {
  const product = a * b;
  if (Number.isSafeInteger(product)) {
    const r = product % d;
    return [(product - r) / d, r];
  }
  const p = BigInt(a) * BigInt(b);
  const bd = BigInt(d);
  return [Number(p / bd), Number(p % bd)];
}

/**
 * Splits totalMinor in proportion to weights by the largest-remainder method: each share is first
 * rounded down, then the units left over go one each to the largest remainders, ties to the lower
 * index. The shares always sum to totalMinor, and a share never exceeds its exact proportion by a
 * whole unit. A negative total is split as the mirror of the positive one.
 */
export function allocate(totalMinor: number, weights: readonly number[]): number[] {
  assertSafeInteger(totalMinor, 'totalMinor');
  let sum = 0;
  for (const w of weights) {
    if (!Number.isSafeInteger(w) || w < 0)
      throw new RangeError(`weights must be non-negative integers, got ${w}`);
    sum += w;
  }
  assertSafeInteger(sum, 'the sum of the weights');
  if (sum === 0) {
    if (totalMinor !== 0) throw new RangeError(`cannot allocate ${totalMinor} over weights that are all 0`);
    return weights.map(() => 0);
  }
  const total = Math.abs(totalMinor);
  const shares: number[] = [];
  const remainders: number[] = [];
  let left = total;
  for (const w of weights) {
    const [q, r] = mulDivMod(total, w, sum);
    shares.push(q);
    remainders.push(r);
    left -= q;
  }
  // left < weights.length, and at least `left` remainders are non-zero.
  const order = weights.map((_, i) => i).sort((i, j) => remainders[j]! - remainders[i]! || i - j);
  for (let k = 0; k < left; k++) shares[order[k]!]! += 1;
  return totalMinor < 0 ? shares.map((s) => (s === 0 ? 0 : -s)) : shares;
}

/**
 * ISO 4217 minor-unit exponents that are not 2. A table rather than Intl, because CLDR's display
 * digits differ from ISO's minor units for some currencies (e.g. HUF, IDR), and the ledger counts in ISO's.
 */
// prettier-ignore
const EXPONENTS: Readonly<Record<string, number>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0,
  VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

/** How many decimal places one major unit of the currency has (2 for EUR and USD, 0 for JPY). */
export function currencyExponent(currency: string): number {
  if (!/^[A-Z]{3}$/.test(currency))
    throw new RangeError(`currency must be an ISO 4217 code, got ${currency}`);
  return EXPONENTS[currency] ?? 2;
}

/** An amount for a receipt: "12.49 EUR", "-0.05 EUR", "1250 JPY". No grouping, point as separator. */
export function formatMinor(minor: number, currency: string): string {
  return `${formatAmount(minor, currencyExponent(currency))} ${currency}`;
}

/** The figure alone, for a screen that shows the currency once: "12.49", "-0.05", "1250". */
export function formatAmount(minor: number, exponent: number): string {
  assertSafeInteger(minor, 'minor');
  const digits = String(Math.abs(minor)).padStart(exponent + 1, '0');
  const major = exponent === 0 ? digits : `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
  return `${minor < 0 ? '-' : ''}${major}`;
}
