// The demo store's books on first start: stock for every catalog SKU (once: a SKU that has a stock row
// keeps what it has, so restarts add nothing), and the demo catalog and cashier list published through
// the ledger's store endpoints (docs/ledger-api.md), so the ledger serves what the register was seeded
// with. A document the ledger already holds at that version is left alone.
import type { Logger } from '../../appliance/log.js';
import type { RunningLedger } from '../../ledger/main.js';
import { getStock } from '../../ledger/queries.js';
import { receiveStock } from '../../ledger/stock.js';

/** Units of each SKU the demo store starts with. */
export const DEMO_STOCK_PER_SKU = 50;
/** How long one call to the ledger's HTTP API may take, ms (it answers in milliseconds). */
const HTTP_TIMEOUT_MS = 10_000;

export interface SeedResult {
  /** SKUs given their first stock now. */
  stocked: string[];
  /** Documents stored now (`catalog`, `cashiers`); already there at this version: not listed. */
  published: string[];
}

export async function seedLedger(
  ledger: RunningLedger,
  docs: {
    storeId: string;
    catalog: { version: number; products: { sku: string }[] };
    cashiers: { version: number };
  },
  log: Logger,
): Promise<SeedResult> {
  const stocked: string[] = [];
  for (const { sku } of docs.catalog.products) {
    if (await getStock(ledger.ldb, sku)) continue;
    await receiveStock(ledger.ldb, sku, DEMO_STOCK_PER_SKU, 'demo-opening-stock');
    stocked.push(sku);
  }
  const published: string[] = [];
  for (const kind of ['catalog', 'cashiers'] as const) {
    const url = `${ledger.httpUrl}/api/stores/${encodeURIComponent(docs.storeId)}/${kind}`;
    const res = await fetch(url, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(docs[kind]),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const body = (await res.json().catch(() => null)) as {
      error?: { code?: string; message?: string };
    } | null;
    if (res.ok) published.push(kind);
    else if (body?.error?.code !== 'VERSION_NOT_NEWER')
      // Not fatal: the register sells from its seed; the ledger just has no copy to serve.
      log.warn({ kind, status: res.status, error: body?.error }, 'demo document not stored in the ledger');
  }
  log.info({ stocked: stocked.length, published }, 'demo books seeded');
  return { stocked, published };
}
