// One error class for the appliance, with stable codes grouped by area. Callers branch on `code`,
// never on message text; the codes are part of the control-socket contract and the operator docs.

export const ErrorCodes = {
  CONFIG_INVALID: 'a setting is missing or invalid',
  // journal: refusing to open
  JOURNAL_FOREIGN_FILE: 'a file in the journal directory is not ours',
  JOURNAL_BAD_HEADER: 'a segment header is damaged',
  JOURNAL_UNKNOWN_VERSION: 'a segment was written by an unknown format version',
  JOURNAL_FOREIGN_DEVICE: 'the journal belongs to another device',
  JOURNAL_EPOCH_MISMATCH: 'the journal belongs to another epoch',
  JOURNAL_CORRUPT: 'the journal is damaged beyond a torn tail',
  JOURNAL_BAD_CHECKPOINT: 'the checkpoint is damaged and the journal cannot be replayed without it',
  // journal: refusing to append
  JOURNAL_RECORD_TOO_LARGE: 'the record is larger than the journal allows',
  JOURNAL_BAD_RECORD: 'the record cannot be encoded',
  JOURNAL_DISK_FULL: 'the data partition is full',
  JOURNAL_WRITE_FAILED: 'a journal write failed; nothing was recorded',
  JOURNAL_FATAL: 'the journal hit an unrecoverable I/O error and must be reopened',
  JOURNAL_CLOSED: 'the journal is closed',
  // control socket
  CONTROL_UNAVAILABLE: 'registerd is not answering on the control socket',
  CONTROL_BAD_RESPONSE: 'registerd sent an answer that is not valid JSON',
  USAGE: 'the command line is wrong',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class RegisterError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message ?? ErrorCodes[code], cause === undefined ? undefined : { cause });
    this.name = 'RegisterError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return Object.keys(this.details).length
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

export function isRegisterError(err: unknown, code?: ErrorCode): err is RegisterError {
  return err instanceof RegisterError && (code === undefined || err.code === code);
}
