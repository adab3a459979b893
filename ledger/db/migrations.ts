// The ledger's schema, as migrations in code (no files to ship or find at run time), written once with
// kysely's schema builder for both dialects. Money and times are `bigint` (64-bit: INTEGER affinity in
// SQLite, int8 in PostgreSQL); the only dialect difference is how an id column counts itself.
import { sql, type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import { LedgerError } from '../errors.js';

export type Dialect = 'sqlite' | 'postgres';

/** A counting primary key: SQLite's rowid alias, PostgreSQL's identity column. */
function withId<T extends string>(
  table: CreateTableBuilder<T, never>,
  dialect: Dialect,
): CreateTableBuilder<T, 'id'> {
  return dialect === 'sqlite'
    ? table.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    : table.addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity());
}

const notNull = (c: ColumnDefinitionBuilder) => c.notNull();

function books(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      const s = db.schema;
      await s
        .createTable('inbox')
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('hash', 'text', notNull)
        .addColumn('received_at', 'bigint', notNull)
        .addColumn('outcome', 'text', notNull)
        .addPrimaryKeyConstraint('inbox_pk', ['device_id', 'epoch', 'seq'])
        .execute();

      await s
        .createTable('device_cursors')
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('last_seq', 'bigint', notNull)
        .addColumn('last_hash', 'text', notNull)
        .addColumn('gap_from', 'bigint')
        .addColumn('updated_at', 'bigint', notNull)
        .addPrimaryKeyConstraint('device_cursors_pk', ['device_id', 'epoch'])
        .execute();

      await s
        .createTable('devices')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('store_id', 'text')
        .addColumn('last_seen', 'bigint', notNull)
        .addColumn('online', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('pending', 'bigint')
        .addColumn('oldest_pending_ts', 'bigint')
        .addColumn('last_acked_seq', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('acked_epoch', 'bigint')
        .addColumn('device_acked_seq', 'bigint')
        .addColumn('epoch', 'bigint')
        .addColumn('version', 'text')
        .addColumn('clock_trusted', 'integer')
        .addColumn('status_ts', 'bigint')
        .execute();

      await s
        .createTable('sales')
        .addColumn('sale_id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('store_id', 'text')
        .addColumn('receipt_no', 'bigint', notNull)
        .addColumn('shift_id', 'text', notNull)
        .addColumn('cashier_id', 'text', notNull)
        .addColumn('cashier_name', 'text', notNull)
        .addColumn('currency', 'text', notNull)
        .addColumn('tax_mode', 'text', notNull)
        .addColumn('subtotal_minor', 'bigint', notNull)
        .addColumn('discount_minor', 'bigint', notNull)
        .addColumn('tax_minor', 'bigint', notNull)
        .addColumn('total_minor', 'bigint', notNull)
        .addColumn('rounding_minor', 'bigint', notNull)
        .addColumn('paid_minor', 'bigint', notNull)
        .addColumn('change_minor', 'bigint', notNull)
        .addColumn('voided_lines', 'bigint', notNull)
        .addColumn('voided_minor', 'bigint', notNull)
        .addColumn('basket_discount', 'text')
        .addColumn('taxes', 'text', notNull)
        .addColumn('started_at', 'bigint', notNull)
        .addColumn('completed_at', 'bigint', notNull)
        .addColumn('clock', 'text', notNull)
        .addColumn('booked_at', 'bigint', notNull)
        .execute();
      await s.createIndex('sales_by_time').on('sales').columns(['completed_at', 'sale_id']).execute();
      await s
        .createIndex('sales_by_device')
        .on('sales')
        .columns(['device_id', 'completed_at', 'sale_id'])
        .execute();
      await s
        .createIndex('sales_by_store')
        .on('sales')
        .columns(['store_id', 'completed_at', 'sale_id'])
        .execute();

      await s
        .createTable('sale_lines')
        .addColumn('sale_id', 'text', (c) => c.notNull().references('sales.sale_id'))
        .addColumn('line_no', 'integer', notNull)
        .addColumn('line_id', 'text', notNull)
        .addColumn('sku', 'text', notNull)
        .addColumn('name', 'text', notNull)
        .addColumn('qty', 'bigint', notNull)
        .addColumn('unit_minor', 'bigint', notNull)
        .addColumn('tax_class', 'text', notNull)
        .addColumn('discount', 'text')
        .addColumn('open_price', 'integer', notNull)
        .addColumn('gross_minor', 'bigint', notNull)
        .addColumn('discount_minor', 'bigint', notNull)
        .addColumn('net_minor', 'bigint', notNull)
        .addColumn('tax_minor', 'bigint', notNull)
        .addPrimaryKeyConstraint('sale_lines_pk', ['sale_id', 'line_no'])
        .execute();
      await s.createIndex('sale_lines_by_sku').on('sale_lines').column('sku').execute();

      await s
        .createTable('tenders')
        .addColumn('sale_id', 'text', (c) => c.notNull().references('sales.sale_id'))
        .addColumn('tender_no', 'integer', notNull)
        .addColumn('kind', 'text', notNull)
        .addColumn('amount_minor', 'bigint', notNull)
        .addColumn('txn', 'text')
        .addColumn('mode', 'text')
        .addColumn('auth_code', 'text')
        .addColumn('masked_pan', 'text')
        .addColumn('brand', 'text')
        .addPrimaryKeyConstraint('tenders_pk', ['sale_id', 'tender_no'])
        .execute();

      await s
        .createTable('refunds')
        .addColumn('refund_id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('store_id', 'text')
        .addColumn('receipt_no', 'bigint', notNull)
        .addColumn('original_sale_id', 'text', notNull)
        .addColumn('original_receipt_no', 'bigint')
        .addColumn('cashier_id', 'text', notNull)
        .addColumn('approved_by', 'text')
        .addColumn('currency', 'text', notNull)
        .addColumn('amount_minor', 'bigint', notNull)
        .addColumn('tender_kind', 'text', notNull)
        .addColumn('txn', 'text')
        .addColumn('mode', 'text')
        .addColumn('auth_code', 'text')
        .addColumn('masked_pan', 'text')
        .addColumn('brand', 'text')
        .addColumn('occurred_at', 'bigint', notNull)
        .execute();
      await s.createIndex('refunds_by_sale').on('refunds').column('original_sale_id').execute();

      await s
        .createTable('refund_lines')
        .addColumn('refund_id', 'text', (c) => c.notNull().references('refunds.refund_id'))
        .addColumn('line_no', 'integer', notNull)
        .addColumn('line_id', 'text', notNull)
        .addColumn('sku', 'text', notNull)
        .addColumn('name', 'text', notNull)
        .addColumn('qty', 'bigint', notNull)
        .addColumn('amount_minor', 'bigint', notNull)
        .addColumn('tax_minor', 'bigint', notNull)
        .addColumn('tax_class', 'text')
        .addPrimaryKeyConstraint('refund_lines_pk', ['refund_id', 'line_no'])
        .execute();

      await s
        .createTable('shifts')
        .addColumn('shift_id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('status', 'text', notNull)
        .addColumn('opened_by', 'text', notNull)
        .addColumn('opened_at', 'bigint', notNull)
        .addColumn('float_minor', 'bigint', notNull)
        .addColumn('float_counts', 'text', notNull)
        .addColumn('closed_by', 'text')
        .addColumn('closed_at', 'bigint')
        .execute();

      await s
        .createTable('z_reports')
        .addColumn('shift_id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('z_no', 'bigint', notNull)
        .addColumn('opened_at', 'bigint', notNull)
        .addColumn('closed_at', 'bigint', notNull)
        .addColumn('opened_by', 'text', notNull)
        .addColumn('closed_by', 'text', notNull)
        .addColumn('float_minor', 'bigint', notNull)
        .addColumn('expected_cash_minor', 'bigint', notNull)
        .addColumn('counted_cash_minor', 'bigint', notNull)
        .addColumn('discrepancy_minor', 'bigint', notNull)
        .addColumn('approved_by', 'text')
        .addColumn('totals', 'text', notNull)
        .addColumn('counts', 'text', notNull)
        .execute();

      await s
        .createTable('cash_movements')
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('event_no', 'integer', notNull)
        .addColumn('kind', 'text', notNull)
        .addColumn('shift_id', 'text')
        .addColumn('cashier_id', 'text')
        .addColumn('approved_by', 'text')
        .addColumn('amount_minor', 'bigint', notNull)
        .addColumn('reason', 'text')
        .addColumn('occurred_at', 'bigint', notNull)
        .addPrimaryKeyConstraint('cash_movements_pk', ['device_id', 'epoch', 'seq', 'event_no'])
        .execute();

      await s
        .createTable('card_offline')
        .addColumn('txn', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('sale_id', 'text')
        .addColumn('amount_minor', 'bigint')
        .addColumn('currency', 'text')
        .addColumn('status', 'text', notNull)
        .addColumn('approved_at', 'bigint')
        .addColumn('settled_at', 'bigint')
        .addColumn('settled_seq', 'bigint')
        .execute();
      await s.createIndex('card_offline_by_status').on('card_offline').column('status').execute();

      await s
        .createTable('stock')
        .addColumn('sku', 'text', (c) => c.primaryKey())
        .addColumn('on_hand', 'bigint', notNull)
        .addColumn('updated_at', 'bigint', notNull)
        .addCheckConstraint('stock_on_hand_not_negative', sql`on_hand >= 0`)
        .execute();

      await withId(s.createTable('stock_moves'), dialect)
        .addColumn('sku', 'text', notNull)
        .addColumn('qty', 'bigint', notNull)
        .addColumn('short_qty', 'bigint', notNull)
        .addColumn('reason', 'text', notNull)
        .addColumn('ref', 'text', notNull)
        .addColumn('device_id', 'text')
        .addColumn('epoch', 'bigint')
        .addColumn('seq', 'bigint')
        .addColumn('order_id', 'text')
        .addColumn('occurred_at', 'bigint', notNull)
        .addColumn('clock_trusted', 'integer')
        .addColumn('recorded_at', 'bigint', notNull)
        .execute();
      await s.createIndex('stock_moves_by_sku').on('stock_moves').columns(['sku', 'id']).execute();

      await s
        .createTable('online_orders')
        .addColumn('order_id', 'text', (c) => c.primaryKey())
        .addColumn('store_id', 'text', notNull)
        .addColumn('lines', 'text', notNull)
        .addColumn('status', 'text', notNull)
        .addColumn('created_at', 'bigint', notNull)
        .execute();

      await withId(s.createTable('exceptions'), dialect)
        .addColumn('kind', 'text', notNull)
        .addColumn('device_id', 'text')
        .addColumn('epoch', 'bigint')
        .addColumn('seq', 'bigint')
        .addColumn('ref', 'text', notNull)
        .addColumn('detail', 'text', notNull)
        .addColumn('occurred_at', 'bigint', notNull)
        .addColumn('raised_at', 'bigint', notNull)
        .addColumn('resolved_at', 'bigint')
        .addColumn('resolution', 'text')
        .execute();
      await s
        .createIndex('exceptions_by_device')
        .on('exceptions')
        .columns(['device_id', 'epoch', 'id'])
        .execute();
      await s.createIndex('exceptions_by_kind').on('exceptions').columns(['kind', 'id']).execute();

      await withId(s.createTable('quarantine'), dialect)
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint')
        .addColumn('seq', 'bigint')
        .addColumn('code', 'text', notNull)
        .addColumn('excerpt', 'text', notNull)
        .addColumn('size_bytes', 'bigint', notNull)
        .addColumn('digest', 'text', notNull)
        .addColumn('received_at', 'bigint', notNull)
        .execute();
      await s
        .createIndex('quarantine_by_device')
        .on('quarantine')
        .columns(['device_id', 'epoch', 'seq'])
        .execute();
      await s.createIndex('quarantine_by_digest').on('quarantine').columns(['device_id', 'digest']).execute();

      await s
        .createTable('events_unhandled')
        .addColumn('device_id', 'text', notNull)
        .addColumn('epoch', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('event_no', 'integer', notNull)
        .addColumn('type', 'text', notNull)
        .addColumn('body', 'text', notNull)
        .addColumn('received_at', 'bigint', notNull)
        .addPrimaryKeyConstraint('events_unhandled_pk', ['device_id', 'epoch', 'seq', 'event_no'])
        .execute();

      await s
        .createTable('store_documents')
        .addColumn('store_id', 'text', notNull)
        .addColumn('kind', 'text', notNull)
        .addColumn('version', 'bigint', notNull)
        .addColumn('body', 'text', notNull)
        .addColumn('published_at', 'bigint', notNull)
        .addPrimaryKeyConstraint('store_documents_pk', ['store_id', 'kind', 'version'])
        .execute();
    },

    async down(db: Kysely<unknown>) {
      for (const table of [
        'store_documents',
        'events_unhandled',
        'quarantine',
        'exceptions',
        'online_orders',
        'stock_moves',
        'stock',
        'card_offline',
        'cash_movements',
        'z_reports',
        'shifts',
        'refund_lines',
        'refunds',
        'tenders',
        'sale_lines',
        'sales',
        'devices',
        'device_cursors',
        'inbox',
      ])
        await db.schema.dropTable(table).execute();
    },
  };
}

/** Operator accounts for the fleet page and the admin API. Sessions live in memory, not here. */
const operators: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('operators')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('role', 'text', notNull)
      .addColumn('password_hash', 'text', notNull)
      .addColumn('created_at', 'bigint', notNull)
      .addColumn('updated_at', 'bigint', notNull)
      .addCheckConstraint('operators_role', sql`role in ('admin', 'viewer')`)
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('operators').execute();
  },
};

/** Enrolment tokens for registers provisioned without a certificate (ledger/enrol/). */
const enrolments: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('enrolments')
      .addColumn('device_id', 'text', (c) => c.primaryKey())
      .addColumn('store_id', 'text', notNull)
      .addColumn('token_sha256', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'bigint', notNull)
      .addColumn('expires_at', 'bigint', notNull)
      .addColumn('redeemed_at', 'bigint')
      .addColumn('public_key_sha256', 'text')
      .addColumn('certificate', 'text')
      .addColumn('serial', 'text')
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('enrolments').execute();
  },
};

/**
 * When a device's status arrived, beside the time stamp it carries, and the clock skew judged from the
 * two (fleet/status-timing.ts): a last will or a late retained status is no longer taken for a clock
 * hours off. Rows from before have neither; their next status fills them in.
 */
const statusReceipt: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('devices').addColumn('status_received_at', 'bigint').execute();
    await db.schema.alterTable('devices').addColumn('clock_skew_ms', 'bigint').execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.alterTable('devices').dropColumn('clock_skew_ms').execute();
    await db.schema.alterTable('devices').dropColumn('status_received_at').execute();
  },
};

/** The migrations by name; names sort in the order they run. */
export function ledgerMigrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_books': books(dialect),
    '0002_operators': operators,
    '0003_enrolments': enrolments,
    '0004_status_receipt': statusReceipt,
  };
}

export function migrationProvider(dialect: Dialect): MigrationProvider {
  return { getMigrations: async () => ledgerMigrations(dialect) };
}

/** Bring the schema up to date; a failure names the migration and keeps the cause. */
export async function migrateToLatest(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  // kysely looks for its bookkeeping tables in every schema unless told which: with another ledger's
  // schema in the same database (tests, several stores) it would find theirs. Ours is the search path's.
  const schema =
    dialect === 'postgres'
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema
      : undefined;
  const migrator = new Migrator({
    db,
    provider: migrationProvider(dialect),
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new LedgerError(
      'MIGRATION_FAILED',
      `migration ${failed ?? '(unknown)'} failed: ${String((error as Error)?.message ?? error)}`,
      { migration: failed },
      error,
    );
  }
}
