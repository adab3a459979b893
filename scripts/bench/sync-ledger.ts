// The sync benchmark's ledgers and the traces it leaves on shared services.
//
// On the embedded default the ledger is startLedger itself. On the Mosquitto that every suite and
// developer here shares, it is startLedger's own parts (one books handle, LedgerConsumers applying with
// applyJournalMessage and recordDeviceStatus) with two differences that keep other people's traffic
// apart, as the consumer suite's Mosquitto test does: a share group of this run's own (startLedger's is
// always `ledger`, and would split another ledger's devices with ours), and an inbox that books only
// this run's devices and answers the rest with no ack (startLedger would book them and overwrite their
// retained acks). What is measured, consumer to commit to ack, is the same code.
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { connectAsync } from 'mqtt';
import pg from 'pg';
import type { Logger } from '../../appliance/log.js';
import { applyJournalMessage, CheckedJournalMessage } from '../../ledger/apply.js';
import { applyInSeqOrder } from '../../ledger/seq-order.js';
import { LedgerConsumer } from '../../ledger/consumer.js';
import { openLedgerDb, type LedgerDb } from '../../ledger/db/open.js';
import { startLedger } from '../../ledger/main.js';
import { recordDeviceStatus } from '../../ledger/queries.js';

export interface BenchLedger {
  /** Where the bridges connect. */
  mqttUrl: string;
  ldb: LedgerDb;
  /** Consumer client ids, whose broker sessions outlive the ledger (clean: false). */
  clientIds: string[];
  stop(): Promise<void>;
}

/** The single-store default: startLedger with a SQLite file and its embedded aedes on a free port. */
export async function startEmbeddedLedger(dir: string, clientId: string, log: Logger): Promise<BenchLedger> {
  const ledger = await startLedger(
    { db: `sqlite:${path.join(dir, 'ledger.db')}`, mqtt: 'embedded:0', http: 0, host: '127.0.0.1', clientId },
    { log },
  );
  return { mqttUrl: ledger.mqttUrl, ldb: ledger.ldb, clientIds: [], stop: () => ledger.stop() };
}

export interface SharedBrokerLedgerOptions {
  brokerUrl: string;
  dbUrl: string;
  /** Consumer i is `${clientId}-${i}`, as in startLedger; also names the share group. */
  clientId: string;
  /** More than one subscribes through `$share/${clientId}/…`. */
  consumers: number;
  /** This run's devices: everything else on the broker is taken off it and left alone. */
  ours(deviceId: string): boolean;
  log: Logger;
}

/** The scale-out ledger (PostgreSQL, an external broker) on a shared broker: see the header. */
export async function startSharedBrokerLedger(o: SharedBrokerLedgerOptions): Promise<BenchLedger> {
  const ldb = await openLedgerDb(o.dbUrl);
  const consumers: LedgerConsumer[] = [];
  const stop = async () => {
    for (const c of consumers) await c.stop();
    await ldb.close();
  };
  const shared = o.consumers > 1;
  try {
    for (let i = 0; i < o.consumers; i++) {
      const consumer = new LedgerConsumer({
        url: o.brokerUrl,
        clientId: `${o.clientId}-${i}`,
        shared,
        ...(shared ? { shareGroup: o.clientId } : {}),
        log: o.log,
        inbox: {
          check: (deviceId, payload) => CheckedJournalMessage.check(deviceId, payload),
          journal: (deviceId, payload, nowMs, checked) => {
            if (!o.ours(deviceId)) return Promise.resolve({ ack: null });
            const message = checked instanceof CheckedJournalMessage ? checked : payload;
            return shared
              ? applyInSeqOrder(ldb, deviceId, message, nowMs)
              : applyJournalMessage(ldb, deviceId, message, nowMs);
          },
          status: (deviceId, payload, nowMs) =>
            o.ours(deviceId) ? recordDeviceStatus(ldb, deviceId, payload, nowMs) : Promise.resolve(null),
        },
      });
      consumers.push(consumer);
      await consumer.start();
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { mqttUrl: o.brokerUrl, ldb, clientIds: consumers.map((_, i) => `${o.clientId}-${i}`), stop };
}

/** A PostgreSQL schema of its own, as the ledger suites make them; `url` puts it first on search_path. */
export async function freshPgSchema(
  baseUrl: string,
  tag: string,
): Promise<{ url: string; schema: string; drop(): Promise<void> }> {
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  const schema = `bench_sync_${tag}_${randomBytes(4).toString('hex')}`;
  try {
    await admin.query(`create schema "${schema}"`);
  } catch (err) {
    await admin.end();
    throw err;
  }
  const options = `options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    url: `${baseUrl}${baseUrl.includes('?') ? '&' : '?'}${options}`,
    schema,
    drop: async () => {
      try {
        await admin.query(`drop schema "${schema}" cascade`);
      } finally {
        await admin.end();
      }
    },
  };
}

/** ms any one clean-up connection or publish may take on the shared broker. */
const CLEANUP_TIMEOUT_MS = 5_000;

/**
 * Leave the shared broker as found: end the persistent sessions this run made (a clean connect drops
 * one, with what the broker queued for it), then clear the retained messages it created (an empty
 * retained payload deletes one). Sessions first, or the broker would queue the clearing for them.
 */
export async function clearBrokerTraces(
  brokerUrl: string,
  traces: { clientIds: readonly string[]; retainedTopics: readonly string[]; clearClientId: string },
  log: (msg: string) => void,
): Promise<void> {
  const opts = { clean: true, reconnectPeriod: 0, connectTimeout: CLEANUP_TIMEOUT_MS };
  let failures = 0;
  for (const clientId of traces.clientIds) {
    try {
      const c = await connectAsync(brokerUrl, { ...opts, clientId });
      await c.endAsync();
    } catch (err) {
      failures++;
      log(`session ${clientId} not cleared: ${String((err as Error)?.message ?? err)}`);
    }
  }
  if (traces.retainedTopics.length) {
    const c = await connectAsync(brokerUrl, { ...opts, clientId: traces.clearClientId });
    try {
      await within(
        Promise.all(
          traces.retainedTopics.map((topic) =>
            c.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true }),
          ),
        ),
        CLEANUP_TIMEOUT_MS,
        'clearing retained messages',
      );
    } finally {
      await c.endAsync();
    }
  }
  log(
    `broker traces cleared: ${traces.clientIds.length - failures}/${traces.clientIds.length} sessions, ` +
      `${traces.retainedTopics.length} retained topics`,
  );
}

/** `promise`, or a rejection naming `what` once `ms` have passed without it settling. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
