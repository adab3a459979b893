// `ledger enrol …`: one-time enrolment tokens for registers provisioned without a certificate, from
// the command line, against the same database the ledger uses. The token is printed once, on stdout,
// and kept nowhere (the books hold its sha256): put it on the register's card (enrolment.token, or
// the stamping CSV's enrolmentToken column) straight away.
//   ledger enrol add DEVICE --store STORE [--valid-hours H] [--replace] [--db URL]
//   ledger enrol list [--db URL]
//   ledger enrol remove DEVICE [--db URL]
import { CLI_EXIT, defaultDbUrl, withBooks } from '../db/cli-books.js';
import { addEnrolment, listEnrolments, removeEnrolment } from './enrolments.js';

const USAGE =
  'usage: ledger enrol add DEVICE --store STORE [--valid-hours H] [--replace] [--db URL]   (prints the token once)\n' +
  '       ledger enrol list [--db URL]\n' +
  '       ledger enrol remove DEVICE [--db URL]';

export const ENROL_EXIT = CLI_EXIT;

export async function runEnrolCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: { out?: (line: string) => void; err?: (line: string) => void; nowMs?: () => number } = {},
): Promise<number> {
  const out = io.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const err = io.err ?? ((l: string) => process.stderr.write(`${l}\n`));
  const [command, ...rest] = argv;
  const positional: string[] = [];
  let db = defaultDbUrl(env);
  let store: string | undefined;
  let validHours: number | undefined;
  let replace = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    const [name, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    const value = () => inline ?? rest[++i] ?? '';
    if (name === '--db') db = value();
    else if (name === '--store') store = value();
    else if (name === '--valid-hours') {
      const raw = value();
      validHours = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
    } else if (a === '--replace') replace = true;
    else if (a.startsWith('-')) {
      err(`unknown argument ${a}\n${USAGE}`);
      return ENROL_EXIT.usage;
    } else positional.push(a);
  }
  const valid =
    (command === 'add' && positional.length === 1 && store !== undefined) ||
    (command === 'list' && positional.length === 0) ||
    (command === 'remove' && positional.length === 1);
  if (!valid) {
    err(USAGE);
    return ENROL_EXIT.usage;
  }
  return withBooks(db, err, async (ldb) => {
    if (command === 'list') {
      for (const e of await listEnrolments(ldb)) out(JSON.stringify(e));
      return ENROL_EXIT.ok;
    }
    if (command === 'remove') {
      const removed = await removeEnrolment(ldb, positional[0]!);
      out(JSON.stringify({ removed, deviceId: positional[0] }));
      return removed ? ENROL_EXIT.ok : ENROL_EXIT.data;
    }
    const { token, enrolment } = await addEnrolment(
      ldb,
      {
        deviceId: positional[0]!,
        storeId: store!,
        ...(validHours !== undefined ? { validHours } : {}),
        replace,
      },
      io.nowMs?.() ?? Date.now(),
    );
    out(token);
    err(
      `enrolment for ${enrolment.deviceId} (store ${enrolment.storeId}) until ${new Date(enrolment.expiresAt).toISOString()}: the token is shown only now`,
    );
    return ENROL_EXIT.ok;
  });
}
