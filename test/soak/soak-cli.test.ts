// `npm run soak` prints the one stdout line issue 7 names, exactly those nine figures in that order, and
// the rest of what it found as a JSON line on stderr (docs/soak.md). A three-cycle run of the real CLI.
import t from 'tap';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SOAK_LINE_KEYS } from '../../scripts/soak/soak.js';

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
