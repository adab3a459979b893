// Many rows into one table, the way each database takes them best. A device batch books hundreds of
// rows per table in one transaction, so the statement's shape is most of the cost:
//   - PostgreSQL: the rows travel as one JSON parameter and json_populate_recordset turns them into the
//     table's own row type. One short statement text whatever the row count: nothing for the server to
//     parse and plan per row, no thousands of bound parameters to encode. Measured on the sync bench's
//     200-row inbox insert: about half the time of a multi-row VALUES list (docs/decisions/0008).
//   - SQLite: multi-row VALUES in chunks under its bound-parameter limit; it runs in-process, with no
//     round trip to save.
import { sql, type Insertable, type Kysely } from 'kysely';
import type { Dialect } from './migrations.js';
import type { LedgerSchema } from './schema.js';

/** SQL parameters per statement we stay under: SQLite allows 32,766, PostgreSQL 65,535. */
const MAX_PARAMS = 30_000;

/** Rows of a multi-row insert per statement, for a table of `columns` columns. */
export function rowsPerStatement(columns: number): number {
  return Math.max(1, Math.floor(MAX_PARAMS / Math.max(1, columns)));
}

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export interface InsertRowsOptions {
  /** `on conflict (these columns) do nothing`: rows already there are skipped, and not counted. */
  skipConflictsOn?: readonly string[];
}

/**
 * Insert `rows` into `table`; resolves with how many went in. Columns are those any row gives a value
 * (a column no row names keeps its default, e.g. an identity id); a row without one of them gets null.
 * Values are numbers, strings or null, as every ledger table holds.
 */
export async function insertRows<T extends keyof LedgerSchema & string>(
  db: Kysely<LedgerSchema>,
  dialect: Dialect,
  table: T,
  rows: readonly Insertable<LedgerSchema[T]>[],
  opts: InsertRowsOptions = {},
): Promise<number> {
  if (!rows.length) return 0;
  const columns = columnsOf(rows as readonly Record<string, unknown>[]);
  const conflict = opts.skipConflictsOn;
  if (dialect === 'postgres') {
    const cols = sql.join(columns.map((c) => sql.ref(c)));
    const onConflict = conflict
      ? sql` on conflict (${sql.join(conflict.map((c) => sql.ref(c)))}) do nothing`
      : sql``;
    const result = await sql`insert into ${sql.table(table)} (${cols}) select ${cols}
      from json_populate_recordset(null::${sql.table(table)}, ${JSON.stringify(rows)}::json)${onConflict}`.execute(
      db,
    );
    return Number(result.numAffectedRows ?? 0);
  }
  let inserted = 0;
  for (const part of chunk(rows, rowsPerStatement(columns.length))) {
    // kysely cannot relate rows to a table chosen at run time; the signature above does.
    let q = db.insertInto(table).values(part as never);
    if (conflict) q = q.onConflict((oc) => oc.columns(conflict as never).doNothing());
    const result = await q.executeTakeFirst();
    inserted += Number(result.numInsertedOrUpdatedRows ?? 0);
  }
  return inserted;
}

/** Every column some row gives a value, in first-seen order. */
function columnsOf(rows: readonly Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) {
    for (const [k, v] of Object.entries(row)) if (v !== undefined) seen.add(k);
  }
  return [...seen];
}
