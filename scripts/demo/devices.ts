// The demo store's countertop: simulators for the card terminal and the receipt printer, and a serial
// scanner line, on real transports when socat is installed (pseudo-terminal pairs under the state
// directory, as in the device tests), in-process otherwise.
//
//   with socat      terminal: ECR on a pty, the simulator on its peer following the net file (offline
//                   with the link: offline approvals); printer: serial on a pty; scanner: serial on a
//                   pty whose peer `npm run scan` writes codes to
//   without socat   terminal: registerd's in-process one (approves everything, never offline);
//                   printer: TCP to an in-process simulator on 127.0.0.1; no scanner (scans go through
//                   the control socket's sale.scan)
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../appliance/log.js';
import { hasSocat, ptyPair, type PtyPair } from '../sim/pty.js';
import { TerminalSimulator, followConnectionFile } from '../sim/terminal-sim.js';
import { PrinterSimulator } from '../sim/printer-sim.js';

/** The pty pairs' names under the state directory (`<name>` for registerd, `<name>.peer` for the simulator). */
const PTY_NAMES = ['terminal', 'printer', 'scanner'] as const;

/** A card payment at the demo's terminal: the customer is told what to do, as at a real one. */
const TERMINAL_DELAYS = { ackMs: 0, statusMs: 300, resultMs: 300, safMs: 1000 };

export interface DemoDevices {
  /** registerd's `devices` section. */
  config: {
    terminal: { kind: 'ecr'; path: string } | { kind: 'simulated' };
    printer: { kind: 'serial'; path: string } | { kind: 'tcp'; host: string; port: number };
    scanners: { kind: 'serial'; path: string }[];
  };
  kinds: { terminal: 'ecr' | 'simulated'; printer: 'serial' | 'tcp'; scanner: 'serial' | 'none' };
  /** Where `npm run scan` writes codes, or null. */
  scannerPeer: string | null;
  /** Stops the simulators, then the pty pairs. */
  stop(): Promise<void>;
  /** Last resort on the way out: the socat processes are killed at once (synchronously). */
  kill(): void;
}

export interface DemoDevicesOptions {
  stateDir: string;
  netFile: string;
  receiptsFile: string;
  log: (component: string) => Logger;
  /** Use pty pairs (default: whether socat is installed). */
  socat?: boolean;
}

export async function startDemoDevices(opts: DemoDevicesOptions): Promise<DemoDevices> {
  const printer = new PrinterSimulator({ columns: 42, out: opts.receiptsFile, log: opts.log('printer-sim') });
  const useSocat = opts.socat ?? hasSocat();
  if (!useSocat) {
    const port = await printer.listenTcp(0, '127.0.0.1');
    return {
      config: {
        terminal: { kind: 'simulated' },
        printer: { kind: 'tcp', host: '127.0.0.1', port },
        scanners: [],
      },
      kinds: { terminal: 'simulated', printer: 'tcp', scanner: 'none' },
      scannerPeer: null,
      stop: () => printer.stop(),
      kill: () => {},
    };
  }

  reapOrphanedSocat(opts.stateDir, opts.log('demo'));
  const pairs: PtyPair[] = [];
  const kill = () => {
    for (const p of pairs) void p.close(); // close() kills its socat before its first await
  };
  let terminal: TerminalSimulator | null = null;
  let unfollow = () => {};
  try {
    for (const name of PTY_NAMES) pairs.push(await ptyPair(opts.stateDir, name));
    const [term, print, scan] = pairs as [PtyPair, PtyPair, PtyPair];
    const termLog = opts.log('terminal-sim');
    terminal = new TerminalSimulator({ path: term.peer, log: termLog, delays: TERMINAL_DELAYS });
    // The terminal reaches its host over the shop's line: down with the switch, it approves offline.
    unfollow = followConnectionFile(terminal, opts.netFile, termLog);
    await terminal.start();
    await printer.openPty(print.peer);
    const sim = terminal;
    return {
      config: {
        terminal: { kind: 'ecr', path: term.device },
        printer: { kind: 'serial', path: print.device },
        scanners: [{ kind: 'serial', path: scan.device }],
      },
      kinds: { terminal: 'ecr', printer: 'serial', scanner: 'serial' },
      scannerPeer: scan.peer,
      async stop() {
        unfollow();
        await Promise.allSettled([sim.stop(), printer.stop()]);
        await Promise.allSettled(pairs.map((p) => p.close()));
      },
      kill,
    };
  } catch (err) {
    unfollow();
    await terminal?.stop().catch(() => {});
    await printer.stop().catch(() => {});
    await Promise.allSettled(pairs.map((p) => p.close()));
    throw err;
  }
}

/**
 * A demo killed with SIGKILL leaves its socat processes behind (they are not told their parent died),
 * holding ptys nobody uses. The next start ends those whose links are in this state directory, by pid.
 */
function reapOrphanedSocat(stateDir: string, log: Logger): void {
  const links = new Set(PTY_NAMES.flatMap((n) => [n, `${n}.peer`]).map((n) => path.join(stateDir, n)));
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return; // no /proc: not Linux, nothing to look at
  }
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    if (path.basename(argv[0] ?? '') !== 'socat') continue;
    const ours = argv.some((a) => [...a.matchAll(/link=([^,]+)/g)].some((m) => links.has(m[1]!)));
    if (!ours) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
      log.warn({ pid: Number(pid) }, 'ended a socat left behind by a demo that was killed');
    } catch {
      // already gone, or not ours
    }
  }
}
