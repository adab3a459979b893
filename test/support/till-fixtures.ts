// A register in memory for till tests: the demo catalog and cashiers, a journal on the fault-injecting
// file system, a manual clock, seeded ids and a simulated card terminal.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { manualClock } from '../../appliance/clock.js';
import { Journal } from '../../appliance/journal/journal.js';
import { CatalogSchema, type Catalog } from '../../appliance/till/catalog.js';
import { CashierListSchema, type CashierList } from '../../appliance/till/cashiers.js';
import { SimulatedCardTerminal } from '../../appliance/till/card.js';
import { Register, type Devices } from '../../appliance/till/register.js';
import type { RegisterError } from '../../appliance/errors.js';
import type { TillLimits } from '../../appliance/till/commands.js';
import { registerReducer, type RegisterState } from '../../appliance/till/state.js';
import { FaultFs } from './fault-fs.js';
import { Rng } from './rng.js';

const demo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/demo');
export const DEMO_CATALOG_FILE = path.join(demo, 'catalog.json');
export const DEMO_CASHIERS_FILE = path.join(demo, 'cashiers.json');
export const demoCatalog: Catalog = CatalogSchema.parse(JSON.parse(readFileSync(DEMO_CATALOG_FILE, 'utf8')));
export const demoCashiers: CashierList = CashierListSchema.parse(
  JSON.parse(readFileSync(DEMO_CASHIERS_FILE, 'utf8')),
);

/** Barcodes of the demo catalog by SKU. */
export const code = (sku: string): string => demoCatalog.products.find((p) => p.sku === sku)!.barcodes[0]!;
export const PINS = { ana: '1111', ben: '2222', mia: '9999' } as const;
export const MANAGER = { managerId: 'mia', pin: PINS.mia };

export function makeRegister(
  opts: {
    seed?: number;
    io?: FaultFs;
    catalog?: Catalog;
    limits?: Partial<TillLimits>;
    devices?: Omit<Devices, 'terminal'>;
    onFatal?: (err: RegisterError) => void;
  } = {},
) {
  const rng = new Rng(opts.seed ?? 1);
  const io = opts.io ?? new FaultFs(rng);
  const clock = manualClock();
  const terminal = new SimulatedCardTerminal();
  const open = () =>
    Journal.open<RegisterState>({
      dir: '/state/journal',
      deviceId: 'till-1',
      epoch: 1,
      fs: io,
      clock,
      reducer: registerReducer,
      // The fault-injecting file system copies whole files on each write: keep segments small.
      segmentMaxBytes: 64 * 1024,
    });
  const journal = open();
  const register = new Register({
    journal,
    catalog: () => opts.catalog ?? demoCatalog,
    cashiers: () => demoCashiers,
    devices: { terminal, ...opts.devices },
    clock,
    limits: opts.limits,
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    random: () => new Uint8Array(rng.bytes(16)),
  });
  const call = (method: string, params: unknown = {}) => register.execute(method, params);
  return { register, journal, io, clock, terminal, call, open };
}

/** Logged in as ana with a shift open. */
export async function readyRegister(opts: Parameters<typeof makeRegister>[0] = {}) {
  const r = makeRegister(opts);
  await r.call('cashier.login', { cashierId: 'ana', pin: PINS.ana });
  await r.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
  return r;
}
