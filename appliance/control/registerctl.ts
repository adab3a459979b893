#!/usr/bin/env node
// registerctl: one control-socket call, or a look at a journal directory (◆ command line).
//   registerctl [--socket PATH] METHOD [JSON]
//   registerctl journal verify DIR
//   registerctl journal dump DIR [--from SEQ]
import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RegisterError, isRegisterError } from '../errors.js';
import { nodeFs } from '../journal/fs.js';
import { verifyJournal } from '../journal/verify.js';
import { callControl } from './client.js';

export const USAGE = `usage:
  registerctl [--socket PATH] METHOD [JSON]   call registerd (default socket: $REGISTER_STATE_DIR/control.sock)
  registerctl journal verify DIR              check CRC, seq, hash chain and tail; JSON summary
  registerctl journal dump DIR [--from SEQ]   every record as a JSON line`;

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

/** Runs one command line; resolves to the exit code (0 ok, 1 refused or damaged, 2 usage). */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  try {
    if (argv[0] === 'journal') return journalCommand(argv.slice(1), io);
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

function journalCommand(args: string[], io: Io): number {
  const [sub, dir, ...rest] = args;
  if (!dir || (sub !== 'verify' && sub !== 'dump')) usage('journal needs verify or dump and a directory');
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
