// A seeded crash campaign: many scenarios, each replayable from its seed, with counters that prove
// the campaign exercised what it claims. Environment: CRASH_SCENARIOS (how many), CRASH_SEED_BASE
// (first seed), CRASH_SEED (replay just that one).
import type { Test } from 'tap';

/** A broken invariant, as opposed to a crash of the test itself. */
export class Violation extends Error {}

export function must(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Violation(what);
}

export const ONLY_SEED = process.env.CRASH_SEED === undefined ? undefined : Number(process.env.CRASH_SEED);

export function runCampaign<S extends { [K in keyof S]: number }>(
  t: Test,
  opts: { defaultScenarios: number; stats: S; replay: string; scenario: (seed: number, stats: S) => void },
): void {
  const count = Number(process.env.CRASH_SCENARIOS ?? opts.defaultScenarios);
  const base = Number(process.env.CRASH_SEED_BASE ?? 1);
  const seeds = ONLY_SEED !== undefined ? [ONLY_SEED] : Array.from({ length: count }, (_, i) => base + i);
  const failures: string[] = [];
  for (const seed of seeds) {
    try {
      opts.scenario(seed, opts.stats);
    } catch (err) {
      const why = err instanceof Violation ? err.message : String((err as Error)?.stack ?? err);
      failures.push(`seed ${seed}: ${why}`);
      if (failures.length >= 5) break;
    }
  }
  t.comment(JSON.stringify({ scenarios: seeds.length, ...opts.stats }));
  if (failures.length) t.comment(`replay with CRASH_SEED=<seed> npx tap ${opts.replay}`);
  t.same(failures, [], 'no scenario broke an invariant');
  // The campaign must actually exercise what it claims to.
  if (ONLY_SEED === undefined && seeds.length >= 500) {
    for (const [key, value] of Object.entries(opts.stats) as [string, number][]) {
      t.ok(value > 0, `${key} happened (${value})`);
    }
  }
}

/** How many scenarios a campaign will run (for its test's title). */
export function scenarioCount(defaultScenarios: number): number {
  return ONLY_SEED !== undefined ? 1 : Number(process.env.CRASH_SCENARIOS ?? defaultScenarios);
}
