// The serial scanner driver through a real pseudo-terminal pair from socat: the test plays the scanner
// on the peer end, writing codes as scanners send them, and pulls and replugs the "cable" by stopping
// and restarting socat. Real timers, with a short backoff so a replug is noticed in tens of ms.
import t, { type Test } from 'tap';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SerialPort } from 'serialport';
import { openSerialPort, type OpenPort } from '../../appliance/devices/serial-link.js';
import { SerialScanner } from '../../appliance/devices/scanner/serial-scanner.js';
import type { Scanner, ScanRejected } from '../../appliance/devices/scanner/scanner.js';
import { ptyPair, type PtyPair } from '../../scripts/sim/pty.js';

const EVENT_TIMEOUT_MS = 3000; // a scan crosses the pty in well under 10 ms; this only bounds a hang
const BACKOFF = { initialMs: 20, maxMs: 100 }; // ms: a replug is found within ~100 ms

type Seen =
  | { event: 'scan'; code: string }
  | ({ event: 'rejected' } & ScanRejected)
  | { event: 'up' }
  | { event: 'down'; reason: string };

/** Every event the scanner emits, in order; next() waits (bounded) for the next one. */
class Recorder {
  readonly #queue: Seen[] = [];
  readonly #arrived = new EventEmitter();

  constructor(scanner: Scanner) {
    scanner.on('scan', (code) => this.#push({ event: 'scan', code }));
    scanner.on('rejected', (r) => this.#push({ event: 'rejected', ...r }));
    scanner.on('up', () => this.#push({ event: 'up' }));
    scanner.on('down', (reason) => this.#push({ event: 'down', reason }));
  }

  #push(seen: Seen): void {
    this.#queue.push(seen);
    this.#arrived.emit('event');
  }

  async next(): Promise<Seen> {
    if (this.#queue.length === 0) {
      await once(this.#arrived, 'event', { signal: AbortSignal.timeout(EVENT_TIMEOUT_MS) });
    }
    return this.#queue.shift()!;
  }

  get pending(): readonly Seen[] {
    return this.#queue;
  }
}

/** The text the driver's port has read so far, to know a write has arrived before pulling the cable. */
class PortTap {
  text = '';
  readonly #grew = new EventEmitter();

  readonly open: OpenPort = (p, baudRate) => {
    const port = openSerialPort(p, baudRate);
    port.on('data', (chunk: Buffer) => {
      this.text += chunk.toString('latin1');
      this.#grew.emit('data');
    });
    return port;
  };

  async received(text: string): Promise<void> {
    const signal = AbortSignal.timeout(EVENT_TIMEOUT_MS);
    try {
      while (!this.text.includes(text)) await once(this.#grew, 'data', { signal });
    } catch (err) {
      throw new Error(`the port read ${JSON.stringify(this.text)}, not ${JSON.stringify(text)}`, {
        cause: err,
      });
    }
  }
}

/** The scanner's end of the cable. */
class FakeSerialScannerDevice {
  #port: SerialPort | null = null;

  async plugIn(peer: string): Promise<void> {
    const port = new SerialPort({ path: peer, baudRate: 9600, autoOpen: false });
    port.on('error', () => {}); // the peer dies with the pair on unplug; that is expected here
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    this.#port = port;
  }

  async send(text: string | Uint8Array): Promise<void> {
    const port = this.#port!;
    await new Promise<void>((resolve, reject) =>
      port.write(text, (err) => (err ? reject(err) : port.drain((e) => (e ? reject(e) : resolve())))),
    );
  }

  async unplug(): Promise<void> {
    const port = this.#port;
    this.#port = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }
}

/**
 * Pulls the cable. ptyPair's unplug SIGKILLs socat, which leaves both links behind pointing at
 * /dev/pts/N; once another pty on the machine gets that number, a retrying driver would open it and
 * "come back" on a stranger's terminal. udev removes /dev/pos/scanner on a real unplug, so the links
 * go here too, before socat dies and its numbers are free to be taken.
 */
async function pullCable(pair: PtyPair): Promise<void> {
  rmSync(pair.device, { force: true });
  rmSync(pair.peer, { force: true });
  await pair.unplug();
}

interface Rig {
  pair: PtyPair;
  scanner: SerialScanner;
  seen: Recorder;
  tap: PortTap;
  device: FakeSerialScannerDevice;
}

async function rig(t: Test, { plugIn = true } = {}): Promise<Rig> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sc-'));
  const pair = await ptyPair(dir, 'scanner');
  const tap = new PortTap();
  const scanner = new SerialScanner({ path: pair.device, open: tap.open, backoff: BACKOFF });
  const seen = new Recorder(scanner);
  const device = new FakeSerialScannerDevice();
  t.teardown(async () => {
    await scanner.stop();
    await device.unplug();
    await pullCable(pair);
    await pair.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await scanner.start();
  t.same(await seen.next(), { event: 'up' }, 'the scanner connects');
  t.equal(scanner.health().state, 'ok');
  if (plugIn) await device.plugIn(pair.peer);
  return { pair, scanner, seen, tap, device };
}

t.test('codes with CR, LF and CRLF suffixes, split across writes; empty lines dropped', async (t) => {
  const { seen, tap, device } = await rig(t);
  await device.send('4006381333931\r');
  t.same(await seen.next(), { event: 'scan', code: '4006381333931' }, 'CR suffix');
  await device.send('96385074\n');
  t.same(await seen.next(), { event: 'scan', code: '96385074' }, 'LF suffix');
  await device.send('5901234123457\r\n');
  t.same(await seen.next(), { event: 'scan', code: '5901234123457' }, 'CRLF suffix: one code, no empty one');

  // Each piece is seen by the driver's port before the next is written, so they really arrive apart.
  await device.send('40063');
  await tap.received('40063');
  await device.send('8133');
  await tap.received('8133');
  await device.send('3931\r');
  await tap.received('3931\r');
  await device.send('\n');
  t.same(await seen.next(), { event: 'scan', code: '4006381333931' }, 'a code split across writes');

  await device.send('\r\n\r\n\n\r');
  await device.send('ABC-123\r\n');
  t.same(await seen.next(), { event: 'scan', code: 'ABC-123' }, 'empty lines gave nothing');
  t.same(seen.pending, [], 'no events left over');
});

t.test('over-long and non-printable lines are rejected; the next code still scans', async (t) => {
  const { seen, device } = await rig(t);
  await device.send('9'.repeat(1000) + '\r\n');
  const long = await seen.next();
  t.match(long, { event: 'rejected', reason: 'too-long', detail: /longer than 64/ }, 'over-long');
  t.equal((long as ScanRejected).partial.length, 64, 'only the bounded prefix was kept');
  await device.send('4006381333931\r\n');
  t.same(await seen.next(), { event: 'scan', code: '4006381333931' }, 'the next code scans');

  await device.send('12\x1b[A34\r\n');
  t.match(await seen.next(), {
    event: 'rejected',
    reason: 'not-printable',
    partial: '12',
    detail: /U\+001B/,
  });
  await device.send(Uint8Array.of(0x34, 0x30, 0xff, 0x36, 0x0d, 0x0a));
  t.match(
    await seen.next(),
    { event: 'rejected', reason: 'not-printable', partial: '40' },
    'an invalid byte',
  );
  await device.send('96385074\r');
  t.same(await seen.next(), { event: 'scan', code: '96385074' }, 'and the next code scans');
});

t.test('unplug reports down; replug comes back by itself without a half code glued on', async (t) => {
  const { pair, scanner, seen, tap, device } = await rig(t);
  await device.send('4006381333931\r\n');
  t.same(await seen.next(), { event: 'scan', code: '4006381333931' });

  // Half a code reaches the register, then the cable is pulled.
  await device.send('99999');
  await tap.received('99999');
  await pullCable(pair);
  await device.unplug();
  t.match(await seen.next(), { event: 'down', reason: /.+/ }, 'the loss is reported');
  t.match(scanner.health(), { state: 'down', detail: /not connected/ });

  await pair.replug();
  t.same(await seen.next(), { event: 'up' }, 'back by itself');
  t.equal(scanner.health().state, 'ok');
  await device.plugIn(pair.peer);
  await device.send('96385074\r\n');
  t.same(await seen.next(), { event: 'scan', code: '96385074' }, 'the half code from before was dropped');
  t.same(seen.pending, [], 'one down, one up, nothing else');
});

// A scanner that has sent nothing yet (just connected, or idle) when the cable is pulled: the driver's
// read is parked waiting for bytes, and a hung-up tty answers it with end-of-file (a 0-byte read).
t.test('a scanner unplugged before it sent anything is reported down, and comes back', async (t) => {
  const { pair, scanner, seen, device } = await rig(t, { plugIn: false });
  await pullCable(pair);
  t.match(await seen.next(), { event: 'down', reason: /.+/ }, 'the loss is reported');
  t.equal(scanner.health().state, 'down');
  await pair.replug();
  t.same(await seen.next(), { event: 'up' }, 'back by itself');
  await device.plugIn(pair.peer);
  await device.send('96385074\r\n');
  t.same(await seen.next(), { event: 'scan', code: '96385074' });
});

/** Opens the driver's end as a second program would; serialport takes an exclusive lock by default. */
async function canOpen(devicePath: string): Promise<boolean> {
  const port = new SerialPort({ path: devicePath, baudRate: 9600, autoOpen: false });
  const err = await new Promise<Error | null>((resolve) => port.open(resolve));
  if (err === null) await new Promise<void>((resolve) => port.close(() => resolve()));
  return err === null;
}

t.test('stop lets go of the port', async (t) => {
  const { pair, scanner, seen } = await rig(t);
  t.equal(await canOpen(pair.device), false, 'while started, the scanner holds the port');
  await scanner.stop();
  t.match(scanner.health(), { state: 'down', detail: /stopped/ });
  t.equal(await canOpen(pair.device), true, 'after stop, the port is free');
  t.same(seen.pending, [], 'stopping is not reported as a loss');
});
