// `npm run soak` prints the one stdout line issue 7 names, exactly those nine figures in that order, and
// the rest of what it found as a JSON line on stderr (docs/soak.md). A three-cycle run of the real CLI.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SOAK_LINE_KEYS } from '../../scripts/soak/soak.js';
import { waitFor } from '../support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const seed = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 32));

t.test('the stdout line holds exactly the nine figures; the rest goes to stderr', async (t) => {
  t.comment(`seed ${seed} (replay: SOAK_SEED=${seed} npx tap test/soak/soak-cli.test.ts)`);
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [
      path.join(root, 'node_modules/tsx/dist/cli.mjs'),
      'scripts/soak/soak.ts',
      '--cycles',
      '3',
      '--seed',
      `${seed}`,
    ],
    { cwd: root, timeout: 240_000, maxBuffer: 10 * 1024 * 1024 },
  );
  const lines = stdout.split('\n').filter(Boolean);
  t.equal(lines.length, 1, 'one line on stdout');
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.same(Object.keys(line), [...SOAK_LINE_KEYS], 'exactly the nine keys, in the issue order');
  t.match(line, { cycles: 3, lost: 0, duplicates: 0, double_charges: 0, chain_ok: true, seed });
  const detail = JSON.parse(stderr.trim().split('\n').at(-1)!) as Record<string, unknown>;
  t.match(
    detail,
    { registers: 1, cuts: Object, died_before_ready: Number, pending_at_end: 0 },
    'the extra figures are the last stderr line',
  );
  t.same(detail.violations, [], 'no invariant broken');
  for (const k of SOAK_LINE_KEYS) t.notOk(k in detail, `${k} is not repeated on stderr`);
});

/** Processes whose command line names `dir` (the soak's registers and their socat ptys live there). */
function processesIn(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(dir)) found.push(`${pid} ${cmd.trim()}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

t.test('stopped by two SIGINTs in a row, it still leaves no register or socat behind', async (t) => {
  const dir = t.testdir();
  const soak = spawn(
    process.execPath,
    ['--import', 'tsx', 'scripts/soak/soak.ts', '--cycles', '10000', '--seed', `${seed}`, '--dir', dir],
    { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = once(soak, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  t.teardown(() => {
    soak.kill('SIGKILL');
    for (const p of processesIn(dir)) process.kill(Number(p.split(' ')[0]), 'SIGKILL');
  });
  let stderr = '';
  soak.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // Running: a register and its terminal's socat are up.
  await waitFor(
    'a register and a socat in the soak directory',
    () => {
      const procs = processesIn(dir);
      return procs.some((p) => p.includes('socat')) && procs.some((p) => p.includes('registerd'));
    },
    { timeoutMs: 60_000, intervalMs: 50 },
  );
  // As a terminal's Ctrl-C and the wrapper passing it on, or an impatient second Ctrl-C.
  soak.kill('SIGINT');
  soak.kill('SIGINT');
  const [code] = await Promise.race([
    exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit: ${stderr}`)), 60_000)),
  ]);
  t.equal(code, 130, 'exits 130 after cleaning up');
  t.match(stderr, /soak: SIGINT, stopping/);
  t.same(processesIn(dir), [], 'nothing of the soak left running');
});
