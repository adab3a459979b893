// With several consumers a device's second batch can arrive before its first is committed. The batch
// that is early waits (bounded) for its turn and applies in order, instead of being left for a resend.
import t from 'tap';
import { applyJournalMessage } from '../../ledger/apply.js';
import { applyInSeqOrder } from '../../ledger/seq-order.js';
import { count, forEachDialect, journalOf, message, randomSales, split } from '../support/ledger-fixtures.js';

forEachDialect(t, 'an early batch waits for the one before it', async (t, { ldb }) => {
  const r = await randomSales(7, 12);
  const [first, second] = split(journalOf(r), 30);
  let released!: () => void;
  const turn = new Promise<void>((resolve) => (released = resolve));
  const sleeps: number[] = [];
  // The second batch is handed over first; its waits are where the first one gets committed.
  const early = applyInSeqOrder(ldb, 'till-1', message(second!), 1, {
    sleep: async (ms) => {
      sleeps.push(ms);
      if (sleeps.length === 3) released();
      await new Promise((res) => setImmediate(res));
    },
  });
  await turn;
  const firstOutcome = await applyJournalMessage(ldb, 'till-1', message(first!), 1);
  const secondOutcome = await early;
  t.equal(firstOutcome.applied, first!.length);
  t.equal(secondOutcome.applied, second!.length, 'the early batch applied in its turn');
  t.equal(secondOutcome.ignored, 0);
  t.same(secondOutcome.alarms, [], 'no gap alarm for a batch that was only early');
  t.equal(await count(ldb, 'inbox'), first!.length + second!.length);
  t.ok(sleeps.length >= 3 && sleeps.every((ms) => ms <= 200), `bounded polls: ${sleeps.join(', ')} ms`);
});

forEachDialect(t, 'a real gap still ends in the alarm, after a bounded wait', async (t, { ldb }) => {
  const r = await randomSales(8, 12);
  const [, second] = split(journalOf(r), 30);
  let waited = 0;
  const outcome = await applyInSeqOrder(ldb, 'till-1', message(second!), 1, {
    maxWaitMs: 500,
    sleep: async (ms) => void (waited += ms),
  });
  t.ok(waited >= 500 && waited < 700, `gave up after ${waited} ms of waiting`);
  t.equal(outcome.applied, 0);
  t.equal(outcome.ignored, second!.length);
  t.match(outcome.alarms, [{ kind: 'gap', seq: 1 }]);
});
