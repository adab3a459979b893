// Small statistics for the benchmarks: percentiles of hrtime samples, medians, rounding.

/** Nearest-rank percentile of durations in nanoseconds, returned in microseconds. */
export function percentileUs(samplesNs: readonly bigint[], p: number): number {
  const sorted = [...samplesNs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return Number(sorted[rank - 1]!) / 1000;
}

export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const round = (x: number, digits: number): number => Number(x.toFixed(digits));
