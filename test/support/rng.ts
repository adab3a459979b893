// A seeded random source for tests and simulations, so every failure can be replayed from its seed.
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

export class Rng {
  private readonly gen;

  constructor(readonly seed: number) {
    this.gen = xoroshiro128plus(seed);
  }

  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return uniformInt(this.gen, lo, hi);
  }

  chance(p: number): boolean {
    return this.int(0, 999_999) < p * 1_000_000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  bytes(n: number): Buffer {
    const buf = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) buf[i] = this.int(0, 255);
    return buf;
  }
}

/**
 * A test's seed: the environment variable `name` when set (a replay), else a fresh random one the test
 * prints. A value that is not a whole number below 2^31 is refused, not read as something else.
 */
export function seedFromEnv(name: string): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return Math.floor(Math.random() * 2 ** 31);
  if (!/^\d{1,10}$/.test(raw) || Number(raw) >= 2 ** 31) {
    throw new Error(`${name} is a whole number below 2^31, not ${raw}`);
  }
  return Number(raw);
}
