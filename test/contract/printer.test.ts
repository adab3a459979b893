// One contract for the receipt printer, run against the simulator through each real transport: TCP
// (port 0, as a network printer on 9100), a serial port on a socat pty pair, and the USB printer-class
// file transport opened on the pty's device end as a stand-in character device. Real timers, short
// intervals; every wait is for an event, bounded.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EscPosPrinter, type PrinterHealth } from '../../appliance/devices/printer/printer.js';
import {
  SerialTransport,
  TcpTransport,
  UsbLpTransport,
  type PrinterTransport,
} from '../../appliance/devices/printer/transport.js';
import { PrinterSimulator, type SimKick } from '../../scripts/sim/printer-sim.js';
import { ptyPair } from '../../scripts/sim/pty.js';
import { sale } from '../support/receipt-fixtures.js';

/** Bounds a hang only: a receipt crosses any of these links in a few ms. */
const EVENT_TIMEOUT_MS = 5000;
/** ms: a replug is found within ~100 ms. */
const BACKOFF = { initialMs: 20, maxMs: 100 };
const DRIVER = {
  /**
   * ms: the simulator answers within a ms, but a round trip crosses socat and two ptys, and on a busy
   * 2-core machine 1 in 60 to 1 in 150 took over 300 ms (the slowest of 1200: 860 ms). A poll is four.
   */
  statusTimeoutMs: 1000,
  /** ms: a waiting receipt goes out within 50 ms of the printer being ready. */
  pollIntervalMs: 50,
  idlePollIntervalMs: 500,
  jobReplyTimeoutMs: 2000,
};

interface Rig {
  sim: PrinterSimulator;
  transport: PrinterTransport;
  /** More than the link buffers between the driver and a simulator that stopped reading. */
  floodBytes: number;
  /** Pull the cable (close the listener and its connections / kill socat). */
  unplug(): Promise<void>;
  replug(): Promise<void>;
  close(): Promise<void>;
}

interface RigOptions {
  writeTimeoutMs?: number;
}

async function tcpRig(o: RigOptions = {}): Promise<Rig> {
  const sim = new PrinterSimulator();
  const port = await sim.listenTcp(0);
  return {
    sim,
    transport: new TcpTransport({ host: '127.0.0.1', port, backoff: BACKOFF, connectTimeoutMs: 1000, ...o }),
    // Loopback socket buffers grow to a few MiB each way.
    floodBytes: 32 * 1024 * 1024,
    unplug: () => sim.closeTcp(),
    replug: async () => void (await sim.listenTcp(port)),
    close: () => sim.stop(),
  };
}

async function ptyRig(kind: 'serial' | 'usb', o: RigOptions = {}): Promise<Rig> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'x-'));
  const pair = await ptyPair(dir, 'lp');
  const sim = new PrinterSimulator();
  await sim.openPty(pair.peer); // reopens by itself after a replug
  const transport =
    kind === 'serial'
      ? new SerialTransport({ path: pair.device, backoff: BACKOFF, ...o })
      : new UsbLpTransport({ path: pair.device, backoff: BACKOFF, replyReadMs: 5, idleReadMs: 50, ...o });
  return {
    sim,
    transport,
    // The pty pair and socat hold ~31 KiB, ~94 KiB with the simulator's paused port behind them.
    // Ten times that: a serial write cannot be withdrawn, so all of it drains before the next write.
    floodBytes: 1024 * 1024,
    unplug: async () => {
      await pair.unplug();
      // socat, killed, leaves its links pointing at /dev/pts/N, which the next pty anyone opens may
      // get: the driver would then reconnect to a stranger's pty. A pulled cable leaves no device file.
      rmSync(pair.device, { force: true });
      rmSync(pair.peer, { force: true });
    },
    replug: () => pair.replug(),
    close: async () => {
      await sim.stop();
      await pair.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `until` holds for the printer's health (now or after a change); bounded. */
function health(
  printer: EscPosPrinter,
  until: (h: PrinterHealth) => boolean,
  what: string,
): Promise<PrinterHealth> {
  if (until(printer.health())) return Promise.resolve(printer.health());
  return new Promise((resolve, reject) => {
    const onChange = (h: PrinterHealth): void => {
      if (!until(h)) return;
      clearTimeout(timer);
      printer.off('change', onChange);
      resolve(h);
    };
    const timer = setTimeout(() => {
      printer.off('change', onChange);
      reject(new Error(`health never became ${what}; it is ${JSON.stringify(printer.health())}`));
    }, EVENT_TIMEOUT_MS);
    printer.on('change', onChange);
  });
}

function kicked(sim: PrinterSimulator): Promise<SimKick> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no drawer kick')), EVENT_TIMEOUT_MS);
    sim.once('kick', (k) => {
      clearTimeout(timer);
      resolve(k);
    });
  });
}

/** A rig and a started driver on it, both torn down after the test. */
async function started(
  t: Test,
  makeRig: (o?: RigOptions) => Promise<Rig>,
): Promise<{ rig: Rig; printer: EscPosPrinter }> {
  // The directory first: a rig left behind when this throws would leave its socat running.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'x-'));
  const rig = await makeRig();
  const printer = new EscPosPrinter({
    transport: rig.transport,
    queueFile: path.join(dir, 'reprint-queue.json'),
    render: { columns: 42 },
    ...DRIVER,
  });
  t.teardown(async () => {
    await printer.stop();
    await rig.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await printer.start();
  await health(printer, (h) => h.printer === 'ok', 'ok');
  return { rig, printer };
}

/** Resolves once a write goes through (the transport may be reconnecting); bounded. */
async function writesAgain(transport: PrinterTransport): Promise<void> {
  const deadline = Date.now() + EVENT_TIMEOUT_MS;
  for (;;) {
    try {
      return await transport.write(Uint8Array.of(0x10, 0x04, 1));
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Resolves once the printer answers a status request (the transport may be reconnecting); bounded. */
function answersAgain(transport: PrinterTransport): Promise<void> {
  return new Promise((resolve, reject) => {
    const ask = (): void => void transport.write(Uint8Array.of(0x10, 0x04, 1)).catch(() => {});
    const asking = setInterval(ask, 20);
    const onData = (): void => {
      end();
      resolve();
    };
    const timer = setTimeout(() => {
      end();
      reject(new Error(`no answer to a status request within ${EVENT_TIMEOUT_MS} ms`));
    }, EVENT_TIMEOUT_MS);
    const end = (): void => {
      clearInterval(asking);
      clearTimeout(timer);
      transport.off('data', onData);
    };
    transport.on('data', onData);
    ask();
  });
}

function contract(t: Test, makeRig: (o?: RigOptions) => Promise<Rig>): void {
  t.test(
    'a printer that stops reading: a write is bounded in time, one at a time, then it recovers',
    async (t) => {
      const rig = await makeRig({ writeTimeoutMs: 300 });
      t.teardown(async () => {
        await rig.transport.stop();
        await rig.close();
      });
      const up = new Promise<void>((resolve) => rig.transport.once('up', () => resolve()));
      await rig.transport.start();
      if (!rig.transport.isUp) await up;
      rig.sim.setState('offline');
      const flood = rig.transport.write(new Uint8Array(rig.floodBytes));
      await t.rejects(
        rig.transport.write(Uint8Array.of(0x10, 0x04, 1)),
        { code: 'DEVICE_BUSY' },
        'one write in flight',
      );
      await t.rejects(flood, { code: 'DEVICE_TIMEOUT' }, 'given up after writeTimeoutMs');
      rig.sim.setState('ok');
      await writesAgain(rig.transport);
      t.pass('writes go through again');
    },
  );

  t.test('offline and full when unplugged, back on, replugged: it answers again', async (t) => {
    // The printer's end next reads a line that already hung up, rather than waiting on it when it goes:
    // that read must count as the unplug too, or the old line is kept and the new one never served.
    const rig = await makeRig({ writeTimeoutMs: 300 });
    t.teardown(async () => {
      await rig.transport.stop();
      await rig.close();
    });
    const up = new Promise<void>((resolve) => rig.transport.once('up', () => resolve()));
    await rig.transport.start();
    if (!rig.transport.isUp) await up;
    rig.sim.setState('offline');
    await t.rejects(rig.transport.write(new Uint8Array(rig.floodBytes)), { code: 'DEVICE_TIMEOUT' });
    await rig.unplug();
    rig.sim.setState('ok');
    await rig.replug();
    await answersAgain(rig.transport);
    t.pass('answers after the replug');
  });

  t.test('prints a receipt; its text arrives', async (t) => {
    const { rig, printer } = await started(t, makeRig);
    t.same(await printer.print(sale(1)), { printed: true, queued: 0 });
    const r = await rig.sim.waitForReceipt('No. 1', EVENT_TIMEOUT_MS);
    t.ok(r.text.includes('Corner Shop (demo)'));
    t.ok(r.text.includes('Espresso beans 250 g'));
    t.match(r.text, /T O T A L +6 \. 4 9 {3}E U R/);
    t.equal(r.cut, 'partial');
  });

  t.test('drawer kick is recorded', async (t) => {
    const { rig, printer } = await started(t, makeRig);
    const kick = kicked(rig.sim);
    await printer.kickDrawer();
    t.match(await kick, { pin: 2, onMs: 50, offMs: 500, realtime: false });
  });

  t.test('paper out during a sale: queued, health says so; paper back: prints by itself', async (t) => {
    const { rig, printer } = await started(t, makeRig);
    rig.sim.setState('paper-out');
    t.same(await printer.print(sale(1)), { printed: false, queued: 1 });
    t.match(printer.health(), { state: 'fault', printer: 'paper-end', queued: 1 });
    t.same(rig.sim.receipts, []);
    rig.sim.setState('ok');
    const r = await rig.sim.waitForReceipt('No. 1', EVENT_TIMEOUT_MS);
    t.ok(r.text.includes('Espresso beans 250 g'));
    t.match(await health(printer, (h) => h.queued === 0, 'empty'), { state: 'ok', printer: 'ok' });
  });

  t.test('cover open: queued; closed: prints', async (t) => {
    const { rig, printer } = await started(t, makeRig);
    rig.sim.setState('cover-open');
    t.same(await printer.print(sale(1)), { printed: false, queued: 1 });
    t.match(printer.health(), { state: 'fault', printer: 'cover-open', detail: /cover open/ });
    rig.sim.setState('ok');
    await rig.sim.waitForReceipt('No. 1', EVENT_TIMEOUT_MS);
  });

  t.test('unplugged: health down, receipt queued; replugged: it prints', async (t) => {
    const { rig, printer } = await started(t, makeRig);
    await rig.unplug();
    await health(printer, (h) => h.state === 'down', 'down');
    t.same(await printer.print(sale(1)), { printed: false, queued: 1 });
    t.match(printer.health(), {
      state: 'down',
      printer: 'unknown',
      detail: /not connected.*1 receipt waiting/,
    });
    await rig.replug();
    await rig.sim.waitForReceipt('No. 1', EVENT_TIMEOUT_MS);
    t.match(await health(printer, (h) => h.queued === 0 && h.state === 'ok', 'ok and empty'), {
      printer: 'ok',
    });
  });

  t.test('status timeout (printer silent): not printed, queued; answering again: prints', async (t) => {
    const { rig, printer } = await started(t, makeRig);
    rig.sim.setState('offline');
    t.same(await printer.print(sale(1)), { printed: false, queued: 1 });
    t.match(printer.health(), { state: 'down', detail: /not answering/, queued: 1 });
    rig.sim.setState('ok');
    await rig.sim.waitForReceipt('No. 1', EVENT_TIMEOUT_MS);
  });
}

t.test('tcp 9100', async (t) => contract(t, tcpRig));

// socat is installed by CI (.ci/run): without it these fail rather than skip.
t.test('serial over a pty pair', async (t) => contract(t, (o) => ptyRig('serial', o)));
t.test('usb-lp file transport on a pty device', async (t) => contract(t, (o) => ptyRig('usb', o)));
