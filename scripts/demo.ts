// `npm start` today: a register on this machine with the demo catalog and cashiers, its journal under
// ./demo-state, a simulated card terminal, and the control socket to drive it with registerctl.
// The ledger, the broker, device simulators and the till UI join this command as they land.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../appliance/config.js';
import { jsonLogger } from '../appliance/log.js';
import { startRegisterd } from '../appliance/registerd.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const config = loadConfig(path.join(here, 'demo', 'registerd.json'));
const logLines: string[] = [];
const daemon = await startRegisterd(config, { log: jsonLogger('registerd', (l) => void logLines.push(l)) });
const say = (line: string) => process.stdout.write(line + '\n');
const socket = path.relative(process.cwd(), daemon.socketPath);
const recovered = daemon.journal.recovery;

say(
  `Register ${config.deviceId} is open (journal ${recovered.created ? 'created' : `recovered at seq ${recovered.lastSeq}`}).`,
);
say('Cashiers: ana PIN 1111, ben PIN 2222, manager mia PIN 9999.');
say('In another terminal, for example:');
const ctl = `npm run -s registerctl -- --socket ${socket}`;
say(`  ${ctl} cashier.login '{"cashierId":"ana","pin":"1111"}'`);
say(`  ${ctl} shift.open '{"floatCounts":{"1000":5,"200":10}}'`);
say(`  ${ctl} sale.scan '{"code":"4006381333900"}'`);
say(`  ${ctl} sale.tender '{"kind":"cash","amountMinor":1000}'`);
say(`  ${ctl} shift.report`);
say('Ctrl-C stops it; the journal keeps everything for the next start.');

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await daemon.stop();
  say('stopped.');
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
