// `ledger operator …`: operator accounts from the command line, against the same database the ledger
// uses. The password comes from LEDGER_OPERATOR_PASSWORD or the first line of stdin, never from argv
// (which every user of the machine can read in the process list).
//   ledger operator add NAME --role admin|viewer [--replace] [--db URL]
//   ledger operator list [--db URL]
//   ledger operator remove NAME [--db URL]
import { createInterface } from 'node:readline';
import { CLI_EXIT, defaultDbUrl, withBooks } from '../db/cli-books.js';
import {
  addOperator,
  listOperators,
  OPERATOR_ROLES,
  removeOperator,
  type OperatorRole,
} from './operators.js';

const USAGE =
  'usage: ledger operator add NAME --role admin|viewer [--replace] [--db URL]   (password: LEDGER_OPERATOR_PASSWORD or stdin)\n' +
  '       ledger operator list [--db URL]\n' +
  '       ledger operator remove NAME [--db URL]';

export const OPERATOR_EXIT = CLI_EXIT;

/** The first line of stdin, at most 1 KiB; empty when stdin ends first. */
async function firstLine(input: NodeJS.ReadableStream): Promise<string> {
  const rl = createInterface({ input, terminal: false });
  try {
    for await (const line of rl) return line.slice(0, 1024);
    return '';
  } finally {
    rl.close();
  }
}

export async function runOperatorCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: {
    stdin?: NodeJS.ReadableStream;
    out?: (line: string) => void;
    err?: (line: string) => void;
  } = {},
): Promise<number> {
  const out = io.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const err = io.err ?? ((l: string) => process.stderr.write(`${l}\n`));
  const [command, ...rest] = argv;
  const positional: string[] = [];
  let db = defaultDbUrl(env);
  let role: string | undefined;
  let replace = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--db') db = rest[++i] ?? '';
    else if (a.startsWith('--db=')) db = a.slice(5);
    else if (a === '--role') role = rest[++i];
    else if (a.startsWith('--role=')) role = a.slice(7);
    else if (a === '--replace') replace = true;
    else if (a === '--password' || a.startsWith('--password=')) {
      err('the password is not taken from the command line: give LEDGER_OPERATOR_PASSWORD or stdin');
      return OPERATOR_EXIT.usage;
    } else if (a.startsWith('-')) {
      err(`unknown argument ${a}\n${USAGE}`);
      return OPERATOR_EXIT.usage;
    } else positional.push(a);
  }
  const valid =
    (command === 'add' && positional.length === 1 && role !== undefined) ||
    (command === 'list' && positional.length === 0) ||
    (command === 'remove' && positional.length === 1);
  if (!valid) {
    err(USAGE);
    return OPERATOR_EXIT.usage;
  }
  if (command === 'add' && !(OPERATOR_ROLES as readonly string[]).includes(role!)) {
    err(`--role is admin or viewer, not ${role}`);
    return OPERATOR_EXIT.usage;
  }
  return withBooks(db, err, async (ldb) => {
    if (command === 'list') {
      for (const o of await listOperators(ldb)) out(JSON.stringify(o));
      return OPERATOR_EXIT.ok;
    }
    if (command === 'remove') {
      const removed = await removeOperator(ldb, positional[0]!);
      out(JSON.stringify({ removed, name: positional[0] }));
      return removed ? OPERATOR_EXIT.ok : OPERATOR_EXIT.data;
    }
    const password = env.LEDGER_OPERATOR_PASSWORD ?? (await firstLine(io.stdin ?? process.stdin));
    const operator = await addOperator(ldb, {
      name: positional[0]!,
      role: role as OperatorRole,
      password,
      replace,
    });
    out(JSON.stringify(operator));
    return OPERATOR_EXIT.ok;
  });
}
