// Bad input at the ledger: seeded mutations of a register's real journal batches — flipped bytes,
// truncations, altered values, records dropped, swapped or retyped, another device named, junk JSON —
// delivered in front of the genuine batches (as a broken link or a tampering device would), then the
// register's whole queue resent. Whatever arrives:
//   - nothing throws: every message is answered with an outcome, refusals carry a reject code;
//   - no altered content is booked: every record the inbox holds as applied has its original hash, which
//     the ledger verified against the content it booked;
//   - every seq is in the inbox exactly once, and every record no mutated message touched is applied;
//   - the books hold exactly the sales of the records applied.
// A failing seed is printed: FUZZ_LEDGER_SEED=<seed> npx tap test/fuzz/ledger-payloads.test.ts
import t from 'tap';
import { applyJournalMessage } from '../../ledger/apply.js';
import { receiveStock } from '../../ledger/stock.js';
import { RejectCode } from '../../cloud-bridge/protocol/wire.js';
import type { JournalRecord } from '../../cloud-bridge/protocol/record.js';
import { forEachDialect, journalOf, message, randomSales, split, SKUS } from '../support/ledger-fixtures.js';
import { Rng } from '../support/rng.js';
import type { LedgerDb } from '../../ledger/db/open.js';

const NOW = 1_800_000_000_000;
const BATCH = 7;
const only = process.env.FUZZ_LEDGER_SEED ? [Number(process.env.FUZZ_LEDGER_SEED)] : undefined;

type Mutation = { name: string; payload: string; touches: number[] };

/** One mutated message made from batch `records` (whose seqs it "touches": they may end up rejected). */
function mutate(rng: Rng, records: JournalRecord[]): Mutation {
  const seqs = records.map((r) => r.seq);
  const text = message(records);
  const clone = () => structuredClone(records) as unknown as Record<string, unknown>[];
  switch (rng.int(0, 9)) {
    case 0: {
      const buf = Buffer.from(text);
      for (let n = rng.int(1, 4); n > 0; n--) buf[rng.int(0, buf.length - 1)] ^= 1 << rng.int(0, 7);
      return { name: 'flipped bits', payload: buf.toString('latin1'), touches: seqs };
    }
    case 1:
      return { name: 'truncated', payload: text.slice(0, rng.int(0, text.length - 1)), touches: seqs };
    case 2: {
      // A value inside one record's events changed, as a tampering device would: the hash no longer fits.
      const recs = clone();
      const r = rng.pick(recs);
      const e = rng.pick(r.events as Record<string, unknown>[]);
      const keys = Object.keys(e).filter((k) => k !== 'type');
      if (keys.length) e[rng.pick(keys)] = rng.pick([0, -1, 1e9, 'x', null, [], {}, true]);
      else e.type = 'not.a.type';
      return {
        name: 'altered value',
        payload: JSON.stringify({ v: 1, deviceId: 'till-1', epoch: 1, records: recs }),
        touches: seqs,
      };
    }
    case 3: {
      const recs = clone();
      recs.splice(rng.int(0, recs.length - 1), 1);
      return {
        name: 'record dropped',
        payload: JSON.stringify({ v: 1, deviceId: 'till-1', epoch: 1, records: recs }),
        touches: seqs,
      };
    }
    case 4: {
      const recs = clone();
      const i = rng.int(0, recs.length - 1);
      const j = rng.int(0, recs.length - 1);
      [recs[i], recs[j]] = [recs[j]!, recs[i]!];
      return {
        name: 'records swapped',
        payload: JSON.stringify({ v: 1, deviceId: 'till-1', epoch: 1, records: recs }),
        touches: seqs,
      };
    }
    case 5: {
      const recs = clone();
      const r = rng.pick(recs);
      const field = rng.pick(['seq', 'ts', 'clock', 'prevHash', 'hash', 'events']);
      r[field] = rng.pick([-1, 0, 2 ** 60, 'seven', null, [], { a: 1 }, 'f'.repeat(64)]);
      return {
        name: `record ${field} retyped`,
        payload: JSON.stringify({ v: 1, deviceId: 'till-1', epoch: 1, records: recs }),
        touches: seqs,
      };
    }
    case 6:
      return { name: 'another device named', payload: message(records, 'till-2'), touches: [] };
    case 7:
      return {
        name: 'junk JSON',
        payload: JSON.stringify(rng.pick([null, 7, 'x', [], { v: 1 }, { records: [] }])),
        touches: [],
      };
    case 8: {
      const recs = clone();
      recs.push(rng.pick([null, 5, 'record', { seq: 'x' }, {}]) as Record<string, unknown>);
      return {
        name: 'junk record added',
        payload: JSON.stringify({ v: 1, deviceId: 'till-1', epoch: 1, records: recs }),
        touches: seqs,
      };
    }
    default:
      return { name: 'random bytes', payload: rng.bytes(rng.int(0, 300)).toString('latin1'), touches: [] };
  }
}

async function inbox(ldb: LedgerDb) {
  // The register's epoch only: a flipped bit can name another epoch, which is another chain of its own.
  return ldb.db
    .selectFrom('inbox')
    .select(['seq', 'hash', 'outcome'])
    .where('device_id', '=', 'till-1')
    .where('epoch', '=', 1)
    .execute();
}

forEachDialect(
  t,
  'mutated journal batches never book altered content, and the genuine queue still lands',
  async (t, { ldb, fresh }) => {
    const records = journalOf(await randomSales(91, 40));
    const batches = split(records, BATCH);
    const seeds = only ?? (ldb.dialect === 'sqlite' ? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] : [1, 2, 3, 4]);
    for (const seed of seeds) {
      const rng = new Rng(seed);
      const books = seed === seeds[0] ? ldb : await fresh();
      for (const sku of SKUS) await receiveStock(books, sku, 10_000, 'opening stock');
      const touched = new Set<number>();
      const names: string[] = [];
      let threw: unknown;
      try {
        for (let b = 0; b < batches.length; b++) {
          // Mutated versions of this batch arrive first, sometimes several.
          while (rng.chance(0.4)) {
            const m = mutate(rng, batches[b]!);
            names.push(m.name);
            m.touches.forEach((s) => touched.add(s));
            const out = await applyJournalMessage(books, 'till-1', m.payload, NOW);
            for (const r of out.rejected)
              if (!RejectCode.safeParse(r.code).success) throw new Error(`unknown reject code ${r.code}`);
          }
          await applyJournalMessage(books, 'till-1', message(batches[b]!), NOW);
        }
        // The register resends its whole queue (it lost its ack): nothing changes.
        for (const b of batches) await applyJournalMessage(books, 'till-1', message(b), NOW);
      } catch (err) {
        threw = err;
      }
      const why = `seed ${seed} (${names.join(', ') || 'no mutation'})`;
      t.equal(threw, undefined, `${why}: no message made the ledger throw`);
      const rows = await inbox(books);
      const bySeq = new Map<number, { hash: string; outcome: string }[]>();
      for (const r of rows) bySeq.set(r.seq, [...(bySeq.get(r.seq) ?? []), r]);
      const wrong: string[] = [];
      for (const rec of records) {
        const got = bySeq.get(rec.seq) ?? [];
        if (got.length !== 1) wrong.push(`seq ${rec.seq}: ${got.length} inbox rows`);
        else if (got[0]!.outcome === 'applied' && got[0]!.hash !== rec.hash)
          wrong.push(`seq ${rec.seq}: altered content booked`);
        else if (got[0]!.outcome !== 'applied' && !touched.has(rec.seq))
          wrong.push(`seq ${rec.seq}: genuine record not applied`);
      }
      t.same(wrong, [], `${why}: each seq once, nothing altered booked, nothing genuine lost`);
      t.equal(bySeq.size, records.length, `${why}: no seq beyond the journal`);
      const appliedSales = records.filter(
        (r) =>
          bySeq.get(r.seq)?.[0]?.outcome === 'applied' && r.events.some((e) => e.type === 'sale.completed'),
      ).length;
      const sales = await books.db
        .selectFrom('sales')
        .select(books.db.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      t.equal(Number(sales.n), appliedSales, `${why}: the books hold the applied records' sales`);
    }
  },
);
