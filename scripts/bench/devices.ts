// Device figures through the real transports, one JSON line: a card payment's round trip to the
// terminal simulator over a socat pty, a receipt's print job (status poll + job) to the printer
// simulator over TCP 9100 and over a pty, and how fast a pulled serial cable is noticed and a
// replugged one comes back with the default backoff.
//   npm run bench:devices [-- --n 200]
import { mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { EcrTerminal } from '../../appliance/devices/terminal/ecr-terminal.js';
import { EscPosPrinter } from '../../appliance/devices/printer/printer.js';
import {
  SerialTransport,
  TcpTransport,
  type PrinterTransport,
} from '../../appliance/devices/printer/transport.js';
import { SerialLink } from '../../appliance/devices/serial-link.js';
import { TerminalSimulator } from '../sim/terminal-sim.js';
import { PrinterSimulator } from '../sim/printer-sim.js';
import { ptyPair } from '../sim/pty.js';
import { sale } from '../../test/support/receipt-fixtures.js';
import { percentileUs, round } from '../lib/stats.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 200);
const dir = mkdtempSync(path.join(tmpdir(), 'benchdev-'));
const summary = (ns: bigint[]) => ({
  p50_ms: round(percentileUs(ns, 0.5) / 1000, 2),
  p99_ms: round(percentileUs(ns, 0.99) / 1000, 2),
});

async function cardRoundTrip() {
  const pair = await ptyPair(dir, 'term');
  const sim = new TerminalSimulator({ path: pair.peer });
  await sim.start();
  const terminal = new EcrTerminal({ path: pair.device });
  await terminal.start();
  const ns: bigint[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    const r = await terminal.pay({
      txn: `bench-${i}`,
      amountMinor: 649,
      currency: 'EUR',
      offlineAllowed: true,
    });
    ns.push(process.hrtime.bigint() - t0);
    if (r.outcome !== 'approved') throw new Error(`payment ${i} ${r.outcome}`);
  }
  await terminal.stop();
  await sim.stop();
  await pair.close();
  return summary(ns);
}

async function printJobs(kind: 'tcp' | 'pty') {
  const sim = new PrinterSimulator({ columns: 42 });
  let transport: PrinterTransport;
  let pair: Awaited<ReturnType<typeof ptyPair>> | null = null;
  if (kind === 'tcp') transport = new TcpTransport({ host: '127.0.0.1', port: await sim.listenTcp(0) });
  else {
    pair = await ptyPair(dir, 'printer');
    await sim.openPty(pair.peer);
    transport = new SerialTransport({ path: pair.device, baudRate: 115_200 });
  }
  const printer = new EscPosPrinter({
    transport,
    queueFile: path.join(dir, `queue-${kind}.json`),
    render: { columns: 42 },
  });
  await printer.start();
  await once(printer, 'change'); // connected
  const n = Math.min(N, 100);
  const ns: bigint[] = [];
  for (let i = 1; i <= n; i++) {
    const t0 = process.hrtime.bigint();
    const r = await printer.print(sale(i));
    ns.push(process.hrtime.bigint() - t0);
    if (!r.printed) throw new Error(`receipt ${i} not printed`);
  }
  // The job has left when print() resolves; the simulator counts it once it has decoded the cut.
  for (let waited = 0; sim.receipts.length < n && waited < 2000; waited += 10)
    await new Promise((r) => setTimeout(r, 10));
  await printer.stop();
  await sim.stop();
  await pair?.close();
  return { ...summary(ns), receipts: sim.receipts.length };
}

async function unplugReplug() {
  const pair = await ptyPair(dir, 'scan');
  const link = new SerialLink({ path: pair.device, name: 'scanner' });
  await link.start();
  const t0 = process.hrtime.bigint();
  const down = once(link, 'down');
  await pair.unplug();
  await down;
  const noticed = process.hrtime.bigint() - t0;
  const t1 = process.hrtime.bigint();
  const up = once(link, 'up');
  await pair.replug();
  await up;
  const back = process.hrtime.bigint() - t1;
  await link.stop();
  await pair.close();
  return { unplug_noticed_ms: round(Number(noticed) / 1e6, 1), replug_back_ms: round(Number(back) / 1e6, 1) };
}

try {
  const card = await cardRoundTrip();
  const printTcp = await printJobs('tcp');
  const printPty = await printJobs('pty');
  const serial = await unplugReplug();
  console.log(
    JSON.stringify({ n: N, card_pay_pty: card, print_tcp: printTcp, print_pty_115200: printPty, serial }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
