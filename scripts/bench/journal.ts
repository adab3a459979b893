// Journal benchmark: commit latency against the physical floor (write + fdatasync of a raw file) and
// against SQLite, then recovery time and memory of a 100,000-record journal, all on one disk in one run.
//   npm run bench:journal -- [--dir DIR] [--records N]
// Prints exactly one JSON line on stdout; progress goes to stderr.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { Journal } from '../../appliance/journal/journal.js';
import { encodeFrame } from '../../appliance/journal/format.js';
import { nodeFs, type JournalFs } from '../../appliance/journal/fs.js';
import { genesisHash, sealRecord } from '../../cloud-bridge/protocol/record.js';
import {
  BENCH_DEVICE_ID,
  BENCH_EPOCH,
  saleEvents,
  salesReducer,
  type RecoveryFigures,
  type SalesState,
} from './journal-workload.js';
import { bundle } from '../lib/bundle.js';
import { median, percentileUs, round } from '../lib/stats.js';

const WARMUP = 100;
const ROUNDS = 10;
const RECOVER_RECORDS = 100_000;
/** The journal's default; the build writes checkpoints at this interval (see buildRecoveryJournal). */
const CHECKPOINT_EVERY = 5000;
/** Each recovery figure is the median of this many fresh child processes. */
const RECOVER_RUNS = 3;

const here = path.dirname(fileURLToPath(import.meta.url));

function log(msg: string): void {
  process.stderr.write(`bench:journal ${msg}\n`);
}

function parseOptions(): { baseDir: string; records: number } {
  const { values } = parseArgs({
    options: { dir: { type: 'string' }, records: { type: 'string', default: '2000' } },
    strict: true,
  });
  const records = Number(values.records);
  if (!Number.isSafeInteger(records) || records < ROUNDS) {
    throw new Error(`--records must be an integer of at least ${ROUNDS}`);
  }
  return { baseDir: values.dir ?? os.tmpdir(), records };
}

/** Something timed `count` times; `step(i)` is one operation. */
interface Contender {
  name: string;
  step(i: number): void;
  samples: bigint[];
}

function timeChunk(c: Contender, from: number, count: number, record: boolean): void {
  for (let i = from; i < from + count; i++) {
    const t0 = process.hrtime.bigint();
    c.step(i);
    const dt = process.hrtime.bigint() - t0;
    if (record) c.samples.push(dt);
  }
}

interface LatencyFigures {
  recordBytes: number;
  commitP50: number;
  commitP99: number;
  fdatasyncP50: number;
  sqliteP50: number;
  sqliteSealedP50: number;
}

function benchCommits(work: string, records: number): LatencyFigures {
  const journal = Journal.open<SalesState>({
    dir: path.join(work, 'latency-journal'),
    deviceId: BENCH_DEVICE_ID,
    epoch: BENCH_EPOCH,
    reducer: salesReducer,
  });
  // One real record fixes the sizes the other two contenders write.
  const sample = journal.append(saleEvents(0));
  const json = JSON.stringify(sample);
  // On flash a frame fills whole 512-byte sectors (docs/journal.md): the floor writes as many bytes.
  const recordBytes = encodeFrame(Buffer.from(json, 'utf8'), true).length;

  // The floor: what the journal does physically, a frame-sized append then fdatasync, and nothing else.
  const rawFd = fs.openSync(path.join(work, 'raw.dat'), 'w', 0o600);
  const frame = Buffer.alloc(recordBytes, 0x5a);
  let rawEnd = 0;

  const db = new Database(path.join(work, 'bench.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  log(
    `sqlite ${db.prepare('select sqlite_version() as v').pluck().get() as string}, ` +
      `journal_mode=${db.pragma('journal_mode', { simple: true }) as string}, ` +
      `synchronous=${db.pragma('synchronous', { simple: true }) as number} (2 = FULL)`,
  );
  db.exec('CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO events (payload) VALUES (?)');
  db.exec('CREATE TABLE sealed (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)');
  const insertSealed = db.prepare('INSERT INTO sealed (payload) VALUES (?)');
  let chain = genesisHash(BENCH_DEVICE_ID, BENCH_EPOCH);

  // Built beforehand so that building a sale is not timed as part of its commit.
  const sales = Array.from({ length: WARMUP + records }, (_, i) => saleEvents(i + 1));
  const contenders: Contender[] = [
    { name: 'journal', samples: [], step: (i) => void journal.append(sales[i]!) },
    {
      name: 'raw',
      samples: [],
      step: () => {
        fs.writeSync(rawFd, frame, 0, frame.length, rawEnd);
        fs.fdatasyncSync(rawFd);
        rawEnd += frame.length;
      },
    },
    // Autocommit: each INSERT is its own transaction, committed durably before run() returns.
    { name: 'sqlite', samples: [], step: () => void insert.run(json) },
    // The same SQLite with what Invariant 5 asks of any store: each record sealed into the hash chain.
    {
      name: 'sqlite-sealed',
      samples: [],
      step: (i) => {
        const body = { seq: i + 1, ts: Date.now(), clock: 'trusted' as const, events: sales[i]! };
        const sealed = sealRecord(chain, body);
        chain = sealed.record.hash;
        insertSealed.run(sealed.payload);
      },
    },
  ];

  try {
    for (const c of contenders) timeChunk(c, 0, WARMUP, false);
    // Interleaved chunks, so a burst of disk noise lands on all three alike rather than on one.
    let done = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const count = Math.floor((records * (r + 1)) / ROUNDS) - done;
      for (const c of contenders) timeChunk(c, WARMUP + done, count, true);
      done += count;
      log(`latency round ${r + 1}/${ROUNDS}: ${done}/${records}`);
    }
  } finally {
    journal.close();
    fs.closeSync(rawFd);
    db.close();
  }
  const [commits, raw, sqlite, sqliteSealed] = contenders.map((c) => c.samples) as [
    bigint[],
    bigint[],
    bigint[],
    bigint[],
  ];
  return {
    recordBytes,
    commitP50: percentileUs(commits, 0.5),
    commitP99: percentileUs(commits, 0.99),
    fdatasyncP50: percentileUs(raw, 0.5),
    sqliteP50: percentileUs(sqlite, 0.5),
    sqliteSealedP50: percentileUs(sqliteSealed, 0.5),
  };
}

/**
 * Write a 100,000-record journal whose recovery is the slow case the checkpoint interval allows: the
 * first 95,000 records are appended with default checkpoints (the last one at seq 95,000), the last
 * 5,000 with checkpoints off, so recovery starts at the checkpoint and folds 5,000 records. (Built all
 * at once, a checkpoint would land on seq 100,000 and recovery would fold nothing.)
 * fdatasync is skipped while building, only to build quickly; the files are synced once at the end so
 * background writeback does not run under the timed recoveries.
 */
function buildRecoveryJournal(dir: string): SalesState {
  const noSyncFs: JournalFs = { ...nodeFs, fdatasync: () => {} };
  const open = (checkpointEveryRecords: number) =>
    Journal.open<SalesState>({
      dir,
      deviceId: BENCH_DEVICE_ID,
      epoch: BENCH_EPOCH,
      reducer: salesReducer,
      fs: noSyncFs,
      checkpointEveryRecords,
    });
  const t0 = performance.now();
  let journal = open(CHECKPOINT_EVERY);
  const lastCheckpointed = RECOVER_RECORDS - CHECKPOINT_EVERY;
  for (let n = 1; n <= RECOVER_RECORDS; n++) {
    if (n === lastCheckpointed + 1) {
      journal.close();
      journal = open(0);
    }
    journal.append(saleEvents(n));
    if (n % 20_000 === 0) log(`built ${n}/${RECOVER_RECORDS} records`);
  }
  const state = journal.state;
  journal.close();
  for (const name of fs.readdirSync(dir)) {
    const fd = fs.openSync(path.join(dir, name), 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  const bytes = fs.readdirSync(dir).reduce((sum, name) => sum + fs.statSync(path.join(dir, name)).size, 0);
  log(
    `built ${RECOVER_RECORDS} records (${(bytes / 1e6).toFixed(1)} MB) in ${(performance.now() - t0).toFixed(0)} ms`,
  );
  return state;
}

/** Run the recovery child `RECOVER_RUNS` times on `dir`, checking every run folded to `expected`. */
function recoverInChildren(
  child: string,
  dir: string,
  expected: SalesState,
  label: string,
): RecoveryFigures[] {
  const runs: RecoveryFigures[] = [];
  for (let i = 0; i < RECOVER_RUNS; i++) {
    const out = spawnSync(process.execPath, [child, dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (out.status !== 0)
      throw new Error(`recovery child (${label}) exited with ${out.status ?? out.signal}`);
    const figures = JSON.parse(out.stdout) as RecoveryFigures;
    if (JSON.stringify(figures.state) !== JSON.stringify(expected) || figures.lastSeq !== RECOVER_RECORDS) {
      throw new Error(`recovery child (${label}) folded a different state: ${JSON.stringify(figures.state)}`);
    }
    log(
      `recover ${label} run ${i + 1}: ${figures.openMs.toFixed(1)} ms, replayed ${figures.replayed} ` +
        `(checkpoint seq ${figures.checkpointSeq}), rss ${figures.rssBeforeMb.toFixed(1)} -> ` +
        `${figures.rssMb.toFixed(1)} MB, heap ${figures.heapUsedMb.toFixed(1)} MB, ` +
        `buffers ${figures.arrayBuffersMb.toFixed(1)} MB`,
    );
    runs.push(figures);
  }
  return runs;
}

async function main(): Promise<void> {
  const { baseDir, records } = parseOptions();
  const work = fs.mkdtempSync(path.join(baseDir, 'bench-journal-'));
  log(`working in ${work}`);
  try {
    const latency = benchCommits(work, records);
    log(
      `commit p50 ${latency.commitP50} us, raw fdatasync p50 ${latency.fdatasyncP50} us, ` +
        `sqlite p50 ${latency.sqliteP50} us`,
    );

    // The child runs as one bundle under plain node, like the built appliance: no loader in its memory.
    const child = await bundle(path.join(here, 'journal-recover.ts'), work);

    const dir = path.join(work, 'recover-journal');
    const expected = buildRecoveryJournal(dir);
    const withCheckpoint = recoverInChildren(child, dir, expected, 'from checkpoint');
    fs.unlinkSync(path.join(dir, 'checkpoint'));
    const fullReplay = recoverInChildren(child, dir, expected, 'full replay');

    const commitP50 = round(latency.commitP50, 1);
    const ratioVsFdatasync = round(latency.commitP50 / latency.fdatasyncP50, 3);
    const ratioVsSqlite = round(latency.commitP50 / latency.sqliteP50, 3);
    const recoverMs = round(median(withCheckpoint.map((f) => f.openMs)), 1);
    const recoverFullMs = round(median(fullReplay.map((f) => f.openMs)), 1);
    // The worst of all runs: a full replay is what a boot without a usable checkpoint costs.
    const rssMb = round(Math.max(...[...withCheckpoint, ...fullReplay].map((f) => f.rssMb)), 1);

    const result = {
      records,
      record_bytes: latency.recordBytes,
      commit_p50_us: commitP50,
      commit_p99_us: round(latency.commitP99, 1),
      fdatasync_p50_us: round(latency.fdatasyncP50, 1),
      sqlite_p50_us: round(latency.sqliteP50, 1),
      ratio_vs_fdatasync: ratioVsFdatasync,
      ratio_vs_sqlite: ratioVsSqlite,
      sqlite_sealed_p50_us: round(latency.sqliteSealedP50, 1),
      ratio_vs_sqlite_sealed: round(latency.commitP50 / latency.sqliteSealedP50, 3),
      recover_100k_ms: recoverMs,
      recover_100k_nocheckpoint_ms: recoverFullMs,
      rss_mb: rssMb,
      targets_met: {
        ratio_vs_fdatasync: ratioVsFdatasync <= 1.3,
        ratio_vs_sqlite: ratioVsSqlite <= 1.0,
        recover_100k_ms: recoverMs < 1000,
        recover_100k_nocheckpoint_ms: recoverFullMs < 3000,
        rss_mb: rssMb < 80,
      },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    log(`removed ${work}`);
  }
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
