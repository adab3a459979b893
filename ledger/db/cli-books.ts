// What the ledger's subcommands (`ledger operator …`, `ledger enrol …`) share: their exit statuses and
// opening the same books the ledger uses, for one piece of work, closed whatever happens.
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { isLedgerError } from '../errors.js';
import { openLedgerDb, type LedgerDb } from './open.js';

/** Exit statuses: 0 done, 64 usage (EX_USAGE), 65 bad data (EX_DATAERR), 1 anything else. */
export const CLI_EXIT = { ok: 0, usage: 64, data: 65, failed: 1 } as const;

/** The database a subcommand works on: `--db`, else LEDGER_DB, else the ledger's own default. */
export function defaultDbUrl(env: NodeJS.ProcessEnv): string {
  return env.LEDGER_DB || 'sqlite:./ledger-data/ledger.db';
}

/**
 * Opens the books at `db` (making a SQLite file's directory), runs `work`, closes them. A LedgerError
 * is reported by its code and is bad data (65); anything else is 1.
 */
export async function withBooks(
  db: string,
  err: (line: string) => void,
  work: (ldb: LedgerDb) => Promise<number>,
): Promise<number> {
  if (db.startsWith('sqlite:') && db !== 'sqlite::memory:')
    mkdirSync(path.dirname(path.resolve(db.slice('sqlite:'.length))), { recursive: true });
  let ldb: LedgerDb;
  try {
    ldb = await openLedgerDb(db);
  } catch (e) {
    err(`cannot open the books: ${(e as Error).message}`);
    return CLI_EXIT.failed;
  }
  try {
    return await work(ldb);
  } catch (e) {
    if (isLedgerError(e)) {
      err(`${e.code}: ${e.message}`);
      return CLI_EXIT.data;
    }
    err(String((e as Error)?.message ?? e));
    return CLI_EXIT.failed;
  } finally {
    await ldb.close();
  }
}
