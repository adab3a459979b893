// A pseudo-terminal pair from socat: two linked device files, one for the driver under test, one for
// the simulator playing the device. Killing the pair is pulling the cable; starting it again on the
// same names is plugging it back in.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import * as path from 'node:path';

export interface PtyPair {
  /** The end the register's driver opens (what /dev/pos/terminal would be). */
  device: string;
  /** The end the simulator opens. */
  peer: string;
  /** Pull the cable: both ends vanish. */
  unplug(): Promise<void>;
  /** Plug it back in on the same names. */
  replug(): Promise<void>;
  close(): Promise<void>;
}

/** Whether socat is installed (CI installs it; the demo falls back to in-process simulators without). */
export function hasSocat(): boolean {
  return ['/usr/bin/socat', '/usr/local/bin/socat', '/bin/socat'].some((p) => existsSync(p));
}

const START_TIMEOUT_MS = 5000; // socat creates both links within a few ms; this bounds a broken install

/**
 * A SIGKILLed socat leaves its links behind, pointing at pty numbers the kernel hands out again: a
 * driver retrying could open another pair's pty. The links go with the pair.
 */
function removeLinks(device: string, peer: string): void {
  rmSync(device, { force: true });
  rmSync(peer, { force: true });
}

async function startSocat(device: string, peer: string): Promise<ChildProcess> {
  removeLinks(device, peer);
  const child = spawn('socat', [`pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${peer}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`socat exited (${code}): ${stderr.trim()}`))),
  );
  exited.catch(() => {});
  const deadline = Date.now() + START_TIMEOUT_MS;
  // socat prints nothing on success unless asked; the links appearing is the signal.
  while (!(existsSync(device) && existsSync(peer))) {
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`socat did not create ${device} and ${peer} within ${START_TIMEOUT_MS} ms`);
    }
    await Promise.race([new Promise((r) => setTimeout(r, 5)), exited]);
  }
  return child;
}

async function stopSocat(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/** A pair under `dir` named `<name>` (driver end) and `<name>.peer` (simulator end). */
export async function ptyPair(dir: string, name: string): Promise<PtyPair> {
  const device = path.join(dir, name);
  const peer = path.join(dir, `${name}.peer`);
  let child: ChildProcess | null = await startSocat(device, peer);
  return {
    device,
    peer,
    async unplug() {
      await stopSocat(child);
      child = null;
      removeLinks(device, peer);
    },
    async replug() {
      await stopSocat(child);
      child = await startSocat(device, peer);
    },
    async close() {
      await stopSocat(child);
      child = null;
      removeLinks(device, peer);
    },
  };
}
