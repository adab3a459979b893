// Receipt documents for printer and rendering tests: a small hand-made one, and a realistic pair from a
// real register.
import type { ReceiptDoc } from '../../appliance/devices/printer/receipt-render.js';
import { MANAGER, code, readyRegister } from './till-fixtures.js';

type SaleDoc = Extract<ReceiptDoc, { kind: 'sale' }>;
type RefundDoc = Extract<ReceiptDoc, { kind: 'refund' }>;

/** A small sale receipt; its number shows in the printed text as "No. N". */
export function sale(receiptNo: number): ReceiptDoc {
  return {
    kind: 'sale',
    offline: false,
    storeId: 'demo-store',
    storeName: 'Corner Shop (demo)',
    receiptNo,
    time: Date.UTC(2026, 0, 1),
    clock: 'trusted',
    currency: 'EUR',
    chain: '877f18cf063b',
    seq: receiptNo,
    saleId: `sale${receiptNo}`,
    cashier: 'Ana',
    lines: [
      {
        name: 'Espresso beans 250 g',
        sku: 'COF-250',
        qty: 1,
        unitMinor: 649,
        amountMinor: 649,
        discountMinor: 0,
        taxClass: 'reduced',
      },
    ],
    subtotalMinor: 649,
    discountMinor: 0,
    taxes: [{ baseMinor: 607, name: 'VAT 7%', rateBp: 700, taxClass: 'reduced', taxMinor: 42 }],
    taxMinor: 42,
    totalMinor: 649,
    roundingMinor: 0,
    tenders: [{ kind: 'cash', amountMinor: 1000 }],
    changeMinor: 351,
    refunded: {},
  } as ReceiptDoc;
}

/** Espresso with a line discount, two waters, part by card, the rest in cash with change; then a refund. */
export async function receipts(): Promise<{ sale: SaleDoc; refund: RefundDoc }> {
  const r = await readyRegister();
  await r.call('sale.scan', { code: code('COF-250') });
  await r.call('sale.scan', { code: code('WAT-150') });
  await r.call('sale.setQty', { lineId: '2', qty: 2 });
  await r.call('sale.discount', { lineId: '1', kind: 'percent', value: 1000 });
  await r.call('sale.tender', { kind: 'card', amountMinor: 300 });
  const done = (await r.call('sale.tender', { kind: 'cash', amountMinor: 1000 })) as { receipt: SaleDoc };
  const refund = (await r.call('sale.refund', { receiptNo: 1, tender: 'cash', approval: MANAGER })) as {
    receipt: RefundDoc;
  };
  return { sale: done.receipt, refund: refund.receipt };
}
