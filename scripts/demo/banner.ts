// What `npm start` tells a newcomer before the till takes the screen: the store, where the ledger and
// the receipts are, who can log in, and the commands to play with the connection and the scanner.
import * as path from 'node:path';
import type { Catalog } from '../../appliance/till/catalog.js';
import type { CashierList } from '../../appliance/till/cashiers.js';
import { DEFAULT_STATE_DIR, shortPath as showPath, type DemoInfo } from './state.js';

/**
 * The demo cashiers' PINs. cashiers.json holds only their salted hashes (as the ledger publishes them);
 * the PINs are written down here and in scripts/demo/README.md, nowhere else.
 */
export const DEMO_PINS: Readonly<Record<string, string>> = { ana: '1111', ben: '2222', mia: '9999' };

/**
 * The fleet page's demo operator (an admin), made at the demo's start if missing. Like the PINs, the
 * password is written down here and in docs/fleet-page.md, nowhere else; a real ledger has no default.
 */
export const DEMO_OPERATOR = { name: 'demo', password: 'demo-fleet-2026' } as const;

export interface BannerFacts {
  info: DemoInfo;
  catalog: Catalog;
  cashiers: CashierList;
  deviceId: string;
  /** `created`, or the seq the journal was recovered at. */
  journal: { created: boolean; lastSeq: number };
  net: 'up' | 'down';
  /** Ports asked for that were busy and replaced by free ones. */
  busy: string[];
}

export function bannerLines(f: BannerFacts): string[] {
  const { info } = f;
  const stateFlag =
    path.resolve(DEFAULT_STATE_DIR) === info.stateDir ? '' : ` --state ${showPath(info.stateDir)}`;
  const store = f.catalog.storeName ?? f.catalog.storeId;
  const journal = f.journal.created ? 'a new journal' : `journal recovered at seq ${f.journal.lastSeq}`;
  const devices =
    info.devices.terminal === 'ecr'
      ? 'card terminal, printer and scanner simulators on pseudo-terminals (socat)'
      : 'in-process card terminal (never offline), printer simulator over TCP, no scanner (without socat)';
  const cashiers = f.cashiers.cashiers
    .map((c) => `${c.id} ${DEMO_PINS[c.id] ?? '(PIN unknown)'}${c.role === 'manager' ? ' (manager)' : ''}`)
    .join(', ');
  const examples = f.catalog.products.filter((p) => !p.openPrice && p.barcodes.length).slice(0, 4);
  const lines = [
    `${store}: register ${f.deviceId} is open (${journal}).`,
    `  ledger     ${info.ledgerHttp}   e.g. curl ${info.ledgerHttp}/api/sales`,
    `  fleet page ${info.ledgerHttp}/fleet   operator ${DEMO_OPERATOR.name}, password ${DEMO_OPERATOR.password}`,
    `  receipts   ${showPath(info.receiptsFile)}`,
    `  log        ${showPath(info.logFile)}`,
    `  devices    ${devices}`,
    `  internet   ${f.net}${f.net === 'down' ? `   (still cut from last time: npm run net -- up${stateFlag})` : ''}`,
  ];
  if (f.busy.length) lines.push(`  note       ${f.busy.join('; ')}`);
  lines.push(
    `Cashiers and PINs: ${cashiers}.`,
    'In another terminal:',
    ...columns([
      [`npm run net -- down|up|status${stateFlag}`, "cut the shop's internet, restore it, see the queue"],
      [
        `npm run scan -- CODE${stateFlag}`,
        `scan a barcode${info.scannerPeer ? ' with the serial scanner' : ''}`,
      ],
    ]),
    `  npm run -s registerctl -- --socket ${showPath(info.controlSocket)} METHOD [JSON]`,
    'Barcodes:',
    ...columns(examples.map((p) => [p.barcodes[0]!, p.name])),
    'Walk-through: docs/demo.md. Ctrl-C (or quitting the till) stops the store.',
  );
  return lines;
}

/** Two columns, the first padded to its widest entry. */
function columns(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `  ${a.padEnd(width)}   ${b}`);
}
