// Operator accounts in the books: who may open the fleet page (viewer) and change things (admin).
// Passwords are stored as salted scrypt hashes only.
import { z } from 'zod';
import type { LedgerDb } from '../db/open.js';
import { isLedgerError, LedgerError } from '../errors.js';
import { decoyHash, hashPassword, passwordProblem, verifyPassword } from './passwords.js';

export const OPERATOR_ROLES = ['admin', 'viewer'] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

/** An operator's name: what they type at the login, and what logs show. */
export const OperatorName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,31}$/, '1 to 32 of a-z 0-9 . _ -');

export interface Operator {
  name: string;
  role: OperatorRole;
  createdAt: number;
  updatedAt: number;
}

/** Operator accounts, at most: a back office, not a customer base. */
const MAX_OPERATORS = 1000;

function check(name: string, role: string, password: string): void {
  if (!OperatorName.safeParse(name).success)
    throw new LedgerError('BAD_PARAMS', 'an operator name is 1 to 32 of a-z 0-9 . _ -', { name });
  if (!(OPERATOR_ROLES as readonly string[]).includes(role))
    throw new LedgerError('BAD_PARAMS', 'role is admin or viewer', { role });
  const problem = passwordProblem(password);
  if (problem) throw new LedgerError('BAD_PARAMS', problem);
}

/** Adds an operator; with `replace`, sets the role and password of an existing one instead of refusing. */
export async function addOperator(
  ldb: LedgerDb,
  o: { name: string; role: OperatorRole; password: string; replace?: boolean },
  nowMs: number = Date.now(),
): Promise<Operator> {
  check(o.name, o.role, o.password);
  const passwordHash = await hashPassword(o.password);
  const row = {
    name: o.name,
    role: o.role,
    password_hash: passwordHash,
    created_at: nowMs,
    updated_at: nowMs,
  };
  const done = await ldb.db.transaction().execute(async (trx) => {
    const existing = await trx
      .selectFrom('operators')
      .select('name')
      .where('name', '=', o.name)
      .executeTakeFirst();
    if (existing && !o.replace)
      throw new LedgerError('OPERATOR_EXISTS', `operator ${o.name} exists already`, { name: o.name });
    if (existing) {
      await trx
        .updateTable('operators')
        .set({ role: o.role, password_hash: passwordHash, updated_at: nowMs })
        .where('name', '=', o.name)
        .execute();
    } else {
      const n = await trx
        .selectFrom('operators')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      if (Number(n.n) >= MAX_OPERATORS)
        throw new LedgerError('BAD_PARAMS', `at most ${MAX_OPERATORS} operators`, { max: MAX_OPERATORS });
      await trx.insertInto('operators').values(row).execute();
    }
    return trx.selectFrom('operators').selectAll().where('name', '=', o.name).executeTakeFirstOrThrow();
  });
  return { name: done.name, role: done.role, createdAt: done.created_at, updatedAt: done.updated_at };
}

/** Adds the operator unless one of that name exists (a demo's bootstrap); returns whether it was added. */
export async function ensureOperator(
  ldb: LedgerDb,
  o: { name: string; role: OperatorRole; password: string },
  nowMs: number = Date.now(),
): Promise<boolean> {
  if (await getOperator(ldb, o.name)) return false;
  try {
    await addOperator(ldb, o, nowMs);
    return true;
  } catch (err) {
    if (isLedgerError(err, 'OPERATOR_EXISTS')) return false;
    throw err;
  }
}

export async function listOperators(ldb: LedgerDb): Promise<Operator[]> {
  const rows = await ldb.db
    .selectFrom('operators')
    .selectAll()
    .orderBy('name')
    .limit(MAX_OPERATORS)
    .execute();
  return rows.map((r) => ({ name: r.name, role: r.role, createdAt: r.created_at, updatedAt: r.updated_at }));
}

/** Removes an operator; their sessions end at their next request (the session store looks them up). */
export async function removeOperator(ldb: LedgerDb, name: string): Promise<boolean> {
  const r = await ldb.db.deleteFrom('operators').where('name', '=', name).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** The operator whose name and password these are, or null; as slow for an unknown name as for a known one. */
export async function checkLogin(ldb: LedgerDb, name: string, password: string): Promise<Operator | null> {
  const row =
    typeof name === 'string' && OperatorName.safeParse(name).success
      ? await ldb.db.selectFrom('operators').selectAll().where('name', '=', name).executeTakeFirst()
      : undefined;
  const ok = await verifyPassword(
    typeof password === 'string' ? password : '',
    row?.password_hash ?? (await decoyHash()),
  );
  if (!row || !ok) return null;
  return { name: row.name, role: row.role, createdAt: row.created_at, updatedAt: row.updated_at };
}

export async function getOperator(ldb: LedgerDb, name: string): Promise<Operator | null> {
  const r = await ldb.db.selectFrom('operators').selectAll().where('name', '=', name).executeTakeFirst();
  return r ? { name: r.name, role: r.role, createdAt: r.created_at, updatedAt: r.updated_at } : null;
}
