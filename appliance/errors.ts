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
  // journal: moving a journal to another card (registerctl journal export / import)
  JOURNAL_EXPORT_FAILED: 'nothing exported: no record there verifies, or the journal is too large',
  JOURNAL_ARCHIVE_BAD: 'the file is not a journal archive, or it is damaged; nothing was written',
  JOURNAL_ARCHIVE_PARTIAL: 'the archive holds only part of a journal; it is not imported',
  JOURNAL_IMPORT_TARGET_IN_USE: 'the state directory holds another journal, or registerd is running on it',
  // small durable documents (catalog cache, cashier list, settings)
  STORE_UNREADABLE: 'neither a stored document nor its previous copy can be read back',
  STORE_TOO_LARGE: 'a document is larger than its store allows; nothing was written',
  STORE_BAD_DOCUMENT: 'a document cannot be stored as JSON that reads back; nothing was written',
  STORE_WRITE_FAILED: 'a stored document could not be written; the write is not acknowledged',
  // till: what a cashier is told
  BAD_PARAMS: 'the request is missing something or has a wrong value',
  NO_CATALOG: 'no catalog yet',
  NO_CASHIERS: 'no cashier list yet',
  NOT_LOGGED_IN: 'clock in first',
  WRONG_PIN: 'wrong cashier or PIN',
  LOCKED_OUT: 'too many wrong PINs: locked out for a while',
  MANAGER_REQUIRED: "this needs a manager's approval",
  APPROVAL_REFUSED: 'the manager approval was not accepted',
  NO_SHIFT: 'open a shift first',
  SHIFT_OPEN: 'a shift is already open',
  NO_SALE: 'no sale in progress',
  SALE_IN_PROGRESS: 'a sale is in progress',
  SALE_TENDERED: 'payment has started on this sale',
  SALE_FULL: 'the sale has as many lines as it can hold',
  EMPTY_SALE: 'the sale has no lines',
  BAD_BARCODE: 'the barcode is not valid',
  UNKNOWN_BARCODE: 'no product has that barcode',
  UNKNOWN_SKU: 'no product has that SKU',
  PRICE_REQUIRED: 'this item needs a price keyed in',
  LINE_NOT_FOUND: 'no such line',
  DISCOUNT_TOO_HIGH: 'the discount is more than the amount',
  CARD_PENDING: 'a card payment is still being settled',
  CARD_DECLINED: 'the card payment did not go through: take another tender',
  CARD_OFFLINE_LIMIT: 'card payments are offline and this one is over an offline limit: take another tender',
  NOT_ENOUGH_CASH: 'the drawer does not hold that much',
  RECEIPT_NOT_FOUND: 'no such receipt on this register',
  NOTHING_TO_REFUND: 'everything on that receipt was refunded already',
  REFUND_EXCEEDS_SALE: 'that is more than was sold',
  // devices
  DEVICE_DOWN: 'the device is not connected; it is being retried',
  DEVICE_TIMEOUT: 'the device did not answer in time',
  DEVICE_BUSY: 'the device is busy with another request',
  DEVICE_PROTOCOL: 'the device sent something that breaks its protocol',
  HID_UNAVAILABLE: 'the USB HID library cannot be loaded (is libusb installed?)',
  PRINTER_NOT_READY: 'the printer is not ready; the receipt waits for a reprint',
  // control socket
  CONTROL_UNAVAILABLE: 'registerd is not answering on the control socket',
  CONTROL_BAD_RESPONSE: 'registerd sent an answer that is not valid JSON',
  USAGE: 'the command line is wrong',
  // control socket: answers from registerd's side
  BAD_REQUEST: 'the request is not a JSON object with a string method and a number or string id',
  LINE_TOO_LONG: 'the request line is longer than the control socket accepts',
  BUSY: 'registerd has too many connections or requests waiting; try again',
  INTERNAL: 'registerd failed unexpectedly; its log has the details',
  UNKNOWN_METHOD: 'registerd has no such method',
  CONTROL_SOCKET_IN_USE: 'another registerd is already answering on the control socket',
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
