// `npm start` today: the journal at the heart of the register, shown end to end on this machine.
// It rings up a few records into a journal under ./demo-state, cuts the power in the middle of a
// write (by leaving half a record on disk), recovers, and verifies the chain. The whole demo store
// (ledger, broker, simulated devices, till UI) takes this command over as those parts land.
import * as path from 'node:path';
import { appendFileSync, mkdirSync } from 'node:fs';
import { Journal } from '../appliance/journal/journal.js';
import { verifyJournal } from '../appliance/journal/verify.js';
import { nodeFs } from '../appliance/journal/fs.js';
import { parseSegmentName } from '../appliance/journal/format.js';
import { shortHash } from '../cloud-bridge/protocol/record.js';

const stateDir = path.resolve(process.env.REGISTER_STATE_DIR ?? 'demo-state');
const dir = path.join(stateDir, 'journal');
mkdirSync(stateDir, { recursive: true });

const say = (line: string) => process.stdout.write(line + '\n');
let journal = Journal.open({ dir, deviceId: 'demo-till-1', epoch: 1 });
say(`journal ${dir}: ${journal.recovery.created ? 'created' : `recovered at seq ${journal.lastSeq}`}`);

const sales = [
  { type: 'cashier.clockedIn', cashierId: 'c-ana' },
  {
    type: 'sale.completed',
    saleId: `demo-${journal.lastSeq + 1}`,
    totalMinor: 1249,
    currency: 'EUR',
    tender: 'cash',
  },
  {
    type: 'sale.completed',
    saleId: `demo-${journal.lastSeq + 2}`,
    totalMinor: 399,
    currency: 'EUR',
    tender: 'card',
  },
];
for (const event of sales) {
  const r = journal.append([event]);
  say(`  seq ${r.seq}  ${event.type.padEnd(18)} durable  hash ${shortHash(r.hash)}`);
}
journal.close();

// A power cut mid-write leaves a partial frame at the end of the last segment.
const last = nodeFs
  .list(dir)
  .filter((n) => parseSegmentName(n) !== undefined)
  .sort()
  .pop()!;
appendFileSync(path.join(dir, last), Buffer.from([0x80, 0x01, 0, 0, 0xde, 0xad]));
say('power cut: half a record left on flash');

journal = Journal.open({ dir, deviceId: 'demo-till-1' });
say(`recovered: seq ${journal.lastSeq}, cut ${journal.recovery.truncatedBytes} torn bytes`);
journal.close();

const report = verifyJournal(nodeFs, dir);
say(
  `verify: ${report.ok ? 'ok' : 'PROBLEM'} — ${report.records} records, chain ends ${shortHash(report.lastHash ?? '')}`,
);
say(`inspect it: npm run registerctl -- journal dump ${path.relative(process.cwd(), dir)}`);
process.exitCode = report.ok ? 0 : 1;
