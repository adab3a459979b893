// The demo store's state directory and the file a running demo leaves in it (`demo.json`): what the
// demo's other commands (`npm run net`, `npm run scan`) need to find the register, the ledger and the
// connection switch. Shared by scripts/demo.ts, scripts/net.ts and scripts/scan.ts.
import { parseArgs } from 'node:util';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

/** Where the demo keeps everything when neither `--state` nor DEMO_STATE_DIR says otherwise. */
export const DEFAULT_STATE_DIR = './demo-state';

/** A wrong command line or a demo that is not there: printed as is, exit status `exitCode`. */
export class DemoError extends Error {
  override name = 'DemoError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/**
 * A path the user typed, made absolute against the directory they typed it in: `npm run` moves to the
 * package's directory and says where it was called from in INIT_CWD.
 */
export function userPath(p: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.INIT_CWD || process.cwd(), p);
}

/** The state directory: the flag, else DEMO_STATE_DIR, else ./demo-state of the repository. */
export function resolveStateDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const dir = flag ?? (env.DEMO_STATE_DIR || undefined);
  if (dir === undefined) return path.resolve(DEFAULT_STATE_DIR);
  if (dir.length === 0 || dir.length > 4096) throw new DemoError('--state: a directory path', 2);
  return userPath(dir, env);
}

/** The files of a demo under its state directory. */
export function demoFiles(stateDir: string) {
  return {
    info: path.join(stateDir, 'demo.json'),
    net: path.join(stateDir, 'net'),
    log: path.join(stateDir, 'demo.log'),
    receipts: path.join(stateDir, 'receipts.txt'),
    ledgerDb: path.join(stateDir, 'ledger.db'),
    controlSocket: path.join(stateDir, 'control.sock'),
  };
}

/** `demo.json`: written once the store is open, removed on a clean stop. */
export const DemoInfoSchema = z.object({
  /** The demo's own process (the one to signal). */
  pid: z.number().int().min(1),
  stateDir: z.string().min(1),
  /** registerd's control socket (registerctl --socket, the till UI). */
  controlSocket: z.string().min(1),
  /** The ledger's HTTP API, e.g. http://127.0.0.1:18080. */
  ledgerHttp: z.string().min(1),
  /** The embedded broker the ledger listens on (the register reaches it through the switch). */
  brokerUrl: z.string().min(1),
  /** The connection switch on 127.0.0.1: the register's cloud.brokerUrl points here. */
  proxyPort: z.number().int().min(1).max(65535),
  /** The serial scanner's peer end (`npm run scan` writes codes to it), null without socat. */
  scannerPeer: z.string().min(1).nullable(),
  /** Receipts the printer simulator printed, as text. */
  receiptsFile: z.string().min(1),
  /** The connection switch: `up` or `down`. */
  netFile: z.string().min(1),
  /** Every component's log, JSON lines. */
  logFile: z.string().min(1),
  devices: z.object({
    terminal: z.enum(['ecr', 'simulated']),
    printer: z.enum(['serial', 'tcp']),
    scanner: z.enum(['serial', 'none']),
  }),
  startedAt: z.number().int(),
});
export type DemoInfo = z.infer<typeof DemoInfoSchema>;

/** Whether a process with this id is alive (EPERM: it is, someone else's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The demo.json of a demo that is running, or null when there is none (or only a stale file). */
export function findRunningDemo(stateDir: string): DemoInfo | null {
  const file = demoFiles(stateDir).info;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  let info: DemoInfo;
  try {
    info = DemoInfoSchema.parse(JSON.parse(text));
  } catch {
    return null; // half a file from a demo killed mid-write: not a running one
  }
  return processAlive(info.pid) ? info : null;
}

/** The running demo's info, or a DemoError saying there is none and how to start one. */
export function requireRunningDemo(stateDir: string): DemoInfo {
  const info = findRunningDemo(stateDir);
  if (!info)
    throw new DemoError(
      `no demo is running in ${shortPath(stateDir)}: start one with npm start ` +
        '(or give the state directory with --state DIR / DEMO_STATE_DIR)',
    );
  return info;
}

/** A path as short as it can be said from the working directory. */
export function shortPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  if (rel === '') return '.';
  return !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

/** Replace a small file in one step: a reader sees the old content or the new, never half. */
export function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, content, { mode: 0o640 });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** The switch's position as the file says it: null when the file is missing or holds something else. */
export function readNetFile(file: string): 'up' | 'down' | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
  return text === 'up' || text === 'down' ? text : null;
}

/** A port from a flag or variable: 0 (any free one) to 65535. */
export function parsePort(value: string, what: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535)
    throw new DemoError(`${what}: a port number 0 to 65535, not ${JSON.stringify(value)}`, 2);
  return Number(value);
}

/** "3 min 5 s" for a duration in ms. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A demo command's arguments: `--state DIR` and positionals; a bad flag is a usage error (exit 2). */
export function parseDemoCommand(argv: string[], usage: string): { stateDir: string; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { state: { type: 'string' } },
      strict: true,
      allowPositionals: true,
    });
    return { stateDir: resolveStateDir(values.state), positionals };
  } catch (err) {
    throw new DemoError(`${(err as Error).message}\n${usage}`, 2);
  }
}
