// Real processes, real files: a child appends as fast as it can and reports every acknowledgement; the
// parent SIGKILLs it at seeded moments (often in the middle of recovery), restarts it, and checks that
// every acknowledged record is there, once, in order, with the same hash.
//
// Replay: KILL_SEED=7 npx tap test/crash/journal-kill.test.ts      More: KILLS=2000
import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Journal } from '../../appliance/journal/journal.js';
import { scanJournal } from '../../appliance/journal/scan.js';
import { nodeFs } from '../../appliance/journal/fs.js';
import { bundle } from '../../scripts/lib/bundle.js';
import { Rng } from '../support/rng.js';
import { tally, type TallyState } from '../support/journal-fixtures.js';

const KILLS = Number(process.env.KILLS ?? 200);
const SEED = Number(process.env.KILL_SEED ?? Date.now() % 100_000);
const here = path.dirname(fileURLToPath(import.meta.url));

interface Life {
  recovered?: { seq: number; hash: string; state: TallyState };
  acks: [number, string][];
}

/** Run one life of the child and kill it: during recovery, or after `afterAcks` acknowledgements. */
function live(child: string, dir: string, seed: number, killAt: 'recovery' | number): Promise<Life> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, dir, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const life: Life = { acks: [] };
    let stderr = '';
    let killed = false;
    const kill = () => {
      if (!killed) proc.kill('SIGKILL');
      killed = true;
    };
    proc.stderr.on('data', (d) => (stderr += d));
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const [word, seq, hash, state] = line.split(' ');
      if (word === 'opening' && killAt === 'recovery') kill();
      if (word === 'recovered') life.recovered = { seq: Number(seq), hash: hash!, state: JSON.parse(state!) };
      if (word === 'ack') {
        life.acks.push([Number(seq), hash!]);
        if (typeof killAt === 'number' && life.acks.length >= killAt) kill();
      }
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(life);
      else reject(new Error(`child exited by itself (${code}): ${stderr}`));
    });
  });
}

t.test(`every acknowledged record survives ${KILLS} SIGKILLs (seed ${SEED})`, async (t) => {
  const work = t.testdir();
  const child = await bundle(path.join(here, '../support/journal-child.ts'), work);
  const dir = path.join(work, 'journal');
  const rng = new Rng(SEED);
  const acked = new Map<number, string>();
  let maxAcked = 0;
  let recoveries = 0;
  const problems: string[] = [];

  for (let kill = 0; kill < KILLS && problems.length === 0; kill++) {
    const killAt = rng.chance(0.25) ? 'recovery' : rng.int(1, 60);
    const life = await live(child, dir, rng.int(0, 2 ** 30), killAt);
    if (life.recovered) {
      recoveries++;
      const { seq, hash, state } = life.recovered;
      if (seq < maxAcked)
        problems.push(`kill ${kill}: recovered to ${seq}, but ${maxAcked} was acknowledged`);
      if (seq === maxAcked && maxAcked > 0 && hash !== acked.get(seq))
        problems.push(`kill ${kill}: seq ${seq} changed`);
      if (state.records !== seq || state.totalMinor !== (seq * (seq + 1)) / 2) {
        problems.push(`kill ${kill}: folded state ${JSON.stringify(state)} does not match ${seq} records`);
      }
    }
    for (const [seq, hash] of life.acks) {
      if (acked.has(seq) && acked.get(seq) !== hash)
        problems.push(`seq ${seq} acknowledged twice, differently`);
      acked.set(seq, hash);
      maxAcked = Math.max(maxAcked, seq);
    }
  }
  t.same(problems, [], `no violation (replay with KILL_SEED=${SEED})`);
  t.ok(maxAcked > KILLS, `records were acknowledged between kills (${maxAcked})`);
  t.ok(recoveries > KILLS / 2, `most lives recovered before they were killed (${recoveries})`);

  // The journal as the next boot will see it.
  const j = Journal.open<TallyState>({ dir, deviceId: 'till-kill', reducer: tally });
  t.ok(j.lastSeq >= maxAcked, `journal ends at ${j.lastSeq} ≥ ${maxAcked}`);
  t.same(j.state, { records: j.lastSeq, lastSeq: j.lastSeq, totalMinor: (j.lastSeq * (j.lastSeq + 1)) / 2 });
  let expected: number | undefined;
  let mismatches = 0;
  for (const r of j.read()) {
    expected ??= r.seq;
    if (r.seq !== expected++ || (acked.has(r.seq) && acked.get(r.seq) !== r.hash)) mismatches++;
  }
  t.equal(mismatches, 0, 'every acknowledged record that is still kept is there once, in order, unchanged');
  j.close();
  t.equal(scanJournal(nodeFs, dir, { useCheckpoint: false }).problem, undefined, 'journal verify is clean');
});
