// Random shifts through the whole register (journal included), in both tax modes with 0.05 cash
// rounding: every completed sale satisfies tenders − change = total + rounding, rounding only ever
// comes from cash, refunds never exceed what was sold, and the shift's cash adds up.
//   Replay: TILL_SEED=7 npx tap test/unit/till/register-properties.test.ts
import t from 'tap';
import { isRegisterError } from '../../../appliance/errors.js';
import type { Catalog } from '../../../appliance/till/catalog.js';
import { expectedCash, type CompletedSale } from '../../../appliance/till/state.js';
import { Rng } from '../../support/rng.js';
import { MANAGER, demoCatalog, readyRegister } from '../../support/till-fixtures.js';

const SALES = Number(process.env.TILL_SALES ?? 300);
const SEED = Number(process.env.TILL_SEED ?? 20261127);

function catalogFor(mode: 'inclusive' | 'exclusive'): Catalog {
  return {
    ...demoCatalog,
    tax: {
      mode,
      rates: {
        standard: { name: 'std', rateBp: 810 },
        reduced: { name: 'red', rateBp: 260 },
        zero: { name: 'zero', rateBp: 0 },
      },
      rounding: { scope: mode === 'inclusive' ? 'receipt' : 'line', mode: 'half-even' },
      cashIncrementMinor: 5,
    },
  };
}

for (const mode of ['inclusive', 'exclusive'] as const) {
  t.test(`${SALES} random sales and refunds, ${mode} tax (seed ${SEED})`, async (t) => {
    const rng = new Rng(SEED + (mode === 'inclusive' ? 0 : 1));
    const catalog = catalogFor(mode);
    const r = await readyRegister({ seed: rng.int(1, 1e9), catalog });
    const skus = catalog.products.filter((p) => !p.openPrice).map((p) => p.sku);
    const problems: string[] = [];
    let refundsRefused = 0;
    let cashRoundings = 0;

    for (let n = 0; n < SALES && problems.length < 5; n++) {
      const lines = rng.int(1, 6);
      for (let i = 0; i < lines; i++) await r.call('sale.add', { sku: rng.pick(skus), qty: rng.int(1, 4) });
      if (rng.chance(0.3)) await r.call('sale.discount', { kind: 'percent', value: rng.int(0, 10) * 100 });
      if (rng.chance(0.2))
        await r.call('sale.discount', {
          lineId: '1',
          kind: 'amount',
          value: rng.int(0, 50),
          approval: MANAGER,
        });
      // Tenders: maybe a card part, then cash or card for the rest.
      let due = (r.register.status().sale as { dueMinor: number }).dueMinor;
      if (due > 1 && rng.chance(0.3)) {
        await r.call('sale.tender', { kind: 'card', amountMinor: rng.int(1, due - 1) });
        due = (r.register.status().sale as { dueMinor: number }).dueMinor;
      }
      const done = (
        rng.chance(0.5)
          ? await r.call('sale.tender', { kind: 'cash', amountMinor: due + rng.int(0, 2000) })
          : await r.call('sale.tender', { kind: 'card' })
      ) as { completed: boolean; receiptNo: number };
      if (!done.completed) {
        problems.push(`sale ${n}: not completed by a tender covering what is due`);
        continue;
      }
      const sale = r.register.state.receipts[done.receiptNo] as CompletedSale;
      const paid = sale.tenders.reduce((a, x) => a + x.amountMinor, 0);
      if (paid - sale.changeMinor !== sale.totals.totalMinor + sale.roundingMinor) {
        problems.push(
          `sale ${n}: tenders ${paid} − change ${sale.changeMinor} ≠ total ${sale.totals.totalMinor} + rounding ${sale.roundingMinor}`,
        );
      }
      const cash = sale.tenders.some((x) => x.kind === 'cash');
      if (sale.roundingMinor !== 0 && !cash) problems.push(`sale ${n}: rounding without cash`);
      if (Math.abs(sale.roundingMinor) > 2)
        problems.push(`sale ${n}: rounding ${sale.roundingMinor} beyond half the increment`);
      if (sale.roundingMinor !== 0) cashRoundings++;
      if (sale.changeMinor > 0 && !cash) problems.push(`sale ${n}: change without cash`);

      // Refund attempts on a random earlier receipt: some fit, some ask for too much.
      if (rng.chance(0.25)) {
        const receipts = Object.values(r.register.state.receipts).filter(
          (x): x is CompletedSale => 'saleId' in x,
        );
        const target = rng.pick(receipts);
        const line = rng.pick(target.lines);
        const qty = rng.int(1, line.qty + 1);
        try {
          await r.call('sale.refund', {
            receiptNo: target.receiptNo,
            lines: [{ lineId: line.lineId, qty }],
            tender: rng.pick(['cash', 'card']),
            approval: MANAGER,
          });
        } catch (err) {
          if (!isRegisterError(err, 'REFUND_EXCEEDS_SALE') && !isRegisterError(err, 'NOT_ENOUGH_CASH'))
            throw err;
          refundsRefused++;
        }
      }
    }

    // Refunds never exceed what was sold, per line and per receipt.
    for (const doc of Object.values(r.register.state.receipts)) {
      if (!('saleId' in doc)) continue;
      for (const line of doc.lines) {
        if ((doc.refunded[line.lineId] ?? 0) > line.qty)
          problems.push(`receipt ${doc.receiptNo} line ${line.lineId} over-refunded`);
      }
      const refunded = Object.values(r.register.state.receipts)
        .filter((x) => 'refundId' in x && x.originalReceiptNo === doc.receiptNo)
        .reduce((a, x) => a + (x as { amountMinor: number }).amountMinor, 0);
      if (refunded > doc.totals.totalMinor)
        problems.push(`receipt ${doc.receiptNo}: refunded ${refunded} > ${doc.totals.totalMinor}`);
    }
    // The drawer adds up: float + cash in − change − cash refunds (no payouts here).
    const shift = r.register.state.shift!;
    const t2 = shift.totals;
    t.equal(
      expectedCash(shift),
      shift.floatMinor + t2.byTender.cash - t2.changeMinor - t2.refunds.byTender.cash,
    );
    t.same(problems, [], `no broken invariant (replay with TILL_SEED=${SEED})`);
    t.ok(
      refundsRefused > 0 && cashRoundings > 0,
      `exercised over-refunds (${refundsRefused}) and cash rounding (${cashRoundings})`,
    );
    t.equal(r.register.state.receiptNo, r.register.state.receiptOrder.length, 'receipt numbers are gapless');
  });
}
