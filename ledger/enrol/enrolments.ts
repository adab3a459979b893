// Enrolment tokens in the books: an operator issues one per register (`ledger enrol add`), the
// register redeems it once at `POST /api/enrol` for a certificate of its own key. The token is shown
// once and kept only as its sha256. A retry with the same key (the answer was lost on the way) gets
// the same certificate again; another key is refused, so a token copied off a card is worth nothing
// once its register has enrolled.
import { createHash, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { EnrolRequest, EnrolResponse } from '../../cloud-bridge/protocol/enrol.js';
import { WireId } from '../../cloud-bridge/protocol/wire.js';
import type { LedgerDb } from '../db/open.js';
import { LedgerError } from '../errors.js';
import { requestKeySha256, type CertificateAuthority } from './authority.js';

export const ENROLMENT_LIMITS = {
  /** Hours a token is good for by default: a week to get the card into the register. */
  defaultValidHours: 168,
  /** At most 90 days: an unused token is a standing credential. */
  maxValidHours: 90 * 24,
  /** Open enrolments, at most (a fleet's worth). */
  maxEnrolments: 100_000,
} as const;

export interface Enrolment {
  deviceId: string;
  storeId: string;
  createdAt: number;
  expiresAt: number;
  redeemedAt: number | null;
  /** Serial of the certificate issued, hex, once redeemed. */
  serial: string | null;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * A new token for `deviceId`; with `replace`, one replacing the device's earlier enrolment (a new card
 * for the same register). Returns the token: it is not stored and cannot be shown again.
 */
export async function addEnrolment(
  ldb: LedgerDb,
  e: { deviceId: string; storeId: string; validHours?: number; replace?: boolean },
  nowMs: number = Date.now(),
): Promise<{ token: string; enrolment: Enrolment }> {
  for (const [name, v] of [
    ['deviceId', e.deviceId],
    ['storeId', e.storeId],
  ] as const)
    if (!WireId.safeParse(v).success)
      throw new LedgerError('BAD_PARAMS', `${name} is 1 to 64 of A-Z a-z 0-9 . _ -`, { [name]: v });
  const hours = e.validHours ?? ENROLMENT_LIMITS.defaultValidHours;
  if (!(hours > 0 && hours <= ENROLMENT_LIMITS.maxValidHours))
    throw new LedgerError(
      'BAD_PARAMS',
      `valid hours are more than 0 and at most ${ENROLMENT_LIMITS.maxValidHours}`,
      {
        validHours: hours,
      },
    );
  const token = randomBytes(32).toString('base64url');
  const row = {
    device_id: e.deviceId,
    store_id: e.storeId,
    token_sha256: sha256(token),
    created_at: nowMs,
    expires_at: nowMs + Math.round(hours * 3_600_000),
    redeemed_at: null,
    public_key_sha256: null,
    certificate: null,
    serial: null,
  };
  await ldb.db.transaction().execute(async (trx) => {
    const existing = await trx
      .selectFrom('enrolments')
      .select('device_id')
      .where('device_id', '=', e.deviceId)
      .executeTakeFirst();
    if (existing && !e.replace)
      throw new LedgerError('ENROLMENT_EXISTS', undefined, { deviceId: e.deviceId });
    if (existing) await trx.deleteFrom('enrolments').where('device_id', '=', e.deviceId).execute();
    else {
      const { n } = await trx
        .selectFrom('enrolments')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      if (Number(n) >= ENROLMENT_LIMITS.maxEnrolments)
        throw new LedgerError(
          'BAD_PARAMS',
          `at most ${ENROLMENT_LIMITS.maxEnrolments} enrolments: remove redeemed ones`,
        );
    }
    await trx.insertInto('enrolments').values(row).execute();
  });
  return {
    token,
    enrolment: {
      deviceId: e.deviceId,
      storeId: e.storeId,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      redeemedAt: null,
      serial: null,
    },
  };
}

export async function listEnrolments(ldb: LedgerDb): Promise<Enrolment[]> {
  const rows = await ldb.db
    .selectFrom('enrolments')
    .select(['device_id', 'store_id', 'created_at', 'expires_at', 'redeemed_at', 'serial'])
    .orderBy('device_id')
    .execute();
  return rows.map((r) => ({
    deviceId: r.device_id,
    storeId: r.store_id,
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    redeemedAt: r.redeemed_at === null ? null : Number(r.redeemed_at),
    serial: r.serial,
  }));
}

/** Removes a device's enrolment (an unused token stops working); false when there was none. */
export async function removeEnrolment(ldb: LedgerDb, deviceId: string): Promise<boolean> {
  const r = await ldb.db.deleteFrom('enrolments').where('device_id', '=', deviceId).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/**
 * Redeems a token: the certificate for the request's key, issued once. Throws LedgerError
 * ENROL_REFUSED (no such device, or not its token: one answer for both), ENROL_EXPIRED, ENROL_USED
 * (redeemed for another key) or BAD_PARAMS (the request itself).
 */
export async function redeemEnrolment(
  ldb: LedgerDb,
  ca: CertificateAuthority,
  req: EnrolRequest,
  nowMs: number,
  certificateDays?: number,
): Promise<EnrolResponse> {
  const keySha = requestKeySha256(req.csr);
  if (!keySha) throw new LedgerError('BAD_PARAMS', 'csr is not a readable PKCS#10 certificate request');
  return ldb.db.transaction().execute(async (trx) => {
    let select = trx.selectFrom('enrolments').selectAll().where('device_id', '=', req.deviceId);
    // Two redemptions at once on PostgreSQL: the second waits here and sees the first one's result.
    if (ldb.dialect === 'postgres') select = select.forUpdate();
    const row = await select.executeTakeFirst();
    if (!row || !sameHash(row.token_sha256, sha256(req.token)))
      throw new LedgerError('ENROL_REFUSED', undefined, { deviceId: req.deviceId });
    if (row.redeemed_at !== null) {
      if (row.public_key_sha256 === keySha && row.certificate)
        return { certificate: row.certificate, ca: ca.certificatePem, notAfter: notAfterOf(row.certificate) };
      throw new LedgerError('ENROL_USED', undefined, { deviceId: req.deviceId });
    }
    if (nowMs > Number(row.expires_at))
      throw new LedgerError('ENROL_EXPIRED', undefined, {
        deviceId: req.deviceId,
        expiredAt: new Date(Number(row.expires_at)).toISOString(),
      });
    const issued = await ca.issue(req.csr, req.deviceId, nowMs, certificateDays);
    await trx
      .updateTable('enrolments')
      .set({
        redeemed_at: nowMs,
        public_key_sha256: issued.publicKeySha256,
        certificate: issued.pem,
        serial: issued.serial,
      })
      .where('device_id', '=', req.deviceId)
      .where('redeemed_at', 'is', null)
      .execute();
    return { certificate: issued.pem, ca: ca.certificatePem, notAfter: issued.notAfter };
  });
}

function notAfterOf(pem: string): string {
  return new Date(new X509Certificate(pem).validTo).toISOString();
}
