// Open the ledger's database from a URL, bring its schema up to date, and hand back one kysely handle.
// sqlite:PATH is the embedded single-store default; postgres://… the scale-out target (several ledger
// consumers on one database). Both read 64-bit integers back as JS numbers, refusing unsafe ones.
import Database from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type SqliteDatabase,
  type SqliteStatement,
} from 'kysely';
import pg from 'pg';
import { LedgerError } from '../errors.js';
import { migrateToLatest, type Dialect } from './migrations.js';
import type { LedgerSchema } from './schema.js';

export type { Dialect } from './migrations.js';

export interface LedgerDb {
  db: Kysely<LedgerSchema>;
  dialect: Dialect;
  close(): Promise<void>;
}

export interface OpenOptions {
  /**
   * PostgreSQL connections in the pool. 10: pg's own default, and plenty for one consumer whose work is
   * mostly one transaction per message; several consumers each hold their own pool.
   */
  poolMax?: number;
  /**
   * How long SQLite waits for another process's write lock before SQLITE_BUSY, ms. 5 s: longer than any
   * one ledger transaction (a 500-record batch takes tens of ms), short enough to surface a stuck writer.
   */
  busyTimeoutMs?: number;
}

export async function openLedgerDb(url: string, opts: OpenOptions = {}): Promise<LedgerDb> {
  const ldb = url.startsWith('sqlite:')
    ? openSqlite(url.slice('sqlite:'.length), opts)
    : /^postgres(ql)?:\/\//.test(url)
      ? openPostgres(url, opts)
      : undefined;
  if (!ldb) throw new LedgerError('BAD_DB_URL', `not a ledger database URL: ${redactUrl(url)}`);
  try {
    await migrateToLatest(ldb.db as Kysely<unknown>, ldb.dialect);
  } catch (err) {
    await ldb.close().catch(() => undefined);
    throw err;
  }
  return ldb;
}

/** A URL for messages: no password. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
}

// ---- SQLite ----

/**
 * Prepared statements kept per SQL text. kysely's driver prepares every query afresh; the ledger runs the
 * same few dozen statements all day. 256 covers them with room for the multi-row inserts' variants.
 */
const STATEMENT_CACHE_SIZE = 256;

function cachedStatements(db: Database.Database): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => db.close(),
    prepare(sqlText: string): SqliteStatement {
      let stmt = cache.get(sqlText);
      if (stmt) {
        cache.delete(sqlText); // re-inserted below: most recently used last
      } else {
        stmt = db.prepare(sqlText) as unknown as SqliteStatement;
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      }
      cache.set(sqlText, stmt);
      return stmt;
    },
  };
}

/**
 * Transactions that take SQLite's write lock when they begin. A deferred `begin` that reads first and
 * writes later can fail with SQLITE_BUSY at its first write when another process (a second ledger on
 * the same file) wrote in between, and busy_timeout cannot help then; `begin immediate` waits instead.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly database: SqliteDatabase) {
    super({ database });
  }

  override createDriver(): SqliteDriver {
    return new ImmediateSqliteDriver({ database: this.database });
  }
}

/**
 * One handle per SQLite file per process: better-sqlite3 waits for a lock synchronously, so a second
 * handle in the same process waiting on the first blocks the event loop the first needs to commit, until
 * busy_timeout ends it with SQLITE_BUSY. Within one handle kysely runs transactions one at a time; across
 * processes (a second ledger on the same file) busy_timeout does the waiting.
 */
function openSqlite(path: string, opts: OpenOptions): LedgerDb {
  if (!path) throw new LedgerError('BAD_DB_URL', 'sqlite: needs a file path (or :memory:)');
  const raw = new Database(path);
  try {
    raw.pragma('journal_mode = WAL');
    // FULL: a commit is on disk before the ack goes out (Invariant 1 continues on this side).
    raw.pragma('synchronous = FULL');
    raw.pragma('foreign_keys = ON');
    raw.pragma(`busy_timeout = ${Math.max(0, Math.trunc(opts.busyTimeoutMs ?? 5000))}`);
  } catch (err) {
    raw.close();
    throw err;
  }
  const db = new Kysely<LedgerSchema>({ dialect: new ImmediateSqliteDialect(cachedStatements(raw)) });
  let closed = false;
  return {
    db,
    dialect: 'sqlite',
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

// ---- PostgreSQL ----

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** int8 and numeric (what SUM of a bigint gives) as JS numbers; refuse rather than round. */
function safeNumber(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) && !(Number.isFinite(n) && !/^-?\d+$/.test(text)))
    throw new RangeError(`${text} does not fit a JS number exactly`);
  return n;
}

const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if ((oid === INT8_OID || oid === NUMERIC_OID) && format !== 'binary') return safeNumber;
    return format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid, 'text');
  },
} as pg.CustomTypesConfig;

function openPostgres(url: string, opts: OpenOptions): LedgerDb {
  const pool = new pg.Pool({ connectionString: url, max: opts.poolMax ?? 10, types });
  // An idle client's error (the server restarted) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  const db = new Kysely<LedgerSchema>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    dialect: 'postgres',
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}
