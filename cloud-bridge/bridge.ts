// The register's side of the link to the ledger (wire protocol ◆, docs/sync.md). The journal is the
// outbox: records go out in seq order, in bounded batches, a bounded number of batches in flight, and
// a record counts as synced only when the ledger's retained cumulative ack covers it (a broker PUBACK
// says nothing about the books). After a reconnect, or when acks stop moving, sending starts again from
// the last ack; the ledger dedups by deviceId:epoch:seq. The bridge also installs newer catalogs and
// cashier lists the ledger publishes for the store, and keeps a retained status with a last will.
//
// The bridge only reads the journal (its single writer is the till) and writes one small file of its
// own, `<stateDir>/sync.json`, so the queue's figures are right while offline and after a restart.
import * as path from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import { RegisterError } from '../appliance/errors.js';
import { silentLogger, type Logger } from '../appliance/log.js';
import { backoffDelayMs, realTimers, type Timers } from '../appliance/devices/device.js';
import { DurableJsonAdapter } from '../appliance/store/durable-json.js';
import type { JournalFs } from '../appliance/journal/fs.js';
import { CatalogSchema, type Catalog } from '../appliance/till/catalog.js';
import { CashierListSchema, type CashierList } from '../appliance/till/cashiers.js';
import type { JournalRecord } from './protocol/record.js';
import {
  AckSchema,
  BATCH_LIMITS,
  MAX_PAYLOAD_BYTES,
  WIRE_VERSION,
  WireId,
  topics,
  type Ack,
  type DeviceStatus,
} from './protocol/wire.js';

/** What the bridge needs of the journal; `Journal` satisfies it. */
export interface JournalSource {
  readonly deviceId: string;
  readonly epoch: number;
  /** The last durable record's seq (0 when empty). */
  readonly lastSeq: number;
  /** Durable records from `fromSeq` on, in seq order; the bridge stops iterating when it has enough. */
  read(fromSeq?: number): Iterable<JournalRecord>;
  /**
   * Optional, preferred: the same records as their JCS text (the journal's own payloads), which the
   * bridge sends as they are instead of parsing and writing each one again.
   */
  readPayloads?(fromSeq?: number): Iterable<{ seq: number; payload: string }>;
}

/** What the bridge needs of a record to batch it: its seq, its time stamp, its wire text. */
interface OutgoingRecord {
  seq: number;
  json: string;
  /** The record's time stamp; read only for the first record of a batch. */
  ts(): number;
}

/** A JCS record ends with its seq and ts (keys sorted: clock, events, hash, prevHash, seq, ts). */
const JCS_TAIL = /"seq":(\d+),"ts":(\d+)\}$/;

/** The journal's records from `fromSeq`, as the bridge batches them. */
function* outgoing(journal: JournalSource, fromSeq: number): Generator<OutgoingRecord> {
  if (!journal.readPayloads) {
    for (const record of journal.read(fromSeq)) {
      yield { seq: record.seq, json: JSON.stringify(record), ts: () => record.ts };
    }
    return;
  }
  for (const { seq, payload } of journal.readPayloads(fromSeq)) {
    const tail = JCS_TAIL.exec(payload);
    if (tail && Number(tail[1]) === seq) {
      yield { seq, json: payload, ts: () => Number(tail[2]) };
      continue;
    }
    // Not the journal's own form (never expected): the record, parsed and written as read() gives it.
    const record = JSON.parse(payload) as JournalRecord;
    if (record.seq !== seq) throw new Error(`the journal holds record ${record.seq} where ${seq} belongs`);
    yield { seq, json: JSON.stringify(record), ts: () => record.ts };
  }
}

/** PEM contents (not paths) handed to mqtt.js for an `mqtts://` broker. */
export interface BridgeTls {
  ca?: string | string[] | Buffer | Buffer[];
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Default true: a broker whose certificate does not chain to `ca` is refused. */
  rejectUnauthorized?: boolean;
}

export interface CloudBridgeOptions {
  /** `mqtt://host:1883` or `mqtts://host:8883`. Credentials in it are used but never shown. */
  brokerUrl: string;
  deviceId: string;
  storeId: string;
  journal: JournalSource;
  /** Where `sync.json` (the last ack seen) is kept. */
  stateDir: string;
  /** The file system under `sync.json`: the real one unless the soak's simulated power. */
  fs?: JournalFs;
  /** Called with a validated catalog strictly newer than `currentCatalogVersion()`; store it durably. */
  installCatalog(doc: Catalog): void | Promise<void>;
  installCashiers(doc: CashierList): void | Promise<void>;
  /** The installed version, 0 or undefined when none. */
  currentCatalogVersion(): number | undefined;
  currentCashiersVersion(): number | undefined;
  /** TLS material; a function is called at each connection attempt, so renewed files are picked up. */
  tls?: BridgeTls | (() => BridgeTls);
  /** Default `register-${deviceId}`: stable, so the broker keeps the session (and queued acks). */
  clientId?: string;
  /** MQTT keepalive, seconds. Default 30: a dead link is noticed within ~45 s without chatter on LTE. */
  keepaliveSec?: number;
  /** Give up on a connection attempt after this long, ms. Default 10,000: a TLS handshake over a slow
   *  uplink takes a few seconds; longer only delays the next try. */
  connectTimeoutMs?: number;
  /** Records per batch. Default and upper bound BATCH_LIMITS.maxRecords, 500 (~250 KiB, one ledger
   *  transaction: what the ledger pays per batch is paid least often; decision 0008). */
  batchMaxRecords?: number;
  /** Bytes per batch message. Default and upper bound: BATCH_LIMITS.maxBytes. */
  batchMaxBytes?: number;
  /** Batches sent and not yet covered by a ledger ack. Default 2: one applying at the ledger (which
   *  takes a device's batches one at a time) and one waiting, so the ledger is never idle for a round
   *  trip, while a reconnect resends at most 2 batches. At most 64. */
  maxInFlightBatches?: number;
  /** Resend from the last ack when the ledger's ack has not moved for this long with batches in
   *  flight, ms. Default 10,000. Each further timeout without progress doubles the wait, up to
   *  ackTimeoutMaxMs. */
  ackTimeoutMs?: number;
  /** Default 300,000 (5 min): a ledger that is down for hours gets one window resent every 5 min, not
   *  thousands of duplicates queued at the broker. */
  ackTimeoutMaxMs?: number;
  /** After (re)connecting, wait this long for the retained ack before sending, ms, so what the ledger
   *  acked while we were away is not resent. Default 1000; 0 sends at once. Ends early when it arrives. */
  ackWaitMs?: number;
  /** Status messages no more often than this, ms. Default 1000: one per second per register at most. */
  statusMinIntervalMs?: number;
  /** sync.json written no more often than this, ms. Default 1000: it costs two fsyncs on an SD card,
   *  and a stale one only means a few records resent (and deduped) after a power cut. */
  syncSaveIntervalMs?: number;
  /** How long stop() waits for the broker to take the offline status and DISCONNECT, ms. Default 2000. */
  stopTimeoutMs?: number;
  /** Reconnect backoff. Defaults 1000 ms to 30,000 ms: a fleet coming back after a broker restart
   *  spreads over half a minute instead of arriving at once. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Uniform in [0, 1) for the backoff jitter; seeded in tests. */
  random?: () => number;
  timers?: Timers;
  nowMs?: () => number;
  log?: Logger;
  /** The software version, for the status message (at most 40 characters). */
  version?: string;
  clockTrusted?: () => boolean;
  /** Told when status() changes (the register pushes it to the till's screen). */
  onChange?: (status: BridgeStatus) => void;
}

export interface BridgeStatus {
  state: 'connected' | 'connecting' | 'offline';
  /** Without credentials. */
  brokerUrl: string;
  epoch: number;
  lastSeq: number;
  /** The ledger has booked (or rejected) every record of this epoch up to here. */
  ackedThrough: number;
  /** Records not yet covered by an ack: lastSeq − ackedThrough. */
  pending: number;
  /** Wall-clock ms of record ackedThrough+1, null when nothing is pending. */
  oldestPendingTs: number | null;
  /** Batches sent and not yet covered by an ack. */
  inFlightBatches: number;
  /** Batches published on this connection that the broker has not PUBACKed yet: when this stays up,
   *  the broker is the problem, not the ledger. */
  awaitingPuback: number;
  /** When the ack last moved forward (ms), null when never. */
  lastAckAt: number | null;
  lastError?: string;
  /** The latest records the ledger refused to book (quarantined there), from its ack. */
  rejected: { seq: number; code: string }[];
}

// ---- The link's state machine: pure; the bridge runs the effects of entering each state. ----

export type LinkState = 'idle' | 'connecting' | 'connected' | 'offline' | 'stopped';
export type LinkInput = 'start' | 'connack' | 'closed' | 'retry' | 'stop';

/** Inputs a state does not list leave it unchanged (a late `closed` from a client already dropped). */
const LINK_TRANSITIONS: Record<LinkState, Partial<Record<LinkInput, LinkState>>> = {
  idle: { start: 'connecting', stop: 'stopped' },
  connecting: { connack: 'connected', closed: 'offline', stop: 'stopped' },
  connected: { closed: 'offline', stop: 'stopped' },
  offline: { retry: 'connecting', stop: 'stopped' },
  stopped: {},
};

export function nextLinkState(state: LinkState, input: LinkInput): LinkState {
  return LINK_TRANSITIONS[state][input] ?? state;
}

// ---- What an ack means, as a decision table: pure. ----

/**
 *   ack epoch ≠ ours              → other-epoch (ignored: an old journal's ack, or a new one's not yet)
 *   ackedThrough < ours           → behind      (ignored: acks never move backwards)
 *   ackedThrough = ours           → same        (nothing new is synced)
 *   ours < ackedThrough ≤ lastSeq → advance
 *   ackedThrough > lastSeq        → beyond      (the ledger holds seqs this journal does not: alarm;
 *                                                 advance to lastSeq, which it does cover)
 */
export type AckVerdict = 'other-epoch' | 'behind' | 'same' | 'advance' | 'beyond';

export function judgeAck(
  ours: { epoch: number; ackedThrough: number; lastSeq: number },
  ack: { epoch: number; ackedThrough: number },
): AckVerdict {
  if (ack.epoch !== ours.epoch) return 'other-epoch';
  if (ack.ackedThrough < ours.ackedThrough) return 'behind';
  if (ack.ackedThrough === ours.ackedThrough) return 'same';
  return ack.ackedThrough > ours.lastSeq ? 'beyond' : 'advance';
}

// ---- The bridge. ----

const DEFAULTS = {
  keepaliveSec: 30,
  connectTimeoutMs: 10_000,
  batchMaxRecords: 500,
  maxInFlightBatches: 2,
  ackTimeoutMs: 10_000,
  ackTimeoutMaxMs: 300_000,
  ackWaitMs: 1000,
  statusMinIntervalMs: 1000,
  syncSaveIntervalMs: 1000,
  stopTimeoutMs: 2000,
  backoff: { initialMs: 1000, maxMs: 30_000 },
} as const;

/** Upper bound on maxInFlightBatches: 64 full batches is already 256 MiB in the worst case. */
const MAX_IN_FLIGHT_BOUND = 64;
/** How many of the ack's rejections status() keeps: enough for the screen, bounded. */
const REJECTED_KEPT = 10;
/** Characters of a validator's message kept in a log line. */
const REASON_MAX_CHARS = 200;

const SyncFileSchema = z
  .object({
    v: z.literal(1),
    deviceId: WireId,
    epoch: z.number().int().min(1),
    ackedThrough: z.number().int().min(0),
    lastAckAt: z.number().int().min(0).nullable(),
  })
  .strict();
type SyncFile = z.infer<typeof SyncFileSchema>;

/** One batch sent and not yet covered by an ack. */
interface InFlight {
  firstSeq: number;
  lastSeq: number;
  firstTs: number;
}

type Timer = 'reconnect' | 'ackTimeout' | 'ackWait' | 'status' | 'save';

export class CloudBridge {
  private readonly opts: CloudBridgeOptions;
  private readonly journal: JournalSource;
  private readonly log: Logger;
  private readonly timers: Timers;
  private readonly nowMs: () => number;
  private readonly clientId: string;
  private readonly safeUrl: string;
  private readonly batchMaxRecords: number;
  private readonly batchMaxBytes: number;
  private readonly maxInFlight: number;

  private link: LinkState = 'idle';
  private client: MqttClient | undefined;
  /** Connection attempts since the last successful one: the backoff exponent. */
  private attempt = 0;
  private ackedThrough = 0;
  private lastAckAt: number | null = null;
  private rejected: { seq: number; code: string }[] = [];
  private lastError: string | undefined;
  /** The next seq to send on this connection. */
  private nextSeq = 1;
  private inFlight: InFlight[] = [];
  /** Publishes the broker has not PUBACKed on the current client. */
  private unPubacked = 0;
  /** Sending may start: the retained ack arrived, or ackWaitMs passed, since the last connect. */
  private ready = false;
  /** Ack timeouts in a row without progress: the ack timeout's exponent. */
  private ackTimeouts = 0;
  private readonly pendingTimers = new Map<Timer, unknown>();
  private lastStatusAt = -Infinity;
  private lastStatusKey = '';
  private lastChangeKey = '';
  private oldest: { seq: number; ts: number } | undefined;
  private syncStore: DurableJsonAdapter<SyncFile> | undefined;
  private syncDirty = false;
  private lastSaveAt = -Infinity;
  private readonly installs = { catalog: Promise.resolve(), cashiers: Promise.resolve() };

  constructor(opts: CloudBridgeOptions) {
    this.opts = opts;
    this.journal = opts.journal;
    this.log = opts.log ?? silentLogger;
    this.timers = opts.timers ?? realTimers;
    this.nowMs = opts.nowMs ?? Date.now;
    this.clientId = opts.clientId ?? `register-${opts.deviceId}`;
    this.safeUrl = withoutCredentials(opts.brokerUrl);
    this.batchMaxRecords = opts.batchMaxRecords ?? DEFAULTS.batchMaxRecords;
    this.batchMaxBytes = opts.batchMaxBytes ?? BATCH_LIMITS.maxBytes;
    this.maxInFlight = opts.maxInFlightBatches ?? DEFAULTS.maxInFlightBatches;
  }

  /** Load the last ack seen and start connecting; returns at once (selling never waits on the link). */
  async start(): Promise<void> {
    if (this.link !== 'idle') return;
    this.validate();
    this.loadSync();
    this.enter('start');
  }

  /** Publish the offline status, disconnect cleanly (no last will), save the last ack. */
  async stop(): Promise<void> {
    if (this.link === 'stopped') return;
    const wasConnected = this.link === 'connected';
    this.link = nextLinkState(this.link, 'stop');
    for (const name of [...this.pendingTimers.keys()]) this.clearTimer(name);
    this.saveSync();
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (wasConnected) {
      // Each step also ends when the connection drops under it: mqtt.js then never calls back.
      let closed = false;
      client.once('close', () => (closed = true));
      const step = (run: (done: () => void) => void, what: string) =>
        this.bounded((done) => {
          if (closed) return done();
          client.once('close', done);
          run(done);
        }, what);
      await step(
        (done) =>
          client.publish(
            topics.status(this.opts.deviceId),
            JSON.stringify({ ...this.statusMessage(false, true), ts: this.tsNow() }),
            { qos: 1, retain: true },
            () => done(),
          ),
        'offline status',
      );
      await step((done) => client.end(false, {}, () => done()), 'disconnect');
    }
    client.end(true);
    await this.bounded(
      (done) => void Promise.allSettled([this.installs.catalog, this.installs.cashiers]).then(done),
      'installs',
    );
  }

  /** New records were appended: send them (when connected) and update the figures. */
  notify(): void {
    if (this.link === 'idle' || this.link === 'stopped') return;
    this.pump();
    this.changed();
  }

  /** Everything of the journal's epoch up to this seq is in the ledger's books. */
  syncedThroughSeq(): number {
    return this.ackedThrough;
  }

  status(): BridgeStatus {
    const lastSeq = this.journal.lastSeq;
    const s: BridgeStatus = {
      state: this.link === 'connected' ? 'connected' : this.link === 'connecting' ? 'connecting' : 'offline',
      brokerUrl: this.safeUrl,
      epoch: this.journal.epoch,
      lastSeq,
      ackedThrough: this.ackedThrough,
      pending: Math.max(0, lastSeq - this.ackedThrough),
      oldestPendingTs: this.oldestPendingTs(),
      inFlightBatches: this.inFlight.length,
      awaitingPuback: this.unPubacked,
      lastAckAt: this.lastAckAt,
      rejected: this.rejected.map((r) => ({ ...r })),
    };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    return s;
  }

  // ---- the link ----

  private validate(): void {
    const bad = (what: string) => {
      throw new RegisterError('CONFIG_INVALID', `cloud bridge: ${what}`);
    };
    if (!WireId.safeParse(this.opts.deviceId).success) bad(`device id ${JSON.stringify(this.opts.deviceId)}`);
    if (!WireId.safeParse(this.opts.storeId).success) bad(`store id ${JSON.stringify(this.opts.storeId)}`);
    if (this.journal.deviceId !== this.opts.deviceId)
      bad(`the journal belongs to ${this.journal.deviceId}, not ${this.opts.deviceId}`);
    let url: URL | undefined;
    try {
      url = new URL(this.opts.brokerUrl);
    } catch {
      bad(`broker URL ${JSON.stringify(this.safeUrl)} is not a URL`);
    }
    if (!['mqtt:', 'mqtts:', 'tcp:', 'tls:'].includes(url!.protocol))
      bad(`broker URL ${this.safeUrl}: the scheme must be mqtt:// or mqtts://`);
    const intIn = (name: string, v: number, min: number, max: number) => {
      if (!Number.isInteger(v) || v < min || v > max)
        bad(`${name} must be a whole number from ${min} to ${max}`);
    };
    intIn('batchMaxRecords', this.batchMaxRecords, 1, BATCH_LIMITS.maxRecords);
    intIn('batchMaxBytes', this.batchMaxBytes, 1024, BATCH_LIMITS.maxBytes);
    intIn('maxInFlightBatches', this.maxInFlight, 1, MAX_IN_FLIGHT_BOUND);
  }

  /** Apply an input to the link and run the effects of the state entered. */
  private enter(input: LinkInput): void {
    const before = this.link;
    this.link = nextLinkState(before, input);
    if (this.link === before) return;
    if (this.link === 'connecting') this.openClient();
    else if (this.link === 'offline') this.scheduleReconnect();
    this.changed();
  }

  private openClient(): void {
    const deviceId = this.opts.deviceId;
    const options: IClientOptions = {
      clientId: this.clientId,
      // A persistent session: acks published while we are away wait at the broker.
      clean: false,
      protocolVersion: 4,
      keepalive: this.opts.keepaliveSec ?? DEFAULTS.keepaliveSec,
      connectTimeout: this.opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      // Our own backoff instead of mqtt.js's fixed period: jittered, bounded, driven by injected timers.
      reconnectPeriod: 0,
      resubscribe: false,
      queueQoSZero: false,
      will: {
        topic: topics.status(deviceId),
        // Figures would be stale by the time the will is sent: the ledger has its own.
        payload: Buffer.from(JSON.stringify(this.statusMessage(false, false))),
        qos: 1,
        retain: true,
      },
    };
    let client: MqttClient;
    try {
      // Inside the try: reading certificate files may fail (a renewal half done); that is a failed
      // attempt, retried with backoff, not a crash.
      const tls = typeof this.opts.tls === 'function' ? this.opts.tls() : this.opts.tls;
      client = connect(this.opts.brokerUrl, { ...options, ...tls });
    } catch (err) {
      this.noteError(`cannot connect: ${message(err)}`);
      this.enter('closed');
      return;
    }
    this.client = client;
    this.unPubacked = 0;
    client.on('connect', (connack) => {
      if (client === this.client) this.onConnect(client, connack.sessionPresent);
    });
    client.on('message', (topic, payload) => {
      if (client === this.client) this.onMessage(topic, payload);
    });
    // Always listened to: an 'error' without a listener would throw out of mqtt.js.
    client.on('error', (err) => {
      if (client === this.client) this.noteError(message(err));
    });
    client.on('close', () => {
      if (client === this.client) this.onClose(client);
    });
  }

  private onConnect(client: MqttClient, sessionPresent: boolean): void {
    this.attempt = 0;
    this.lastError = undefined;
    this.inFlight = [];
    this.nextSeq = this.ackedThrough + 1;
    this.ready = false;
    this.log.info({ broker: this.safeUrl, sessionPresent, ackedThrough: this.ackedThrough }, 'connected');
    // Online at once, whatever was sent before: the broker may have published our will meanwhile.
    this.lastStatusKey = '';
    this.lastStatusAt = -Infinity;
    this.enter('connack');
    this.publishStatus();
    const subscriptions = {
      [topics.ack(this.opts.deviceId)]: { qos: 1 as const },
      [topics.catalog(this.opts.storeId)]: { qos: 1 as const },
      [topics.cashiers(this.opts.storeId)]: { qos: 1 as const },
    };
    client.subscribe(subscriptions, (err, granted) => {
      if (client !== this.client) return;
      if (err) this.noteError(`subscribe failed: ${message(err)}`);
      for (const g of granted ?? []) {
        if (g.qos === 128) this.noteError(`the broker refused a subscription to ${g.topic}`);
      }
      const waitMs = this.opts.ackWaitMs ?? DEFAULTS.ackWaitMs;
      if (waitMs <= 0) this.becomeReady();
      else if (!this.ready) this.setTimer('ackWait', waitMs, () => this.becomeReady());
    });
  }

  private onClose(client: MqttClient): void {
    this.client = undefined;
    client.end(true);
    const hadInFlight = this.inFlight.length;
    this.inFlight = [];
    this.ready = false;
    this.clearTimer('ackTimeout');
    this.clearTimer('ackWait');
    this.clearTimer('status');
    // A failed attempt is already logged by its error; a lost connection is news.
    if (this.link === 'connected')
      this.log.warn(
        {
          broker: this.safeUrl,
          inFlightBatches: hadInFlight,
          ackedThrough: this.ackedThrough,
          err: this.lastError,
        },
        'connection lost; everything after the last ack will be resent',
      );
    this.enter('closed');
  }

  private scheduleReconnect(): void {
    const delayMs = backoffDelayMs(this.attempt, {
      initialMs: this.opts.backoff?.initialMs ?? DEFAULTS.backoff.initialMs,
      maxMs: this.opts.backoff?.maxMs ?? DEFAULTS.backoff.maxMs,
      ...(this.opts.random ? { random: this.opts.random } : {}),
    });
    this.attempt++;
    this.log.info({ broker: this.safeUrl, delayMs, attempt: this.attempt }, 'reconnecting after a pause');
    this.setTimer('reconnect', delayMs, () => this.enter('retry'));
  }

  /** Drop the current connection (and mqtt.js's store of unacknowledged publishes with it). */
  private dropConnection(why: string): void {
    const client = this.client;
    if (!client) return;
    this.noteError(why);
    this.onClose(client);
  }

  // ---- sending ----

  private becomeReady(): void {
    this.clearTimer('ackWait');
    if (this.ready || this.link !== 'connected') return;
    this.ready = true;
    this.pump();
  }

  /**
   * Send from nextSeq while the window has room. One pass over the journal, closed before returning,
   * reading no further than the window needs: at most maxInFlight batches are ever held.
   */
  private pump(): void {
    this.send();
    this.armAckTimeout();
  }

  private send(): void {
    const client = this.client;
    if (!client || !this.ready || this.link !== 'connected') return;
    const lastSeq = this.journal.lastSeq;
    if (this.inFlight.length >= this.maxInFlight || this.nextSeq > lastSeq) return;

    const deviceId = this.opts.deviceId;
    const epoch = this.journal.epoch;
    const prefix = `{"v":${WIRE_VERSION},"deviceId":${JSON.stringify(deviceId)},"epoch":${epoch},"records":[`;
    const envelopeBytes = Buffer.byteLength(prefix) + 2;
    let parts: string[] = [];
    let bytes = envelopeBytes;
    let first: OutgoingRecord | undefined;
    let expected = this.nextSeq;

    const flush = (last: number) => {
      const payload = `${prefix}${parts.join(',')}]}`;
      const batch: InFlight = { firstSeq: first!.seq, lastSeq: last, firstTs: first!.ts() };
      this.unPubacked++;
      client.publish(topics.journal(deviceId), payload, { qos: 1 }, (err) => {
        if (client !== this.client) return;
        this.unPubacked--;
        if (err) this.noteError(`publish failed: ${message(err)}`);
        this.changed();
      });
      this.inFlight.push(batch);
      this.nextSeq = last + 1;
      if (batch.firstSeq === this.ackedThrough + 1) this.oldest = { seq: batch.firstSeq, ts: batch.firstTs };
      parts = [];
      bytes = envelopeBytes;
      first = undefined;
    };

    try {
      for (const record of outgoing(this.journal, this.nextSeq)) {
        if (record.seq < expected) continue;
        if (record.seq > expected) {
          // Never expected: registerd prunes only what the ledger acked. Send what is left; the
          // ledger sees the gap and raises its alarm.
          if (parts.length) flush(expected - 1);
          if (this.inFlight.length >= this.maxInFlight) break;
          this.noteError(`the journal no longer holds seqs ${expected} to ${record.seq - 1}`, 'error');
          expected = record.seq;
        }
        const { json } = record;
        const jsonBytes = Buffer.byteLength(json);
        // A comma between records; a record alone is sent even if larger (the journal bounds it far below).
        if (
          parts.length &&
          (parts.length >= this.batchMaxRecords || bytes + 1 + jsonBytes > this.batchMaxBytes)
        ) {
          flush(expected - 1);
          if (this.inFlight.length >= this.maxInFlight) break;
        }
        first ??= record;
        bytes += (parts.length ? 1 : 0) + jsonBytes;
        parts.push(json);
        expected = record.seq + 1;
        if (record.seq >= lastSeq) break;
      }
      if (parts.length) flush(expected - 1);
    } catch (err) {
      this.noteError(`cannot read the journal from seq ${this.nextSeq}: ${message(err)}`, 'error');
    }
  }

  /** While batches are in flight on a connection, a timer waits for the ack to move. */
  private armAckTimeout(): void {
    if (this.inFlight.length === 0 || this.link !== 'connected') {
      this.clearTimer('ackTimeout');
      return;
    }
    if (this.pendingTimers.has('ackTimeout')) return;
    const base = this.opts.ackTimeoutMs ?? DEFAULTS.ackTimeoutMs;
    const max = this.opts.ackTimeoutMaxMs ?? DEFAULTS.ackTimeoutMaxMs;
    const waitMs = Math.min(max, base * 2 ** Math.min(this.ackTimeouts, 30));
    this.setTimer('ackTimeout', waitMs, () => this.onAckTimeout(waitMs));
  }

  private onAckTimeout(waitedMs: number): void {
    if (this.link !== 'connected' || this.inFlight.length === 0) return;
    this.ackTimeouts++;
    const fields = {
      waitedMs,
      ackedThrough: this.ackedThrough,
      inFlightBatches: this.inFlight.length,
      awaitingPuback: this.unPubacked,
    };
    if (this.unPubacked > 0) {
      // The broker itself has not taken what we sent: a fresh connection, not more of the same.
      this.log.warn(fields, 'no ack and no PUBACK: reconnecting');
      this.dropConnection(`no PUBACK from the broker in ${waitedMs} ms`);
      return;
    }
    this.log.warn(fields, 'no ack from the ledger: resending from the last ack');
    this.inFlight = [];
    this.nextSeq = this.ackedThrough + 1;
    this.pump();
    this.changed();
  }

  // ---- receiving ----

  private onMessage(topic: string, payload: Buffer): void {
    try {
      if (topic === topics.ack(this.opts.deviceId)) this.onAckMessage(payload);
      else if (topic === topics.catalog(this.opts.storeId)) this.onDocument('catalog', payload);
      else if (topic === topics.cashiers(this.opts.storeId)) this.onDocument('cashiers', payload);
    } catch (err) {
      // A bad message never takes the bridge down (Invariant 7).
      this.log.error({ dir: 'in', topic, err: message(err) }, 'message handling failed');
    }
  }

  private onAckMessage(payload: Buffer): void {
    const topic = topics.ack(this.opts.deviceId);
    const ack = parsePayload(payload, (d) => AckSchema.parse(d));
    if (ack.ok) this.applyAck(ack.value);
    else
      this.log.warn({ dir: 'in', topic, bytes: payload.length, reason: ack.reason }, 'malformed ack ignored');
    // Whatever it held, the retained ack has arrived: no reason to wait for it any longer.
    this.becomeReady();
  }

  private applyAck(ack: Ack): void {
    const lastSeq = this.journal.lastSeq;
    const verdict = judgeAck({ epoch: this.journal.epoch, ackedThrough: this.ackedThrough, lastSeq }, ack);
    const fields = { dir: 'in', epoch: ack.epoch, ackedThrough: ack.ackedThrough, ours: this.ackedThrough };
    switch (verdict) {
      case 'other-epoch':
        this.log.info({ ...fields, journalEpoch: this.journal.epoch }, 'ack for another epoch ignored');
        return;
      case 'behind':
        this.log.warn(fields, 'ack behind the last one ignored');
        return;
      case 'same':
        this.takeRejections(ack);
        this.changed();
        return;
      case 'beyond':
        this.log.error(
          { ...fields, alarm: 'sync', lastSeq },
          'the ledger acks seqs this journal does not hold: counting only up to the last record',
        );
        break;
      case 'advance':
        break;
    }
    const previous = this.ackedThrough;
    this.takeRejections(ack, previous);
    this.ackedThrough = Math.min(ack.ackedThrough, lastSeq);
    this.lastAckAt = this.nowMs();
    this.ackTimeouts = 0;
    this.inFlight = this.inFlight.filter((b) => b.lastSeq > this.ackedThrough);
    const next = this.inFlight[0];
    if (next && next.firstSeq === this.ackedThrough + 1)
      this.oldest = { seq: next.firstSeq, ts: next.firstTs };
    this.nextSeq = Math.max(this.nextSeq, this.ackedThrough + 1);
    this.syncDirty = true;
    this.scheduleSave();
    this.clearTimer('ackTimeout');
    this.pump();
    this.changed();
  }

  /** Keep the ack's latest rejections for status(); log the ones this ack is the first to cover. */
  private takeRejections(ack: Ack, previous = this.ackedThrough): void {
    this.rejected = [...ack.rejected].sort((a, b) => a.seq - b.seq).slice(-REJECTED_KEPT);
    for (const r of ack.rejected) {
      if (r.seq > previous)
        this.log.warn(
          { dir: 'in', seq: r.seq, code: r.code },
          'the ledger rejected a record (quarantined there)',
        );
    }
    for (const e of ack.exceptions) {
      if (e.seq > previous)
        this.log.info({ dir: 'in', seq: e.seq, kind: e.kind, ref: e.ref }, 'the ledger raised an exception');
    }
  }

  private onDocument(kind: 'catalog' | 'cashiers', payload: Buffer): void {
    const topic = kind === 'catalog' ? topics.catalog(this.opts.storeId) : topics.cashiers(this.opts.storeId);
    if (payload.length === 0) {
      this.log.info({ dir: 'in', topic }, 'retained document cleared; keeping the installed one');
      return;
    }
    const parsed =
      kind === 'catalog'
        ? parsePayload<Catalog | CashierList>(payload, (d) => CatalogSchema.parse(d))
        : parsePayload<Catalog | CashierList>(payload, (d) => CashierListSchema.parse(d));
    if (!parsed.ok) {
      this.log.warn(
        { dir: 'in', topic, bytes: payload.length, reason: parsed.reason },
        `invalid ${kind} ignored`,
      );
      return;
    }
    const doc = parsed.value;
    if (doc.storeId !== this.opts.storeId) {
      this.log.warn({ dir: 'in', topic, storeId: doc.storeId }, `${kind} for another store ignored`);
      return;
    }
    const current = () =>
      (kind === 'catalog' ? this.opts.currentCatalogVersion() : this.opts.currentCashiersVersion()) ?? 0;
    if (doc.version <= current()) {
      this.log.info(
        { dir: 'in', topic, version: doc.version, installed: current() },
        `${kind} not newer; ignored`,
      );
      return;
    }
    // One install at a time per kind, the version checked again when its turn comes, so two
    // deliveries of the same document install it once.
    this.installs[kind] = this.installs[kind].then(async () => {
      const installed = current();
      if (doc.version <= installed) return;
      try {
        if (kind === 'catalog') await this.opts.installCatalog(doc as Catalog);
        else await this.opts.installCashiers(doc as CashierList);
        this.log.info({ dir: 'in', topic, version: doc.version, previous: installed }, `${kind} installed`);
      } catch (err) {
        this.log.error(
          { dir: 'in', topic, version: doc.version, err: message(err) },
          `${kind} not installed`,
        );
      }
    });
  }

  // ---- figures: status, the retained status message, sync.json ----

  private oldestPendingTs(): number | null {
    const from = this.ackedThrough + 1;
    if (from > this.journal.lastSeq) return null;
    if (this.oldest?.seq === from) return this.oldest.ts;
    try {
      for (const record of this.journal.read(from)) {
        this.oldest = { seq: from, ts: record.ts };
        return record.ts;
      }
    } catch (err) {
      // Not through noteError: status() is what called us, and changed() would call status() again.
      const text = `cannot read the journal at seq ${from}: ${message(err)}`;
      if (text !== this.lastError) this.log.error({}, text);
      this.lastError = text;
    }
    return null;
  }

  /** Tell onChange and the status topic when the figures moved. */
  private changed(): void {
    if (this.link === 'stopped') return;
    const s = this.status();
    const key = JSON.stringify(s);
    if (key === this.lastChangeKey) return;
    this.lastChangeKey = key;
    this.publishStatus();
    try {
      this.opts.onChange?.(s);
    } catch (err) {
      this.log.error({ err: message(err) }, 'onChange failed');
    }
  }

  private statusMessage(online: boolean, figures = online): DeviceStatus {
    const base: DeviceStatus = {
      v: WIRE_VERSION,
      online,
      storeId: this.opts.storeId,
      epoch: this.journal.epoch,
    };
    if (this.opts.version !== undefined) base.version = this.opts.version.slice(0, 40);
    if (!figures) return base;
    const lastSeq = this.journal.lastSeq;
    const msg: DeviceStatus = {
      ...base,
      lastSeq,
      lastAckedSeq: this.ackedThrough,
      pending: Math.max(0, lastSeq - this.ackedThrough),
      oldestPendingTs: this.oldestPendingTs(),
    };
    if (this.opts.clockTrusted) msg.clockTrusted = this.opts.clockTrusted();
    return msg;
  }

  /** The retained online status, when it changed, at most once per statusMinIntervalMs. */
  private publishStatus(): void {
    const client = this.client;
    if (!client || this.link !== 'connected') return;
    const msg = this.statusMessage(true);
    const key = JSON.stringify(msg);
    if (key === this.lastStatusKey) return;
    const minMs = this.opts.statusMinIntervalMs ?? DEFAULTS.statusMinIntervalMs;
    const now = this.nowMs();
    if (now - this.lastStatusAt < minMs) {
      if (!this.pendingTimers.has('status'))
        this.setTimer('status', minMs - (now - this.lastStatusAt), () => this.publishStatus());
      return;
    }
    this.clearTimer('status');
    this.lastStatusAt = now;
    this.lastStatusKey = key;
    const payload = JSON.stringify({ ...msg, ts: this.tsNow() });
    client.publish(topics.status(this.opts.deviceId), payload, { qos: 1, retain: true }, (err) => {
      if (err && client === this.client) this.noteError(`status publish failed: ${message(err)}`);
    });
  }

  private loadSync(): void {
    const file = path.join(this.opts.stateDir, 'sync.json');
    this.syncStore = new DurableJsonAdapter<SyncFile>(file, {
      ...(this.opts.fs ? { fs: this.opts.fs } : {}),
      validate: (d) => SyncFileSchema.parse(d),
      onFallback: (reason) => this.log.warn({ file, reason }, 'using the previous copy'),
    });
    let saved: SyncFile | null = null;
    try {
      saved = this.syncStore.read();
    } catch (err) {
      // Only a cache of the ledger's ack: start from 0 and let the retained ack correct it.
      this.log.warn({ file, err: message(err) }, 'sync state unreadable; starting from no ack');
    }
    if (!saved) return;
    if (saved.deviceId !== this.journal.deviceId || saved.epoch !== this.journal.epoch) {
      this.log.info(
        { savedEpoch: saved.epoch, epoch: this.journal.epoch },
        'sync state is for another journal; starting from no ack',
      );
      this.syncDirty = true;
      return;
    }
    const lastSeq = this.journal.lastSeq;
    if (saved.ackedThrough > lastSeq)
      this.log.error(
        { alarm: 'sync', ackedThrough: saved.ackedThrough, lastSeq },
        'saved ack is beyond the journal: counting only up to the last record',
      );
    this.ackedThrough = Math.min(saved.ackedThrough, lastSeq);
    this.lastAckAt = saved.lastAckAt;
    this.nextSeq = this.ackedThrough + 1;
  }

  private scheduleSave(): void {
    const minMs = this.opts.syncSaveIntervalMs ?? DEFAULTS.syncSaveIntervalMs;
    const now = this.nowMs();
    if (now - this.lastSaveAt >= minMs) this.saveSync();
    else if (!this.pendingTimers.has('save'))
      this.setTimer('save', minMs - (now - this.lastSaveAt), () => this.saveSync());
  }

  private saveSync(): void {
    this.clearTimer('save');
    if (!this.syncDirty || !this.syncStore) return;
    this.lastSaveAt = this.nowMs();
    try {
      this.syncStore.write({
        v: 1,
        deviceId: this.journal.deviceId,
        epoch: this.journal.epoch,
        ackedThrough: this.ackedThrough,
        lastAckAt: this.lastAckAt,
      });
      this.syncDirty = false;
    } catch (err) {
      // Not fatal: the retained ack tells us again on the next connect.
      this.log.warn({ err: message(err) }, 'sync state not saved');
    }
  }

  // ---- small helpers ----

  private tsNow(): number {
    return Math.max(0, Math.trunc(this.nowMs()));
  }

  /** Remember the latest problem for status() and log it: once while it repeats (a broker down for hours). */
  private noteError(text: string, level: 'warn' | 'error' = 'warn'): void {
    if (text === this.lastError) return;
    this.lastError = text;
    this.log[level]({ broker: this.safeUrl }, text);
    this.changed();
  }

  private setTimer(name: Timer, ms: number, fn: () => void): void {
    this.clearTimer(name);
    const handle = this.timers.setTimeout(() => {
      if (this.pendingTimers.get(name) !== handle) return;
      this.pendingTimers.delete(name);
      fn();
    }, ms);
    this.pendingTimers.set(name, handle);
  }

  private clearTimer(name: Timer): void {
    const handle = this.pendingTimers.get(name);
    if (handle === undefined) return;
    this.pendingTimers.delete(name);
    this.timers.clearTimeout(handle);
  }

  /** Run an mqtt.js call that takes a callback, waiting at most stopTimeoutMs for it. */
  private bounded(run: (done: () => void) => void, what: string): Promise<void> {
    const limitMs = this.opts.stopTimeoutMs ?? DEFAULTS.stopTimeoutMs;
    return new Promise<void>((resolve) => {
      let settled = false;
      const finish = (timedOut: boolean) => {
        if (settled) return;
        settled = true;
        this.timers.clearTimeout(handle);
        if (timedOut) this.log.warn({ what, limitMs }, 'gave up waiting while stopping');
        resolve();
      };
      const handle = this.timers.setTimeout(() => finish(true), limitMs);
      run(() => finish(false));
    });
  }
}

function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

function message(err: unknown): string {
  return clip(String((err as Error)?.message ?? err));
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > REASON_MAX_CHARS ? `${flat.slice(0, REASON_MAX_CHARS)}…` : flat;
}

/** Size bound, JSON, then the schema; the reason is short and never quotes the payload. */
function parsePayload<T>(
  payload: Buffer,
  parse: (data: unknown) => T,
): { ok: true; value: T } | { ok: false; reason: string } {
  if (payload.length > MAX_PAYLOAD_BYTES)
    return { ok: false, reason: `${payload.length} bytes, over ${MAX_PAYLOAD_BYTES}` };
  let data: unknown;
  try {
    data = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: `not JSON (${message(err)})` };
  }
  try {
    return { ok: true, value: parse(data) };
  } catch (err) {
    if (err instanceof z.ZodError) {
      const issues = err.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
      return { ok: false, reason: clip(`wrong shape: ${issues.join('; ')}`) };
    }
    return { ok: false, reason: message(err) };
  }
}
