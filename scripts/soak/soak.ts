// The power-cut soak (docs/soak.md): registers ring up sales while their power is cut again and again,
// and after every restart and at the end the invariants are checked.
//
//   npm run soak -- --cycles N [--seed S] [--registers R] [--dir DIR] [--keep]
//
// registerd runs as a child process over the simulated-power file layer (power-fs.ts): nothing it
// writes reaches the disk before fdatasync or syncDir, so SIGKILL is a power cut, torn flushes
// included. The card terminal simulator (on a socat pty) and the ledger (SQLite, embedded broker) run
// in this process: they are the world outside the register and keep their power. Each cycle cuts the
// power one of four ways, chosen from the seed:
//   recovery — during start-up (a cut armed at an early step, or a kill at a random point of its start);
//   inside   — at a random durable step while sales are rung up (junk in the torn sector half the time);
//   outside  — a SIGKILL at a random moment while sales are rung up;
//   card     — a SIGKILL while a card payment is being authorised.
// After each cut, the journal as it is on the disk verifies (a torn tail at most). After each restart:
// every sale the register acknowledged is there with the same receipt number, hash and seq, no card
// payment is left open, and every receipt number since the last check reads back (no gap). At the end
// the register runs without cuts until the ledger has booked everything; then the journal's chain is
// verified and the ledger reconciled against what was acknowledged and what the terminal charged (its
// receipt numbers 1..n, no gap). Whether the targeted cuts hit is counted: cuts that landed before the
// register was ready, and restarts that had to settle an open card payment with the terminal.
//
// With --power-cmd the same load and checks drive a real register (docs/soak.md): the command is run
// with `off` and `on` to cut and restore its power (a relay or a smart plug), --socket names its
// control socket (forwarded over ssh), and the ledger's books are read from --ledger-db.
//
// Prints one JSON line on stdout, exactly the nine figures issue 7 names (SOAK_LINE_KEYS), and the
// other figures as one JSON line on stderr; exits 1 when an invariant was broken.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { callControl } from '../../appliance/control/client.js';
import { RECENT_RECEIPTS } from '../../appliance/till/state.js';
import { silentLogger } from '../../appliance/log.js';
import { verifyJournal } from '../../appliance/journal/verify.js';
import { openLedgerDb, type LedgerDb } from '../../ledger/db/open.js';
import { startLedger, type RunningLedger } from '../../ledger/main.js';
import { bundle } from '../lib/bundle.js';
import { ptyPair, type PtyPair } from '../sim/pty.js';
import { TerminalSimulator } from '../sim/terminal-sim.js';
import { Rng } from '../../test/support/rng.js';
import { PowerFs, type PowerPlan } from './power-fs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEMO = path.join(root, 'scripts/demo');
const CASHIER = { cashierId: 'ana', pin: '1111' };
const MANAGER = { managerId: 'mia', pin: '9999' };

export const SOAK_DEFAULTS = {
  cycles: 200,
  /** ms a register may take from power-on to answering; a Pi boots registerd in a few seconds. */
  readyTimeoutMs: 30_000,
  /** Control calls per cycle at most, when no cut came first (the cycle then ends with one). */
  maxOpsPerCycle: 30,
  /** ms one control call may take: a card payment with the terminal's delays is well under a second. */
  callTimeoutMs: 10_000,
  /** ms the final drain to the ledger may take. */
  drainTimeoutMs: 180_000,
  /** Acknowledged sales re-read after each restart, besides those of the cycle just cut. */
  sampleOlder: 5,
} as const;

type CutKind = 'recovery' | 'inside' | 'outside' | 'card';

interface AckedSale {
  saleId: string;
  receiptNo: number;
  seq: number;
  chain: string;
  totalMinor: number;
  tender: 'cash' | 'card';
  cycle: number;
}

/** The soak's one stdout line: issue 7 names exactly these figures, in this order. */
export const SOAK_LINE_KEYS = [
  'cycles',
  'sales_acked',
  'sales_in_ledger',
  'lost',
  'duplicates',
  'double_charges',
  'chain_ok',
  'max_recovery_ms',
  'seed',
] as const;

export interface SoakLine {
  cycles: number;
  sales_acked: number;
  sales_in_ledger: number;
  lost: number;
  duplicates: number;
  double_charges: number;
  chain_ok: boolean;
  max_recovery_ms: number;
  seed: number;
}

/** The rest of what a run found: one JSON line on stderr. */
export interface SoakDetail {
  /** Registers soaked at once, on one ledger. */
  registers: number;
  /** How the cycles cut the power. */
  cuts: Record<CutKind, number>;
  /** Cuts that came while the register was still starting (during recovery, or before it). */
  died_before_ready: number;
  /** Restarts whose recovery found a card payment open and settled it with the terminal. */
  cards_settled_on_recovery: number;
  /** Times the journal was verified on the disk as a cut left it. */
  journal_verifies: number;
  /** ms from power-on to a register answering, at most (process start included). */
  max_ready_ms: number;
  card_charges: number;
  /** Records pending at the end, over all registers (0 when everything drained). */
  pending_at_end: number;
  /** Where the time went, s in all (over all registers): verify, power-on, checks, load, cut. */
  phase_s: Record<keyof Tally['phaseMs'], number>;
  seconds: number;
  /** Each broken invariant, described (empty when all held). */
  violations: string[];
}

export type SoakResult = SoakLine & SoakDetail;

/** The stdout line's figures, and only those, in the issue's order. */
export function soakLine(r: SoakResult): SoakLine {
  return Object.fromEntries(SOAK_LINE_KEYS.map((k) => [k, r[k]])) as unknown as SoakLine;
}

/** Everything else, for the stderr line. */
export function soakDetail(r: SoakResult): SoakDetail {
  const rest: Record<string, unknown> = { ...r };
  for (const k of SOAK_LINE_KEYS) delete rest[k];
  return rest as unknown as SoakDetail;
}

/** How a power-on went. */
interface PowerOn {
  /** false: the power went again before the register answered. */
  ready: boolean;
  readyMs: number;
  recoveryMs: number;
  /** Its recovery found a card payment open and settled it with the terminal (registerd's log). */
  settledCard: boolean;
}

/** What the load needs of a register: its control socket, and power. */
interface Target {
  socket: string;
  /** Power on (with a cut armed, for the simulated power); resolves when it answers or has died. */
  powerOn(plan: PowerPlan): Promise<PowerOn>;
  /** Cut the power now; resolves when it is off. */
  cut(): Promise<void>;
  /** Resolves when the register has died by itself (a cut armed inside). */
  died(): Promise<void>;
  /** A clean stop (SIGTERM), for the end. */
  stop(): Promise<void>;
  journalDir: string | null;
}

class Violations {
  readonly list: string[] = [];
  check(ok: unknown, what: string): void {
    if (!ok && this.list.length < 100) this.list.push(what);
  }
}

/**
 * The environment a simulated register starts with: this process's, without a test runner's coverage
 * hooks. Under tap every child inherits `--import @tapjs/processinfo` and its coverage settings, which
 * made a registerd start about 2.5 to 3 times as long (median 1.3 s to 3.7 s on a busy 2-core machine),
 * and a start is most of a cycle; the bundle's coverage maps to no source anyway.
 */
function registerdEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('_TAPJS_PROCESSINFO_') && k !== 'NODE_V8_COVERAGE') env[k] = v;
  const options = (env.NODE_OPTIONS ?? '')
    .split(/\s+/)
    .filter((o) => o && !o.includes('@tapjs/processinfo'))
    .join(' ');
  if (options) env.NODE_OPTIONS = options;
  else delete env.NODE_OPTIONS;
  return env;
}

/** registerd over simulated power, as a child process. */
class SimulatedTarget implements Target {
  readonly socket: string;
  readonly journalDir: string;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** Set by shutDown(): the soak is stopping, and no register may start again behind its back. */
  private off = false;

  constructor(
    private readonly bin: string,
    private readonly config: string,
    stateDir: string,
  ) {
    this.socket = path.join(stateDir, 'control.sock');
    this.journalDir = path.join(stateDir, 'journal');
  }

  powerOn(plan: PowerPlan) {
    if (this.off) return Promise.reject(new Error('the soak is stopping: no more power-ons'));
    const started = performance.now();
    const proc = spawn(process.execPath, [this.bin, '--config', this.config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...registerdEnv(), SOAK_POWER_PLAN: JSON.stringify(plan) },
    });
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', () => r()));
    let log = '';
    proc.stderr!.setEncoding('utf8');
    return new Promise<PowerOn>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(
          new Error(`registerd not ready within ${SOAK_DEFAULTS.readyTimeoutMs} ms:\n${log.slice(-4000)}`),
        );
      }, SOAK_DEFAULTS.readyTimeoutMs);
      const onLog = (chunk: string) => {
        log = (log + chunk).slice(-100_000);
        if (!log.includes('"msg":"ready"')) return;
        clearTimeout(timer);
        // Ready: the rest of its log (a line or two per control call) is drained unread, not rescanned.
        proc.stderr!.off('data', onLog);
        proc.stderr!.resume();
        const lines = log.split('\n');
        const line = lines.find((l) => /"msg":"journal (recovered|created)"/.test(l));
        resolve({
          ready: true,
          readyMs: Math.round(performance.now() - started),
          recoveryMs: line ? Number((JSON.parse(line) as { ms?: number }).ms ?? 0) : 0,
          settledCard: lines.some((l) => l.includes('"msg":"card request settled"')),
        });
      };
      proc.stderr!.on('data', onLog);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (signal === 'SIGKILL') resolve({ ready: false, readyMs: 0, recoveryMs: 0, settledCard: false });
        else reject(new Error(`registerd exited (${code ?? signal}) before ready:\n${log.slice(-4000)}`));
      });
    });
  }

  async cut(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
  }

  /** The last cut: the register's cycles may still be running (a signal stopped the soak). */
  shutDown(): Promise<void> {
    this.off = true;
    return this.cut();
  }

  died(): Promise<void> {
    return this.exited;
  }

  async stop(): Promise<void> {
    this.proc?.kill('SIGTERM');
    await this.exited;
  }
}

/** A real register whose power a command switches (docs/soak.md). */
class PoweredTarget implements Target {
  readonly journalDir = null;
  private off = false;
  private readonly run = promisify(execFile);

  constructor(
    readonly socket: string,
    private readonly powerCmd: string,
    private readonly offMs: number,
  ) {}

  private async power(state: 'on' | 'off'): Promise<void> {
    await this.run('/bin/sh', ['-c', `${this.powerCmd} ${state}`], { timeout: 60_000 });
  }

  async powerOn() {
    const started = performance.now();
    if (this.off) await this.power('on');
    this.off = false;
    const deadline = started + SOAK_DEFAULTS.readyTimeoutMs * 10; // a whole boot
    for (;;) {
      const a = await callControl(this.socket, 'status', {}, 2000).catch(() => null);
      if (a?.ok)
        return {
          ready: true,
          readyMs: Math.round(performance.now() - started),
          recoveryMs: 0,
          settledCard: false, // its log is on the register
        };
      if (performance.now() > deadline) throw new Error('the register did not come back after power-on');
      await new Promise((r) => setTimeout(r, 500)); // polling a booting machine: nothing to wait on
    }
  }

  async cut(): Promise<void> {
    await this.power('off');
    this.off = true;
    await new Promise((r) => setTimeout(r, this.offMs)); // capacitors drain; the card sees a real cut
  }

  died(): Promise<void> {
    return new Promise(() => {}); // a real register does not cut its own power
  }

  async stop(): Promise<void> {}
}

class Load {
  readonly acked: AckedSale[] = [];
  /** The register's last receipt number at the last complete check after a restart. */
  receiptsCheckedThrough = 0;
  /** When a card payment is sent: the cut that aims at card authorisation listens here. */
  onCardSent: (() => void) | null = null;

  constructor(
    private readonly target: Target,
    private readonly rng: Rng,
    private readonly violations: Violations,
    private readonly name: string,
  ) {}

  private async call(method: string, params: unknown = {}): Promise<Record<string, unknown>> {
    const a = await callControl(this.target.socket, method, params, SOAK_DEFAULTS.callTimeoutMs);
    if (!a.ok)
      throw Object.assign(new Error(`${method}: ${a.error.code} ${a.error.message}`), { code: a.error.code });
    return a.result as Record<string, unknown>;
  }

  /**
   * After power-on: what was acknowledged is there, unchanged; nothing is left half done; the receipt
   * series never goes back and every number since the last check is there (no gap).
   */
  async checkRecovered(cycle: number): Promise<void> {
    const s = await this.call('status');
    const receiptNo = s.receiptNo as number;
    const last = this.acked.at(-1);
    this.violations.check(
      s.pendingCard === null,
      `${this.name} cycle ${cycle}: a card payment still open after recovery`,
    );
    const floor = Math.max(last?.receiptNo ?? 0, this.receiptsCheckedThrough);
    this.violations.check(
      receiptNo >= floor,
      `${this.name} cycle ${cycle}: receipt series went back from ${floor} to ${receiptNo}`,
    );
    // The register keeps its last RECENT_RECEIPTS receipts (older ones are the ledger's to show). Its
    // own last number, not the last acknowledged one: sales whose answer a cut took count too.
    const keptFrom = receiptNo - RECENT_RECEIPTS + 1;
    const byNo = new Map(this.acked.map((a) => [a.receiptNo, a]));
    const older = this.acked.filter((a) => a.cycle < cycle - 1 && a.receiptNo >= keptFrom);
    const numbers = new Set(this.acked.filter((a) => a.cycle >= cycle - 1).map((a) => a.receiptNo));
    for (let i = 0; i < SOAK_DEFAULTS.sampleOlder && older.length; i++)
      numbers.add(this.rng.pick(older).receiptNo);
    // Every number the register gave out since the last check, acknowledged or not: no gap.
    for (let no = Math.max(this.receiptsCheckedThrough + 1, keptFrom, 1); no <= receiptNo; no++)
      numbers.add(no);
    for (const no of [...numbers].sort((a, b) => a - b)) {
      const want = byNo.get(no);
      const got = await this.call('receipt.get', { receiptNo: no }).catch((err: Error) => err);
      if (got instanceof Error) {
        if ((got as { code?: string }).code === 'CONTROL_UNAVAILABLE') throw got; // the power went
        this.violations.check(
          false,
          want
            ? `${this.name} cycle ${cycle}: acknowledged receipt ${no} lost: ${got.message}`
            : `${this.name} cycle ${cycle}: receipt ${no} of ${receiptNo} missing (a gap): ${got.message}`,
        );
        continue;
      }
      const r = got.receipt as { saleId?: string; seq: number; chain: string };
      if (want)
        this.violations.check(
          r.saleId === want.saleId && r.seq === want.seq && r.chain === want.chain,
          `${this.name} cycle ${cycle}: receipt ${no} changed (${JSON.stringify([r.saleId, r.seq, r.chain])})`,
        );
    }
    this.receiptsCheckedThrough = receiptNo;
  }

  /** Rings up work until the power goes (a call fails) or the budget is spent. */
  async run(cycle: number, maxOps: number, catalog: string[]): Promise<void> {
    try {
      for (let ops = 0; ops < maxOps; ops++) await this.step(cycle, catalog);
    } catch (err) {
      const code = (err as { code?: string }).code;
      // A refusal is a bug in the load or the register; a dead socket is the cut.
      if (code !== 'CONTROL_UNAVAILABLE')
        this.violations.check(false, `${this.name} cycle ${cycle}: ${(err as Error).message}`);
    }
  }

  private async step(cycle: number, catalog: string[]): Promise<void> {
    const s = await this.call('status');
    if (!s.session) await this.call('cashier.login', CASHIER);
    if (!s.shift) await this.call('shift.open', { floatCounts: { '1000': 5, '200': 10 } });
    if (s.sale) return this.tender(cycle, this.rng.chance(0.5) ? 'card' : 'cash');
    const roll = this.rng.int(1, 100);
    if (roll <= 8) {
      await this.call('cash.payout', {
        amountMinor: this.rng.int(100, 900),
        reason: 'soak',
        approval: MANAGER,
      });
      return;
    }
    if (roll <= 12 && s.shift) {
      const expected = (s.shift as { expectedCashMinor: number }).expectedCashMinor;
      await this.call('shift.close', { counts: countsFor(expected), approval: MANAGER });
      return;
    }
    for (let i = this.rng.int(1, 3); i > 0; i--)
      await this.call('sale.scan', { code: this.rng.pick(catalog) });
    await this.tender(cycle, roll <= 55 ? 'cash' : 'card');
  }

  private async tender(cycle: number, kind: 'cash' | 'card'): Promise<void> {
    if (kind === 'card') this.onCardSent?.();
    let answer: Record<string, unknown>;
    try {
      answer = await this.call('sale.tender', { kind });
    } catch (err) {
      // Refused by the terminal's rules, or a payment the register must ask about: take cash instead.
      if (
        kind === 'card' &&
        ['CARD_DECLINED', 'CARD_OFFLINE_LIMIT'].includes((err as { code?: string }).code ?? '')
      )
        return this.tender(cycle, 'cash');
      throw err;
    }
    if (answer.completed !== true) return;
    const r = answer.receipt as { saleId: string; seq: number; chain: string };
    this.acked.push({
      saleId: r.saleId,
      receiptNo: answer.receiptNo as number,
      seq: r.seq,
      chain: r.chain,
      totalMinor: answer.totalMinor as number,
      tender: kind,
      cycle,
    });
  }
}

/** A drawer count that matches the expected cash: 10.00 notes and the rest in cents. */
function countsFor(expectedMinor: number): Record<string, number> {
  const cash = Math.max(0, expectedMinor);
  return { '1000': Math.floor(cash / 1000), '1': cash % 1000 };
}

/** One barcode of each product that scans at a fixed price. */
function barcodes(): string[] {
  const catalog = JSON.parse(readFileSync(path.join(DEMO, 'catalog.json'), 'utf8')) as {
    products: { barcodes?: string[]; openPrice?: boolean }[];
  };
  return catalog.products.filter((p) => !p.openPrice).flatMap((p) => p.barcodes?.slice(0, 1) ?? []);
}

export interface SoakOptions {
  /** Power cuts in all, shared out over the registers. */
  cycles: number;
  seed: number;
  /** Registers of one store, each with its own terminal, all on one ledger; cut independently. */
  registers?: number;
  /** Working directory; a temporary one (removed at the end) by default. */
  dir?: string;
  keep?: boolean;
  /** A line of progress now and then (stderr by default). */
  progress?: (line: string) => void;
  /** A real register: power command, its control socket, its ledger's database URL. */
  powered?: { powerCmd: string; socket: string; ledgerDb: string; deviceId: string; offMs: number };
  /** Run the register on a disk whose fdatasync writes nothing: the soak must report losses (its self-test). */
  lyingDisk?: boolean;
}

/** One register under test and what it needs. */
interface Unit {
  target: Target;
  deviceId: string;
  /** What its terminal charged; null for a real terminal (compare with its own report). */
  charges: (() => { txn: string; kind: string }[]) | null;
}

interface World {
  units: Unit[];
  books: LedgerDb;
  close(): Promise<void>;
}

async function simulatedWorld(dir: string, registers: number): Promise<World> {
  const closers: (() => Promise<void>)[] = [];
  // One clean-up, however many ask for it (a signal's handler and runSoak's finally): each waits for all of it.
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
    })());
  try {
    const bin = await bundle(path.join(root, 'scripts/soak/registerd-powersim.ts'), dir);
    const ledger: RunningLedger = await startLedger(
      { db: `sqlite:${path.join(dir, 'ledger.db')}`, mqtt: 'embedded:0', http: 0 },
      { log: silentLogger },
    );
    closers.push(() => ledger.stop());
    const units: Unit[] = [];
    for (let i = 1; i <= registers; i++) {
      const deviceId = `soak-${i}`;
      const home = path.join(dir, deviceId);
      mkdirSync(home, { recursive: true });
      const pty: PtyPair = await ptyPair(home, 'terminal');
      closers.push(() => pty.close());
      // The terminal takes a little while to authorise, so that cuts can land during it.
      const sim = new TerminalSimulator({
        path: pty.peer,
        online: true,
        log: silentLogger,
        delays: { statusMs: 5, resultMs: 30 },
      });
      await sim.start();
      closers.push(() => sim.stop());
      const stateDir = path.join(home, 'state');
      mkdirSync(stateDir, { recursive: true });
      const config = path.join(home, 'registerd.json');
      writeFileSync(
        config,
        JSON.stringify({
          deviceId,
          storeId: 'demo-store',
          stateDir,
          clock: { assumeTrusted: true },
          seed: {
            catalogFile: path.join(DEMO, 'catalog.json'),
            cashiersFile: path.join(DEMO, 'cashiers.json'),
          },
          cloud: { brokerUrl: ledger.mqttUrl, reconnectMaxMs: 1000 },
          devices: { terminal: { kind: 'ecr', path: pty.device }, printer: { kind: 'none' } },
        }),
      );
      const target = new SimulatedTarget(bin, config, stateDir);
      closers.push(() => target.shutDown());
      units.push({ target, deviceId, charges: () => sim.charges });
    }
    return { units, books: ledger.ldb, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function poweredWorld(p: NonNullable<SoakOptions['powered']>): Promise<World> {
  const books = await openLedgerDb(p.ledgerDb);
  return {
    units: [
      { target: new PoweredTarget(p.socket, p.powerCmd, p.offMs), deviceId: p.deviceId, charges: null },
    ],
    books,
    close: () => books.close(),
  };
}

function pickCut(rng: Rng): CutKind {
  const roll = rng.int(1, 100);
  return roll <= 15 ? 'recovery' : roll <= 50 ? 'inside' : roll <= 85 ? 'outside' : 'card';
}

/** What the cycles of all registers add up to. */
class Tally {
  readonly cuts: Record<CutKind, number> = { recovery: 0, inside: 0, outside: 0, card: 0 };
  cycles = 0;
  diedBeforeReady = 0;
  maxRecoveryMs = 0;
  maxReadyMs = 0;
  acked = 0;
  /** Restarts whose recovery found a card payment open and settled it with the terminal. */
  cardsSettledOnRecovery = 0;
  /** Times the journal on the disk was verified as a cut left it (every cut, simulated power only). */
  journalVerifies = 0;
  /** Where the cycles' time went, ms in all: verify, power-on to ready, checks after it, load, cut. */
  readonly phaseMs = { verify: 0, powerOn: 0, check: 0, load: 0, cut: 0 };
  /** Adds the ms since `from` to a phase; returns now. */
  lap(phase: keyof Tally['phaseMs'], from: number): number {
    const now = performance.now();
    this.phaseMs[phase] += now - from;
    return now;
  }
}

/**
 * The journal as the last cut left it on the disk verifies: CRCs, seq and chain whole, a torn tail at
 * most (the next start cuts that off). Read-only, with a fresh simulated-power layer: only what was
 * synced is there.
 */
function verifyAfterCut(
  unit: Unit,
  tally: Tally,
  violations: Violations,
  cycle: number,
  everReady: boolean,
): void {
  const dir = unit.target.journalDir;
  if (!dir) return;
  const report = verifyJournal(new PowerFs(), dir);
  tally.journalVerifies++;
  // Until a start got as far as ready, a cut may have come before the first segment was synced.
  if (report.segments === 0 && !everReady) return;
  violations.check(
    report.ok,
    `${unit.deviceId} after the cut of cycle ${cycle - 1}: the journal does not verify: ` +
      `${report.problem ? `${report.problem.code} ${report.problem.message}` : 'no segments'}`,
  );
}

/** One register's cycles: power on (a cut armed or not), check, ring up, cut; then stay on and drain. */
async function soakRegister(
  unit: Unit,
  cycles: number,
  rng: Rng,
  o: SoakOptions,
  tally: Tally,
  violations: Violations,
  catalog: string[],
): Promise<{ acked: AckedSale[]; pendingAtEnd: number }> {
  const { target } = unit;
  const load = new Load(target, rng, violations, unit.deviceId);
  let cameBack = true;
  let everReady = false;
  /** ms its last start took, power-on to ready; where in its start a kill can land. */
  let lastReadyMs = 1000;
  /** Power on; a register that does not come back is the worst broken invariant, and ends its soak. */
  const powerOn = async (plan: PowerPlan, cycle: number) => {
    try {
      return await target.powerOn(plan);
    } catch (err) {
      cameBack = false;
      const first = (err as Error).message.split('\n').slice(0, 3).join(' ');
      violations.check(false, `${unit.deviceId} cycle ${cycle}: did not come back: ${first.slice(0, 500)}`);
      return null;
    }
  };
  for (let cycle = 1; cycle <= cycles; cycle++) {
    const kind = o.powered ? (rng.chance(0.2) ? 'card' : 'outside') : pickCut(rng);
    tally.cuts[kind]++;
    tally.cycles++;
    const plan: PowerPlan =
      kind === 'inside'
        ? { afterSteps: rng.int(5, 250), junk: rng.chance(0.5), junkSeed: rng.int(0, 2 ** 31 - 1) }
        : kind === 'recovery' && rng.chance(0.5)
          ? { afterSteps: rng.int(1, 12), junk: rng.chance(0.5), junkSeed: rng.int(0, 2 ** 31 - 1) }
          : {};
    // A kill before the register is ready: after a random part of its start, as long as its last start
    // took (a fixed window missed recovery whenever a loaded machine took longer to load the code).
    const early = kind === 'recovery' && plan.afterSteps === undefined ? rng.int(0, lastReadyMs) : null;
    const earlyKill = early === null ? null : setTimeout(() => void target.cut(), early);
    let t0 = performance.now();
    verifyAfterCut(unit, tally, violations, cycle, everReady);
    t0 = tally.lap('verify', t0);
    const on = await powerOn(o.lyingDisk ? { ...plan, lie: true } : plan, cycle);
    if (earlyKill) clearTimeout(earlyKill);
    t0 = tally.lap('powerOn', t0);
    if (!on) break;
    if (!on.ready) {
      tally.diedBeforeReady++;
      continue;
    }
    everReady = true;
    lastReadyMs = on.readyMs;
    if (on.settledCard) tally.cardsSettledOnRecovery++;
    tally.maxRecoveryMs = Math.max(tally.maxRecoveryMs, on.recoveryMs);
    tally.maxReadyMs = Math.max(tally.maxReadyMs, on.readyMs);
    try {
      await load.checkRecovered(cycle);
    } catch (err) {
      // The power went during the checks (a cut armed at an early step): checked next time.
      if ((err as { code?: string }).code !== 'CONTROL_UNAVAILABLE') throw err;
    }
    t0 = tally.lap('check', t0);
    let timer: NodeJS.Timeout | null = null;
    if (kind === 'outside') timer = setTimeout(() => void target.cut(), rng.int(20, 1000));
    if (kind === 'card') {
      const delay = rng.int(0, 60);
      load.onCardSent = () => {
        load.onCardSent = null;
        timer = setTimeout(() => void target.cut(), delay);
      };
    }
    const before = load.acked.length;
    await load.run(cycle, SOAK_DEFAULTS.maxOpsPerCycle, catalog);
    tally.acked += load.acked.length - before;
    load.onCardSent = null;
    if (timer) clearTimeout(timer);
    t0 = tally.lap('load', t0);
    await target.cut(); // no-op when it is already off
    tally.lap('cut', t0);
  }
  // The end: power stays on until the ledger has everything.
  let pendingAtEnd = -1;
  if (cameBack) verifyAfterCut(unit, tally, violations, cycles + 1, everReady);
  const on = cameBack ? await powerOn({}, cycles + 1) : null;
  if (on?.ready) {
    if (on.settledCard) tally.cardsSettledOnRecovery++;
    tally.maxRecoveryMs = Math.max(tally.maxRecoveryMs, on.recoveryMs);
    await load.checkRecovered(cycles + 1);
    pendingAtEnd = await drain(target.socket);
    violations.check(
      pendingAtEnd === 0,
      `${unit.deviceId}: ${pendingAtEnd} records still pending after the final drain`,
    );
    await target.stop();
  }
  return { acked: load.acked, pendingAtEnd };
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const registers = o.powered ? 1 : (o.registers ?? 1);
  if (!Number.isInteger(registers) || registers < 1 || registers > 16)
    throw new Error(`registers: 1 to 16, not ${registers}`);
  const progress = o.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), 'soak-'));
  const world = o.powered ? await poweredWorld(o.powered) : await simulatedWorld(dir, registers);
  // Stopped from outside (Ctrl-C, a test's timeout): no register, terminal or socat left behind. A
  // second signal (tsx passes on the one the terminal sent the whole group; an impatient user) must not
  // cut the clean-up short: the handler stays, and only the first starts it.
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    progress(`soak: ${signal}, stopping`);
    void world.close().finally(() => {
      if (!o.dir && !o.keep) rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const violations = new Violations();
  const catalog = barcodes();
  const tally = new Tally();
  const started = performance.now();
  let reported = 0;
  const ticker = setInterval(() => {
    progress(
      `soak: ${tally.cycles}/${o.cycles} cycles, ${tally.acked} sales acknowledged, ` +
        `${violations.list.length} violations, cuts ${JSON.stringify(tally.cuts)}, ` +
        `${tally.diedBeforeReady} before ready, max recovery ${tally.maxRecoveryMs} ms, ` +
        `${Math.round((performance.now() - started) / 1000)} s`,
    );
    for (const v of violations.list.slice(reported)) progress(`soak: VIOLATION ${v}`);
    reported = violations.list.length;
  }, 30_000);
  try {
    // The seed gives each register its own stream, so a run replays whatever the interleaving.
    const share = (i: number) => Math.floor(o.cycles / registers) + (i < o.cycles % registers ? 1 : 0);
    const outcomes = await Promise.all(
      world.units.map((unit, i) =>
        soakRegister(unit, share(i), new Rng((o.seed + i * 0x9e3779b9) >>> 0), o, tally, violations, catalog),
      ),
    );
    const parts = await Promise.all(
      world.units.map((unit, i) => reconcile(world.books, unit, outcomes[i]!.acked, violations)),
    );
    const sum = (f: (p: (typeof parts)[number]) => number) => parts.reduce((n, p) => n + f(p), 0);
    return {
      cycles: tally.cycles,
      sales_acked: sum((p) => p.salesAcked),
      sales_in_ledger: sum((p) => p.salesInLedger),
      lost: sum((p) => p.lost),
      duplicates: sum((p) => p.duplicates),
      double_charges: sum((p) => p.doubleCharges),
      chain_ok: parts.every((p) => p.chainOk),
      max_recovery_ms: tally.maxRecoveryMs,
      seed: o.seed,
      registers,
      cuts: tally.cuts,
      died_before_ready: tally.diedBeforeReady,
      cards_settled_on_recovery: tally.cardsSettledOnRecovery,
      journal_verifies: tally.journalVerifies,
      max_ready_ms: tally.maxReadyMs,
      card_charges: sum((p) => p.cardCharges),
      pending_at_end: outcomes.reduce((n, r) => n + (r.pendingAtEnd < 0 ? 1 : r.pendingAtEnd), 0),
      phase_s: Object.fromEntries(
        Object.entries(tally.phaseMs).map(([k, ms]) => [k, Math.round(ms / 1000)]),
      ) as SoakDetail['phase_s'],
      seconds: Math.round((performance.now() - started) / 1000),
      violations: violations.list,
    };
  } finally {
    clearInterval(ticker);
    await world.close();
    // Stopped by a signal: its handler exits (130) once the world is closed; what the interrupted
    // registers made of it (errors, a partial result) is not a result to print.
    if (stopping) await new Promise<never>(() => undefined);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!o.dir && !o.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** Waits until the ledger has acknowledged the whole journal; returns what is still pending. */
async function drain(socket: string): Promise<number> {
  const deadline = performance.now() + SOAK_DEFAULTS.drainTimeoutMs;
  let pending = -1;
  for (;;) {
    const a = await callControl(socket, 'status', {}, SOAK_DEFAULTS.callTimeoutMs);
    if (a.ok) {
      const s = a.result as { lastSeq: number; sync: { pending: number; ackedThrough: number } | null };
      pending = s.sync ? s.sync.pending : -1;
      if (s.sync && s.sync.pending === 0 && s.sync.ackedThrough === s.lastSeq) return 0;
    }
    if (performance.now() > deadline) return pending;
    await new Promise((r) => setTimeout(r, 200)); // the bridge's acks arrive on their own time
  }
}

/** One register's books against what it acknowledged and what its terminal charged. */
async function reconcile(books: LedgerDb, unit: Unit, acked: AckedSale[], violations: Violations) {
  const db = books.db;
  const sales = await db
    .selectFrom('sales')
    .select(['sale_id', 'receipt_no'])
    .where('device_id', '=', unit.deviceId)
    .execute();
  const inLedger = new Set(sales.map((s) => s.sale_id));
  const receiptNos = new Set(sales.map((s) => s.receipt_no));
  const duplicates = sales.length - inLedger.size + (sales.length - receiptNos.size);
  // The load rings up no refunds: the booked sales' receipt numbers are 1..n, without a gap.
  const highest = Math.max(0, ...receiptNos);
  violations.check(
    highest === receiptNos.size,
    `${unit.deviceId}: the ledger's receipt series has gaps (${receiptNos.size} numbers, highest ${highest})`,
  );
  const missing = acked.filter((a) => !inLedger.has(a.saleId));
  for (const a of missing.slice(0, 5))
    violations.check(
      false,
      `${unit.deviceId}: acknowledged sale ${a.saleId} (receipt ${a.receiptNo}) is not in the ledger`,
    );

  // Every charge the terminal made is a card tender in the books, once.
  let doubleCharges = 0;
  let cardCharges = 0;
  const charges = unit.charges?.();
  if (charges) {
    const tenders = await db
      .selectFrom('tenders')
      .innerJoin('sales', 'sales.sale_id', 'tenders.sale_id')
      .select(['tenders.txn'])
      .where('sales.device_id', '=', unit.deviceId)
      .where('tenders.kind', '=', 'card')
      .execute();
    const booked = new Set(tenders.map((t) => t.txn));
    const seen = new Set<string>();
    for (const c of charges.filter((x) => x.kind === 'sale')) {
      cardCharges++;
      if (seen.has(c.txn) || !booked.has(c.txn)) doubleCharges++;
      seen.add(c.txn);
    }
    violations.check(
      doubleCharges === 0,
      `${unit.deviceId}: ${doubleCharges} card charges not booked exactly once`,
    );
  }

  const alarms = await db
    .selectFrom('exceptions')
    .select(['kind'])
    .where('device_id', '=', unit.deviceId)
    .where('kind', 'in', ['chain_break', 'gap', 'quarantine'])
    .execute();
  const journalOk = unit.target.journalDir ? verifyJournal(new PowerFs(), unit.target.journalDir).ok : true;
  violations.check(journalOk, `${unit.deviceId}: the journal does not verify`);
  violations.check(
    alarms.length === 0,
    `${unit.deviceId}: the ledger raised ${alarms.length} chain, gap or quarantine alarms`,
  );
  return {
    salesAcked: acked.length,
    salesInLedger: sales.length,
    lost: missing.length,
    duplicates,
    doubleCharges,
    cardCharges,
    chainOk: alarms.length === 0 && journalOk,
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      cycles: { type: 'string' },
      seed: { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      'power-cmd': { type: 'string' },
      socket: { type: 'string' },
      'ledger-db': { type: 'string' },
      'device-id': { type: 'string' },
      'off-ms': { type: 'string' },
      registers: { type: 'string' },
    },
    strict: true,
  });
  const int = (name: string, v: string | undefined, dflt: number, max: number) => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v) || Number(v) > max)
      throw new Error(`--${name} takes a whole number up to ${max}, not ${v}`);
    return Number(v);
  };
  const cycles = int('cycles', values.cycles, SOAK_DEFAULTS.cycles, 10_000_000);
  const seed = int('seed', values.seed, Math.floor(Math.random() * 2 ** 32), 2 ** 32 - 1);
  const registers = int('registers', values.registers, 1, 16);
  let powered: SoakOptions['powered'];
  if (values['power-cmd']) {
    if (!values.socket || !values['ledger-db'] || !values['device-id'])
      throw new Error('--power-cmd needs --socket, --ledger-db and --device-id too (docs/soak.md)');
    powered = {
      powerCmd: values['power-cmd'],
      socket: values.socket,
      ledgerDb: values['ledger-db'],
      deviceId: values['device-id'],
      offMs: int('off-ms', values['off-ms'], 3000, 600_000),
    };
  }
  process.stderr.write(
    `soak: ${cycles} cycles on ${registers} register(s), seed ${seed} (replay with --seed ${seed})\n`,
  );
  const result = await runSoak({
    cycles,
    seed,
    registers,
    ...(values.dir ? { dir: values.dir } : {}),
    ...(values.keep ? { keep: true } : {}),
    ...(powered ? { powered } : {}),
  });
  process.stdout.write(`${JSON.stringify(soakLine(result))}\n`);
  process.stderr.write(`${JSON.stringify(soakDetail(result))}\n`);
  const broken =
    result.lost || result.duplicates || result.double_charges || !result.chain_ok || result.violations.length;
  process.exit(broken ? 1 : 0);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
