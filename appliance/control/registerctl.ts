#!/usr/bin/env node
// registerctl: one control-socket call, or a look at a journal directory (◆ command line).
//   registerctl [--socket PATH] METHOD [JSON]
//   registerctl journal verify DIR
//   registerctl journal dump DIR [--from SEQ]
//   registerctl journal export DIR --out FILE
//   registerctl journal import FILE --state-dir DIR
import { realpathSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RegisterError, isRegisterError } from '../errors.js';
import { MAX_ARCHIVE_BYTES, exportJournal, importJournal, readArchive } from '../journal/archive.js';
import { nodeFs, writeFileAtomic } from '../journal/fs.js';
import { verifyJournal } from '../journal/verify.js';
import { VERSION } from '../version.js';
import { callControl } from './client.js';

export const USAGE = `usage:
  registerctl [--socket PATH] METHOD [JSON]        call registerd (default socket: $REGISTER_STATE_DIR/control.sock)
  registerctl journal verify DIR                   check CRC, seq, hash chain and tail; JSON summary
  registerctl journal dump DIR [--from SEQ]        every record as a JSON line
  registerctl journal export DIR --out FILE        verify DIR (read only) and write it, with the sync state
                                                   beside it, to one archive FILE
  registerctl journal import FILE --state-dir DIR  check FILE and put its journal in DIR/journal (stop
                                                   registerd first)
exit: 0 done, 1 refused or damaged (import and a refused export write nothing), 2 wrong command line,
      3 export written but partial: damaged records were left out (the JSON says which)`;

/** Exit status of an export that wrote an archive of only the records before some damage. */
export const EXIT_PARTIAL = 3;

/** The default state directory on the appliance (the data partition). */
export const DEFAULT_STATE_DIR = '/var/lib/register';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  env: Record<string, string | undefined>;
}

const processIo: Io = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
  env: process.env,
};

/** Runs one command line; resolves to the exit code (0 ok, 1 refused or damaged, 2 usage, 3 partial export). */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  try {
    if (argv[0] === 'journal') return await journalCommand(argv.slice(1), io);
    return await controlCommand(argv, io);
  } catch (err) {
    if (isRegisterError(err)) {
      io.out(JSON.stringify({ error: err.toJSON() }));
      io.err(`registerctl: ${err.code}: ${err.message}`);
      return err.code === 'USAGE' ? 2 : 1;
    }
    throw err;
  }
}

function usage(why: string): never {
  throw new RegisterError('USAGE', `${why}\n${USAGE}`);
}

/** `--name VALUE` pairs after the positional arguments, each allowed once. */
function flags(rest: string[], allowed: string[]): Map<string, string> {
  const found = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const [name, value] = [rest[i]!, rest[i + 1]];
    if (!allowed.includes(name) || value === undefined || found.has(name))
      usage(`unexpected ${rest.join(' ')}`);
    found.set(name, value);
  }
  return found;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

async function journalCommand(args: string[], io: Io): Promise<number> {
  const [sub, dir, ...rest] = args;
  if (sub === 'export' && dir) return exportCommand(dir, rest, io);
  if (sub === 'import' && dir) return importCommand(dir, rest, io);
  if (!dir || (sub !== 'verify' && sub !== 'dump'))
    usage('journal needs verify, dump, export or import and a path');
  if (nodeFs.size(dir) < 0) throw new RegisterError('USAGE', `no such directory: ${dir}`);
  if (sub === 'verify') {
    if (rest.length) usage(`unexpected ${rest.join(' ')}`);
    const report = verifyJournal(nodeFs, path.resolve(dir));
    io.out(JSON.stringify(report));
    if (report.problem) io.err(`registerctl: ${report.problem.code}: ${report.problem.message}`);
    return report.ok ? 0 : 1;
  }
  let from = 1;
  if (rest.length) {
    if (rest[0] !== '--from' || rest.length !== 2 || !/^\d+$/.test(rest[1]!)) usage('dump takes --from SEQ');
    from = Number(rest[1]);
  }
  const report = verifyJournal(nodeFs, path.resolve(dir), (r) => {
    if (r.seq >= from) io.out(JSON.stringify(r));
  });
  if (report.problem) {
    io.err(`registerctl: ${report.problem.code}: ${report.problem.message} (records before it were printed)`);
    return 1;
  }
  return 0;
}

function exportCommand(dirArg: string, rest: string[], io: Io): number {
  const out = flags(rest, ['--out']).get('--out');
  if (!out) usage('export needs --out FILE');
  const dir = path.resolve(dirArg);
  const file = path.resolve(out);
  if (!isDirectory(dir)) usage(`no such directory: ${dirArg}`);
  // The journal may be on a failing card mounted read-only: never write there, not even a temp file.
  if (file.startsWith(dir + path.sep)) usage('--out must not be inside the journal directory');
  if (!isDirectory(path.dirname(file))) usage(`no such directory: ${path.dirname(out)}`);
  if (nodeFs.size(file) >= 0) usage(`${out} exists: choose another name (an archive is never overwritten)`);

  const { archive, header, ignoredFiles, syncSkipped } = exportJournal(nodeFs, dir, { software: VERSION });
  try {
    writeFileAtomic(nodeFs, file, archive);
  } catch (err) {
    try {
      if (nodeFs.size(`${file}.tmp`) >= 0) nodeFs.unlink(`${file}.tmp`);
    } catch {
      // Best effort: the message below is what the operator needs.
    }
    throw new RegisterError('JOURNAL_EXPORT_FAILED', `cannot write ${out}: ${errText(err)}`, {}, err);
  }
  const acked = header.sync?.ackedThrough ?? null;
  io.out(
    JSON.stringify({
      ok: header.complete,
      complete: header.complete,
      out: file,
      bytes: archive.length,
      deviceId: header.deviceId,
      epoch: header.epoch,
      firstSeq: header.firstSeq,
      lastSeq: header.lastSeq,
      records: header.records,
      lastHash: header.lastHash,
      checkpointSeq: header.checkpointSeq,
      tornTailBytes: header.tornTailBytes,
      ackedThrough: acked,
      unsynced: header.lastSeq - (acked ?? header.firstSeq - 1),
      leftOut: header.leftOut,
      ignoredFiles,
      syncSkipped,
    }),
  );
  if (header.tornTailBytes > 0)
    io.err(
      `registerctl: left out a torn tail of ${header.tornTailBytes} bytes: a write a power cut interrupted, ` +
        'never acknowledged, so no sale is missing',
    );
  if (ignoredFiles.length) io.err(`registerctl: not journal files, not exported: ${ignoredFiles.join(', ')}`);
  if (!header.sync)
    io.err(
      `registerctl: no sync state${syncSkipped ? ` (${syncSkipped})` : ''}: the new register will resend ` +
        'every record; harmless, the ledger books each one once',
    );
  if (header.leftOut) {
    io.err(
      `registerctl: ${header.leftOut.code}: ${header.leftOut.message}. PARTIAL archive: records after seq ` +
        `${header.lastSeq} were left out (${header.leftOut.bytes} bytes of ${header.leftOut.files.join(', ')}). ` +
        'It cannot be imported; see docs/recover.md',
    );
    return EXIT_PARTIAL;
  }
  return 0;
}

async function importCommand(fileArg: string, rest: string[], io: Io): Promise<number> {
  const stateArg = flags(rest, ['--state-dir']).get('--state-dir');
  if (!stateArg) usage('import needs --state-dir DIR');
  const file = path.resolve(fileArg);
  const stateDir = path.resolve(stateArg);
  const size = nodeFs.size(file);
  if (size < 0) usage(`no such file: ${fileArg}`);
  if (size > MAX_ARCHIVE_BYTES)
    throw new RegisterError('JOURNAL_ARCHIVE_BAD', `${fileArg} is larger than any archive (${size} bytes)`);
  if (nodeFs.size(stateDir) >= 0 && !isDirectory(stateDir)) usage(`not a directory: ${stateArg}`);

  const archive = readArchive(nodeFs.readFile(file));
  if (await answers(path.join(stateDir, 'control.sock'))) {
    throw new RegisterError(
      'JOURNAL_IMPORT_TARGET_IN_USE',
      `registerd is running on ${stateArg}: stop it first (systemctl stop registerd); nothing was written`,
    );
  }
  let result: ReturnType<typeof importJournal>;
  try {
    result = importJournal(nodeFs, archive, stateDir);
  } catch (err) {
    if (isRegisterError(err)) throw err;
    // A staging directory at most is left behind; the journal appears whole or not at all.
    throw new RegisterError(
      'JOURNAL_WRITE_FAILED',
      `the import did not finish (${errText(err)}): fix that and run it again`,
      {},
      err,
    );
  }
  const { header } = result;
  // Read back what is now on the card, as registerd will.
  const check = verifyJournal(nodeFs, result.journalDir);
  if (
    !check.ok ||
    (result.imported && (check.lastSeq !== header.lastSeq || check.lastHash !== header.lastHash))
  ) {
    throw new RegisterError(
      'JOURNAL_CORRUPT',
      `${result.journalDir} does not read back as the archive's journal`,
      {
        problem: check.problem,
        lastSeq: check.lastSeq,
      },
    );
  }
  const acked = header.sync?.ackedThrough ?? null;
  io.out(
    JSON.stringify({
      ok: true,
      imported: result.imported,
      stateDir,
      journalDir: result.journalDir,
      deviceId: header.deviceId,
      epoch: header.epoch,
      firstSeq: header.firstSeq,
      lastSeq: header.lastSeq,
      records: header.records,
      lastHash: header.lastHash,
      replaced: result.replaced,
      ackedThrough: acked,
      toSend: header.lastSeq - (acked ?? header.firstSeq - 1),
    }),
  );
  if (!result.imported)
    io.err(
      `registerctl: ${result.journalDir} already holds this journal (to seq ${check.lastSeq}): nothing to do`,
    );
  else
    io.err(
      `registerctl: imported ${header.deviceId} epoch ${header.epoch} to seq ${header.lastSeq}; start registerd ` +
        `with deviceId ${header.deviceId} (and no other pinned epoch)`,
    );
  return 0;
}

function errText(err: unknown): string {
  return String((err as Error)?.message ?? err);
}

/** Is something accepting connections on this control socket? (A stale socket file refuses.) */
function answers(socket: string): Promise<boolean> {
  if (nodeFs.size(socket) < 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const conn = createConnection(socket);
    const done = (up: boolean) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(up);
    };
    // 2 s: a listening registerd accepts at once (the kernel does it); only a hung one takes longer.
    const timer = setTimeout(() => done(true), 2000);
    conn.once('connect', () => done(true));
    conn.once('error', () => done(false));
  });
}

async function controlCommand(argv: string[], io: Io): Promise<number> {
  const args = [...argv];
  let socket: string | undefined;
  if (args[0] === '--socket') {
    socket = args[1];
    if (!socket) usage('--socket needs a path');
    args.splice(0, 2);
  }
  const [method, json, ...extra] = args;
  if (!method || method.startsWith('-') || extra.length)
    usage(method ? `unexpected ${extra.join(' ')}` : 'no method');
  let params: unknown = {};
  if (json !== undefined) {
    try {
      params = JSON.parse(json);
    } catch {
      usage(`params are not JSON: ${json}`);
    }
  }
  socket ??= path.join(io.env.REGISTER_STATE_DIR ?? DEFAULT_STATE_DIR, 'control.sock');
  const answer = await callControl(socket, method, params);
  if (answer.ok) {
    io.out(JSON.stringify(answer.result));
    return 0;
  }
  io.out(JSON.stringify({ error: answer.error }));
  io.err(`registerctl: ${answer.error.code}: ${answer.error.message}`);
  return 1;
}

// Run when executed (also through the npm bin symlink), not when imported by tests.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`registerctl: ${String(err?.stack ?? err)}\n`);
      process.exitCode = 1;
    },
  );
}
