// The ledger's tables as kysely sees them. One shape for SQLite and PostgreSQL: money and times are
// integers (minor units, Unix ms) stored as 64-bit columns and read back as JS numbers (open.ts checks
// they are safe integers); flags are 0/1 integers; structured details are JSON text.
import type { Generated } from 'kysely';

/** 0 or 1: SQLite has no boolean, and one representation keeps both dialects' rows identical. */
export type Flag = 0 | 1;

/** Every record the ledger has taken in, once per (device, epoch, seq): the exactly-once gate. */
export interface InboxTable {
  device_id: string;
  epoch: number;
  seq: number;
  hash: string;
  received_at: number;
  /** applied: in the books; rejected: quarantined with a code, acked as rejected. */
  outcome: 'applied' | 'rejected';
}

/** How far each (device, epoch) is applied, and the hash the next record must chain from. */
export interface DeviceCursorTable {
  device_id: string;
  epoch: number;
  last_seq: number;
  /** The last record's hash; '' when it could not be read (a malformed record), so the next link is not checkable. */
  last_hash: string;
  /** The first missing seq of an open gap alarm (raised once, resolved when the records come), or null. */
  gap_from: number | null;
  updated_at: number;
}

export interface DeviceTable {
  device_id: string;
  store_id: string | null;
  last_seen: number;
  online: Generated<Flag>;
  /** Queue depth and oldest pending record as the device last reported them. */
  pending: number | null;
  oldest_pending_ts: number | null;
  /** What the ledger acked last (its own truth), and of which epoch. */
  last_acked_seq: Generated<number>;
  acked_epoch: number | null;
  /** What the device says it has seen acked. */
  device_acked_seq: number | null;
  /** The epoch the device last reported. */
  epoch: number | null;
  version: string | null;
  clock_trusted: Flag | null;
  /** The device's own time stamp of its last status, to ignore a status older than one applied. */
  status_ts: number | null;
  /** When the ledger first received the status of `status_ts`, by its own clock (migration 0004). */
  status_received_at: number | null;
  /** The device's clock minus the ledger's, as its statuses established it; null when not known. */
  clock_skew_ms: number | null;
}

export interface SaleTable {
  sale_id: string;
  device_id: string;
  epoch: number;
  seq: number;
  store_id: string | null;
  receipt_no: number;
  shift_id: string;
  cashier_id: string;
  cashier_name: string;
  currency: string;
  tax_mode: string;
  subtotal_minor: number;
  discount_minor: number;
  tax_minor: number;
  total_minor: number;
  rounding_minor: number;
  paid_minor: number;
  change_minor: number;
  voided_lines: number;
  voided_minor: number;
  /** JSON: the basket discount, or null. */
  basket_discount: string | null;
  /** JSON: [{taxClass, name, rateBp, baseMinor, taxMinor}]. */
  taxes: string;
  started_at: number;
  /** The record's ts: when the sale happened on the device. */
  completed_at: number;
  clock: 'trusted' | 'untrusted';
  booked_at: number;
}

export interface SaleLineTable {
  sale_id: string;
  line_no: number;
  line_id: string;
  sku: string;
  name: string;
  qty: number;
  unit_minor: number;
  tax_class: string;
  /** JSON: the line discount, or null. */
  discount: string | null;
  open_price: Flag;
  gross_minor: number;
  discount_minor: number;
  net_minor: number;
  tax_minor: number;
}

export interface TenderTable {
  sale_id: string;
  tender_no: number;
  kind: 'cash' | 'card';
  amount_minor: number;
  txn: string | null;
  mode: string | null;
  auth_code: string | null;
  /** Masked, always: only the last four digits survive (apply.ts masks whatever arrives). */
  masked_pan: string | null;
  brand: string | null;
}

export interface RefundTable {
  refund_id: string;
  device_id: string;
  epoch: number;
  seq: number;
  store_id: string | null;
  receipt_no: number;
  original_sale_id: string;
  original_receipt_no: number | null;
  cashier_id: string;
  approved_by: string | null;
  currency: string;
  amount_minor: number;
  tender_kind: 'cash' | 'card';
  txn: string | null;
  mode: string | null;
  auth_code: string | null;
  masked_pan: string | null;
  brand: string | null;
  occurred_at: number;
}

export interface RefundLineTable {
  refund_id: string;
  line_no: number;
  line_id: string;
  sku: string;
  name: string;
  qty: number;
  amount_minor: number;
  tax_minor: number;
  tax_class: string | null;
}

export interface ShiftTable {
  shift_id: string;
  device_id: string;
  epoch: number;
  status: 'open' | 'closed';
  opened_by: string;
  opened_at: number;
  float_minor: number;
  /** JSON: {denomination: count}. */
  float_counts: string;
  closed_by: string | null;
  closed_at: number | null;
}

export interface ZReportTable {
  shift_id: string;
  device_id: string;
  epoch: number;
  seq: number;
  z_no: number;
  opened_at: number;
  closed_at: number;
  opened_by: string;
  closed_by: string;
  float_minor: number;
  expected_cash_minor: number;
  counted_cash_minor: number;
  discrepancy_minor: number;
  approved_by: string | null;
  /** JSON: the shift totals as the register computed them. */
  totals: string;
  /** JSON: the counted denominations. */
  counts: string;
}

/** Cash in and out of a drawer other than sales: payouts, paid-ins and no-sale openings. */
export interface CashMovementTable {
  device_id: string;
  epoch: number;
  seq: number;
  event_no: number;
  kind: 'payout' | 'paid_in' | 'no_sale';
  shift_id: string | null;
  cashier_id: string | null;
  approved_by: string | null;
  amount_minor: number;
  reason: string | null;
  occurred_at: number;
}

/** Card payments a terminal approved offline, until the issuer's store-and-forward answer. */
export interface CardOfflineTable {
  txn: string;
  device_id: string;
  epoch: number;
  seq: number;
  sale_id: string | null;
  amount_minor: number | null;
  currency: string | null;
  status: 'held' | 'forwarded' | 'declined';
  approved_at: number | null;
  settled_at: number | null;
  settled_seq: number | null;
}

export interface StockTable {
  sku: string;
  /** Never below zero (a CHECK constraint says so too). */
  on_hand: number;
  updated_at: number;
}

/** Append-only: every change of on-hand, with why and for whom. */
export interface StockMoveTable {
  id: Generated<number>;
  sku: string;
  /** The change applied to on_hand (negative out, positive in). */
  qty: number;
  /** Units a sale wanted beyond what was on hand (an oversell), else 0. */
  short_qty: number;
  reason: 'sale' | 'refund' | 'online_order' | 'receive' | 'count';
  /** The sale, refund, order or delivery it belongs to. */
  ref: string;
  device_id: string | null;
  epoch: number | null;
  seq: number | null;
  order_id: string | null;
  /** When it happened: the record's ts for a device, the order's time for an online order. */
  occurred_at: number;
  /** For a device's move: whether its clock was trusted then (an oversell orders by occurred_at). */
  clock_trusted: Flag | null;
  recorded_at: number;
}

export interface OnlineOrderTable {
  order_id: string;
  store_id: string;
  /** JSON: [{sku, qty}] as placed. */
  lines: string;
  /** placed: stock reserved; backorder: an earlier device sale took a unit it held (an oversell). */
  status: 'placed' | 'backorder';
  created_at: number;
}

export type ExceptionKind = 'oversell' | 'saf_declined' | 'quarantine' | 'chain_break' | 'gap';

export interface ExceptionTable {
  id: Generated<number>;
  kind: ExceptionKind;
  device_id: string | null;
  epoch: number | null;
  seq: number | null;
  /** What it is about: a sale, a txn, a dedup id (≤ 80 characters, the ack carries it). */
  ref: string;
  /** JSON with the particulars. */
  detail: string;
  occurred_at: number;
  raised_at: number;
  resolved_at: number | null;
  resolution: string | null;
}

export interface QuarantineTable {
  id: Generated<number>;
  device_id: string;
  epoch: number | null;
  seq: number | null;
  code: string;
  /** The payload or record as received, cut to a bound, PINs redacted. */
  excerpt: string;
  /** Its full size in bytes. */
  size_bytes: number;
  /** SHA-256 of what was received: the same garbage sent again is kept once. */
  digest: string;
  received_at: number;
}

/** Events this ledger does not book (a newer register's), kept so nothing is lost. */
export interface UnhandledEventTable {
  device_id: string;
  epoch: number;
  seq: number;
  event_no: number;
  type: string;
  body: string;
  received_at: number;
}

export interface StoreDocumentTable {
  store_id: string;
  kind: 'catalog' | 'cashiers';
  version: number;
  body: string;
  published_at: number;
}

/** People who may open the fleet page and use the admin API (ledger/auth/). */
export interface OperatorTable {
  name: string;
  role: 'admin' | 'viewer';
  /** `scrypt$N$r$p$salt$hash`, base64url parts: never the password (ledger/auth/passwords.ts). */
  password_hash: string;
  created_at: number;
  updated_at: number;
}

/** One-time enrolment tokens, one per device, and what each was redeemed for (ledger/enrol/). */
export interface EnrolmentTable {
  device_id: string;
  store_id: string;
  /** sha256 of the token, hex: the token itself is shown once, to the operator, and kept nowhere. */
  token_sha256: string;
  created_at: number;
  expires_at: number;
  redeemed_at: number | null;
  /** sha256 of the public key the certificate was issued for: a retry with that key gets it again. */
  public_key_sha256: string | null;
  certificate: string | null;
  serial: string | null;
}

export interface LedgerSchema {
  inbox: InboxTable;
  device_cursors: DeviceCursorTable;
  devices: DeviceTable;
  sales: SaleTable;
  sale_lines: SaleLineTable;
  tenders: TenderTable;
  refunds: RefundTable;
  refund_lines: RefundLineTable;
  shifts: ShiftTable;
  z_reports: ZReportTable;
  cash_movements: CashMovementTable;
  card_offline: CardOfflineTable;
  stock: StockTable;
  stock_moves: StockMoveTable;
  online_orders: OnlineOrderTable;
  exceptions: ExceptionTable;
  quarantine: QuarantineTable;
  events_unhandled: UnhandledEventTable;
  store_documents: StoreDocumentTable;
  operators: OperatorTable;
  enrolments: EnrolmentTable;
}
