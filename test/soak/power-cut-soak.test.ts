// The power-cut soak (docs/soak.md) at CI size: 200 cycles of registerd over simulated power, cut
// during start-up, at random durable steps (torn flushes, junk sectors), at random moments and during
// card authorisations; then everything syncs and the ledger is reconciled. SOAK_CYCLES and SOAK_SEED
// replay or lengthen a run; the seed is printed. A second run on a disk that lies about fdatasync shows
// the soak can fail.
import t from 'tap';
import { runSoak } from '../../scripts/soak/soak.js';

const cycles = Number(process.env.SOAK_CYCLES ?? 200);
const seed = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 32));

t.test(`${cycles} power cuts: nothing acknowledged is lost, nothing doubled, the chain holds`, async (t) => {
  t.comment(`seed ${seed} (replay: SOAK_SEED=${seed} npx tap test/soak/power-cut-soak.test.ts)`);
  const r = await runSoak({ cycles, seed, progress: (line) => t.comment(line) });
  t.comment(JSON.stringify(r));
  t.same(r.violations, [], 'every invariant held after every restart');
  t.equal(r.lost, 0, 'no acknowledged sale is missing from the ledger');
  t.equal(r.duplicates, 0, 'no sale is booked twice');
  t.equal(r.double_charges, 0, 'every card charge is booked exactly once');
  t.ok(r.chain_ok, 'the journal verifies and the ledger raised no chain, gap or quarantine alarm');
  t.equal(r.pending_at_end, 0, 'the queue drained');
  t.ok(r.sales_acked > cycles, `sales were rung up (${r.sales_acked})`);
  t.ok(r.sales_in_ledger >= r.sales_acked, 'sales whose answer the cut took are booked too');
  t.ok(r.card_charges > 0, 'card payments were made');
  for (const kind of ['recovery', 'inside', 'outside', 'card'] as const)
    t.ok(r.cuts[kind] > 0, `cuts of kind ${kind}: ${r.cuts[kind]}`);
});

t.test('on a disk whose fdatasync writes nothing, the soak reports broken invariants', async (t) => {
  const r = await runSoak({ cycles: 6, seed: 5, lyingDisk: true, progress: () => {} });
  t.ok(r.violations.length > 0, `violations: ${r.violations[0]?.slice(0, 120)}`);
  t.notOk(r.chain_ok && r.lost === 0 && r.violations.length === 0, 'the run is not reported clean');
});
