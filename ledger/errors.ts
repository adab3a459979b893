// One error class for the ledger, with stable codes grouped by area. Callers (the HTTP API, the MQTT
// consumer) branch on `code`, never on message text; the codes are part of the ledger's API ◆.

export const LedgerErrorCodes = {
  // storage
  BAD_DB_URL: 'the database URL is neither sqlite:PATH nor postgres://…',
  MIGRATION_FAILED: 'the database schema could not be brought up to date',
  // requests from people and the API
  BAD_PARAMS: 'the request is missing something or has a wrong value',
  NOT_FOUND: 'no such thing in the books',
  // stock and online orders
  STOCK_SHORT: 'not enough stock for every line: nothing was reserved',
  ORDER_CONFLICT: 'an order with this id was placed with different lines',
  // exceptions
  ALREADY_RESOLVED: 'the exception was resolved already',
  // devices and store documents
  BAD_STATUS: 'the device status payload is not valid',
  BAD_DOCUMENT: 'the store document is not valid',
  VERSION_NOT_NEWER: 'a document of this version or a newer one is stored already',
  // operators and their sessions (ledger/auth/)
  UNAUTHENTICATED: 'log in first: this needs an operator session or an API token',
  FORBIDDEN: "the operator's role does not allow this",
  CSRF: 'a change needs the X-CSRF-Token header of the session',
  BAD_LOGIN: 'wrong operator name or password',
  TOO_MANY_ATTEMPTS: 'too many failed logins for this name: wait and try again',
  OPERATOR_EXISTS: 'an operator of this name exists already',
  BUSY: 'the ledger is at its bound for this (live page clients, sessions): try again later',
  // enrolment of registers by one-time token (ledger/enrol/)
  ENROL_REFUSED: 'no enrolment for this device and token',
  ENROL_EXPIRED: 'the enrolment token has expired: ask for a new one (ledger enrol add)',
  ENROL_USED: 'the enrolment token was used already, for another key',
  ENROL_UNAVAILABLE: 'this ledger does not enrol registers (no --enrol-ca-cert and --enrol-ca-key)',
  ENROLMENT_EXISTS: 'the device has an enrolment already (give --replace to issue a new token)',
} as const;

export type LedgerErrorCode = keyof typeof LedgerErrorCodes;

export class LedgerError extends Error {
  readonly code: LedgerErrorCode;
  readonly details: Record<string, unknown>;

  constructor(
    code: LedgerErrorCode,
    message?: string,
    details: Record<string, unknown> = {},
    cause?: unknown,
  ) {
    super(message ?? LedgerErrorCodes[code], cause === undefined ? undefined : { cause });
    this.name = 'LedgerError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: LedgerErrorCode; message: string; details?: Record<string, unknown> } {
    return Object.keys(this.details).length
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

export function isLedgerError(err: unknown, code?: LedgerErrorCode): err is LedgerError {
  return err instanceof LedgerError && (code === undefined || err.code === code);
}
