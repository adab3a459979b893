// `POST /api/enrol` ◆: the one API call a register makes, with its one-time token as the credential
// (no operator session, no API token). docs/ledger-api.md.
import { ENROL_PATH, EnrolRequestSchema } from '../../cloud-bridge/protocol/enrol.js';
import { silentLogger, type Logger } from '../../appliance/log.js';
import type { LedgerDb } from '../db/open.js';
import { isLedgerError, LedgerError } from '../errors.js';
import type { Route } from '../http.js';
import type { CertificateAuthority } from './authority.js';
import { redeemEnrolment } from './enrolments.js';

export interface EnrolRouteOptions {
  ldb: LedgerDb;
  /** Without a CA the ledger answers ENROL_UNAVAILABLE. */
  ca?: CertificateAuthority | undefined;
  certificateDays?: number | undefined;
  log?: Logger;
}

/** A request is a device id, a token and a PEM request: a few KiB. */
const MAX_ENROL_BODY_BYTES = 32 * 1024;

export function enrolRoutes(opts: EnrolRouteOptions): Route[] {
  const log = opts.log ?? silentLogger;
  return [
    {
      method: 'POST',
      path: ENROL_PATH,
      name: 'enrol',
      access: 'public',
      maxBodyBytes: MAX_ENROL_BODY_BYTES,
      async handle(ctx) {
        if (!opts.ca) throw new LedgerError('ENROL_UNAVAILABLE');
        const parsed = EnrolRequestSchema.safeParse(await ctx.body());
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          const field = issue.path.join('.') || 'body';
          throw new LedgerError('BAD_PARAMS', `${field}: ${issue.message}`, { field });
        }
        const { deviceId } = parsed.data;
        try {
          const answer = await redeemEnrolment(
            opts.ldb,
            opts.ca,
            parsed.data,
            ctx.nowMs,
            opts.certificateDays,
          );
          log.info({ deviceId, notAfter: answer.notAfter }, 'register enrolled');
          return { status: 200, body: answer };
        } catch (err) {
          // Never the token or the request in a log: the device and the code say what happened.
          if (isLedgerError(err)) log.warn({ deviceId, code: err.code }, 'enrolment refused');
          throw err;
        }
      },
    },
  ];
}
