// The ledger's MQTT consumer: takes journal batches and device status off the broker, hands them to the
// books, publishes the cumulative ack, and only then PUBACKs. A broker forgets a QoS 1 message once it
// has the PUBACK, so the PUBACK must follow the commit: killed before it, the ledger gets the message
// again on reconnect (a duplicate, re-acked); killed after, the books already have it.
//
// mqtt.js handles incoming packets strictly one after another and PUBACKs a QoS 1 message when the
// `handleMessage` hook calls back. Holding that callback until the commit would apply one message at a
// time across all devices, and would deadlock on waiting for the broker's PUBACK of our own ack (it
// queues behind the held message). So the hook lets the packet pipeline go on while a bounded window of
// messages applies (one device's in arrival order, different devices concurrently), and the consumer
// sends each PUBACK itself, in the order the messages arrived (MQTT-4.6.0-2), on the connection they
// arrived on; one that arrived on a connection since dropped is never acked: the broker redelivers it.
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { parseDeviceTopic, topics, type Ack } from '../cloud-bridge/protocol/wire.js';
import { silentLogger, type Logger } from '../appliance/log.js';

/** What the consumer hands messages to: the books (ledger/apply.ts) in the ledger process, a fake in tests. */
export interface LedgerInbox<C = unknown> {
  /**
   * Optional: the checks of a journal message that need no books (pure CPU, must not throw), done as
   * it arrives, while the device's message before it may still be applying; `journal` gets the result.
   */
  check?(deviceId: string, payload: Buffer): C;
  /** Applies one journal message in one transaction; resolves after the commit with the ack to publish. */
  journal(deviceId: string, payload: Buffer, nowMs: number, checked?: C): Promise<{ ack: Ack | null }>;
  status(deviceId: string, payload: Buffer, nowMs: number): Promise<unknown>;
}

export const CONSUMER_DEFAULTS = {
  /** Shared-subscription group: consumers in one group split the devices' messages between them. */
  shareGroup: 'ledger',
  /**
   * Messages applying or waiting for an earlier PUBACK, count. Bounds memory (each holds up to a 4 MiB
   * batch) and DB connections in use; past it the consumer stops reading and TCP pushes back.
   */
  maxInFlight: 16,
  /** First reconnect delay, ms; doubles per failed attempt, jittered ±25 %. */
  reconnectInitialMs: 500,
  /** Longest reconnect delay, ms: a broker back after an outage is found within this. */
  reconnectMaxMs: 30_000,
  /** ms to get a CONNACK before the attempt counts as failed. */
  connectTimeoutMs: 10_000,
  /** MQTT keepalive, s: a dead broker link is noticed within 1.5× this. */
  keepaliveS: 30,
  /**
   * Times the same message may fail to apply (the DB down, a bug) before it is PUBACKed unapplied so it
   * stops blocking the session. Nothing is lost: no ack covers it, so the device sends it again.
   */
  maxApplyAttempts: 5,
  /** Messages whose failures are remembered, count (oldest forgotten first). */
  failureMemory: 1000,
  /** ms `stop()` waits for applies in flight before closing anyway (they are then redelivered). */
  stopTimeoutMs: 10_000,
} as const;

export interface ConsumerOptions {
  /** mqtt://, mqtts://, ws:// … of the broker. */
  url: string;
  /** Stable per consumer instance: the broker keeps its session (`clean: false`) across restarts. */
  clientId: string;
  inbox: LedgerInbox;
  /** Subscribe as `$share/{shareGroup}/…` (Mosquitto, EMQX; not aedes). */
  shared?: boolean;
  shareGroup?: string;
  maxInFlight?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  maxApplyAttempts?: number;
  stopTimeoutMs?: number;
  /** TLS client certificate and the like for mqtts://, and a username where a broker wants one. */
  mqtt?: Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'username' | 'password'>;
  clock?: { nowMs(): number };
  /** Uniform [0, 1), for reconnect jitter. */
  random?: () => number;
  log?: Logger;
  /** Called after every (re)connect, once subscribed: the place to republish retained documents. */
  onConnected?: () => void;
}

/** Reconnect delay before attempt `attempt` (0-based), ms: exponential, capped, jittered ±25 %. */
export function reconnectDelayMs(attempt: number, initialMs: number, maxMs: number, random: number): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.75 + random * 0.5));
}

/** The topic filters a consumer subscribes to. */
export function subscriptionTopics(shared: boolean, group: string = CONSUMER_DEFAULTS.shareGroup): string[] {
  const prefix = shared ? `$share/${group}/` : '';
  return [prefix + topics.allJournals, prefix + topics.allStatus];
}

/** One received message on its way to a PUBACK. */
interface Slot {
  stream: Duplex;
  messageId: number | undefined;
  qos: number;
  /** `working` until applied; `ack` sends a PUBACK when its turn comes, `drop` does not. */
  state: 'working' | 'ack' | 'drop';
}

/** Lets mqtt.js read the next packet without sending a PUBACK: the consumer sends it after the commit. */
const PUBACK_DEFERRED = new Error('PUBACK deferred until the ledger has committed');

type SendPacket = (packet: { cmd: 'puback'; messageId: number }, cb?: (err?: Error) => void) => void;

export class LedgerConsumer {
  private client: MqttClient | undefined;
  /** In arrival order; PUBACKs go out from the front as messages finish. */
  private readonly window: Slot[] = [];
  /** The packet pipeline's continuation while the window is full. */
  private held: (() => void) | undefined;
  /** Tail of each device's work, so one device's messages apply one at a time in arrival order. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Failed applies per message (hash of topic and payload), bounded. */
  private readonly failures = new Map<string, number>();
  private attempt = 0;
  /** Our QoS 1 publishes (acks, documents) not yet PUBACKed by the broker. */
  private publishing = 0;
  private publishesSettled: (() => void) | undefined;
  /** Applies that failed in a row: a reconnect after one waits as long as after as many failed connects. */
  private failureStreak = 0;
  private stopping = false;
  private readonly log: Logger;
  private readonly maxInFlight: number;

  constructor(private readonly opts: ConsumerOptions) {
    this.log = opts.log ?? silentLogger;
    this.maxInFlight = opts.maxInFlight ?? CONSUMER_DEFAULTS.maxInFlight;
  }

  /** Messages applying or waiting for their PUBACK. */
  get inFlight(): number {
    return this.window.length;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Connects and subscribes; resolves once subscribed the first time (retrying with backoff till then). */
  async start(): Promise<void> {
    const o = this.opts;
    const random = o.random ?? Math.random;
    const initialMs = o.reconnectInitialMs ?? CONSUMER_DEFAULTS.reconnectInitialMs;
    const maxMs = o.reconnectMaxMs ?? CONSUMER_DEFAULTS.reconnectMaxMs;
    const client = connect(o.url, {
      ...o.mqtt,
      clientId: o.clientId,
      clean: false,
      protocolVersion: 4,
      keepalive: CONSUMER_DEFAULTS.keepaliveS,
      connectTimeout: CONSUMER_DEFAULTS.connectTimeoutMs,
      reconnectPeriod: reconnectDelayMs(0, initialMs, maxMs, random()),
      // Subscriptions are renewed on every connect below, whatever the broker kept of the session.
      resubscribe: false,
    });
    this.client = client;
    if (typeof (client as unknown as { _sendPacket?: unknown })._sendPacket !== 'function') {
      throw new Error('mqtt.js without _sendPacket: the consumer cannot PUBACK after the commit');
    }
    client.handleMessage = (packet, cb) => this.receive(packet, cb);
    // Before mqtt.js's own 'close' listener schedules the next attempt with `reconnectPeriod`.
    client.prependListener('close', () => {
      const n = Math.max(this.attempt++, this.failureStreak);
      client.options.reconnectPeriod = reconnectDelayMs(n, initialMs, maxMs, random());
      if (!this.stopping) {
        this.log.warn({ url: o.url, retryMs: client.options.reconnectPeriod }, 'broker connection lost');
      }
    });
    client.on('error', (err) => this.log.warn({ url: o.url, err: err.message }, 'broker error'));

    const filters = subscriptionTopics(o.shared ?? false, o.shareGroup);
    await new Promise<void>((resolve, reject) => {
      let first = true;
      client.on('connect', (connack) => {
        this.attempt = 0;
        this.log.info(
          { url: o.url, clientId: o.clientId, sessionPresent: connack.sessionPresent },
          'connected',
        );
        client.subscribe(filters, { qos: 1 }, (err, granted) => {
          const refused = (granted ?? []).filter((g) => g.qos !== 1 && g.qos !== 0);
          if (err || refused.length) {
            const why = err?.message ?? `refused: ${refused.map((g) => g.topic).join(', ')}`;
            this.log.error({ filters, err: why }, 'cannot subscribe');
            if (first) {
              first = false;
              reject(new Error(`cannot subscribe to ${filters.join(', ')}: ${why}`));
            }
            return;
          }
          this.log.info({ filters }, 'subscribed');
          if (first) {
            first = false;
            resolve();
          }
          o.onConnected?.();
        });
      });
    }).catch(async (err: unknown) => {
      await client.endAsync(true);
      throw err;
    });
  }

  /**
   * Publishes on the consumer's connection; resolves on the broker's PUBACK (QoS 1) or rejects after
   * `timeoutMs`. While the broker is away mqtt.js keeps it queued and sends it on reconnect.
   */
  async publish(
    topic: string,
    payload: string | Buffer,
    opts: { retain: boolean; qos?: 0 | 1; timeoutMs?: number },
  ): Promise<void> {
    const client = this.client;
    if (!client) throw new Error('consumer not started');
    const timeoutMs = opts.timeoutMs ?? 5000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no PUBACK within ${timeoutMs} ms`)), timeoutMs);
      this.publishing++;
      client.publish(topic, payload, { qos: opts.qos ?? 1, retain: opts.retain }, (err) => {
        this.published();
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
    this.log.info({ dir: 'out', topic, bytes: Buffer.byteLength(payload), retain: opts.retain }, 'published');
  }

  /**
   * Stops reading, lets the applies in flight finish and PUBACKs them (up to `stopTimeoutMs`), then
   * disconnects. Messages not yet started stay with the broker for the next session.
   */
  async stop(): Promise<void> {
    const client = this.client;
    if (!client || this.stopping) return;
    this.stopping = true;
    const timeoutMs = this.opts.stopTimeoutMs ?? CONSUMER_DEFAULTS.stopTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.chains.values()]),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    // The broker's PUBACKs for our last acks, for a while; then a clean DISCONNECT, or a cut if unsettled.
    if (this.publishing > 0 && client.connected) {
      await Promise.race([
        new Promise<void>((resolve) => (this.publishesSettled = resolve)),
        delay(END_WAIT_MS),
      ]);
    }
    await client.endAsync(!client.connected || this.publishing > 0 || this.window.length > 0);
    this.client = undefined;
    this.log.info({ unfinished: this.window.length }, 'consumer stopped');
  }

  private published(): void {
    if (--this.publishing === 0) this.publishesSettled?.();
  }

  private receive(packet: IPublishPacket, cb: (err?: Error) => void): void {
    const client = this.client!;
    if (this.stopping) return; // not started, not acked: the broker keeps it for the next session
    const slot: Slot = {
      stream: client.stream,
      messageId: packet.messageId,
      qos: packet.qos,
      state: 'working',
    };
    this.window.push(slot);
    const target = parseDeviceTopic(packet.topic);
    if (!target || target.kind === 'ack') {
      this.log.warn({ dir: 'in', topic: packet.topic }, 'message on a topic the ledger does not take');
      this.finish(slot, 'ack');
    } else {
      const { deviceId, kind } = target;
      const tail = this.chains.get(deviceId) ?? Promise.resolve();
      const checked = kind === 'journal' ? this.check(deviceId, packet) : undefined;
      const run = tail.then(() => this.apply(deviceId, kind, packet, slot, checked));
      this.chains.set(deviceId, run);
      void run.then(() => {
        if (this.chains.get(deviceId) === run) this.chains.delete(deviceId);
      });
    }
    if (this.window.length < this.maxInFlight) cb(PUBACK_DEFERRED);
    else this.held = () => cb(PUBACK_DEFERRED);
  }

  /** The inbox's checks that need no books, now: they run while the device's earlier message applies. */
  private check(deviceId: string, packet: IPublishPacket): unknown {
    const { inbox } = this.opts;
    if (!inbox.check) return undefined;
    try {
      return inbox.check(deviceId, payloadOf(packet));
    } catch (err) {
      // `journal` does them itself when given nothing.
      this.log.warn({ dir: 'in', topic: packet.topic, deviceId, err: errText(err) }, 'message check failed');
      return undefined;
    }
  }

  private async apply(
    deviceId: string,
    kind: 'journal' | 'status',
    packet: IPublishPacket,
    slot: Slot,
    checked: unknown,
  ): Promise<void> {
    const payload = payloadOf(packet);
    const nowMs = this.opts.clock?.nowMs() ?? Date.now();
    const started = performance.now();
    if (kind === 'status') {
      try {
        await this.opts.inbox.status(deviceId, payload, nowMs);
        this.log.info({ dir: 'in', topic: packet.topic, deviceId, bytes: payload.length }, 'status');
      } catch (err) {
        // A status is advisory and retained: the next one repairs a lost one.
        this.log.warn({ dir: 'in', topic: packet.topic, deviceId, err: errText(err) }, 'status not recorded');
      }
      this.finish(slot, 'ack');
      return;
    }
    let outcome: { ack: Ack | null };
    try {
      outcome = await this.opts.inbox.journal(deviceId, payload, nowMs, checked);
    } catch (err) {
      this.applyFailed(deviceId, packet, payload, slot, err);
      return;
    }
    this.log.info(
      {
        dir: 'in',
        topic: packet.topic,
        deviceId,
        bytes: payload.length,
        dup: packet.dup,
        ms: Math.round(performance.now() - started),
        ...counts(outcome),
      },
      'journal applied',
    );
    if (outcome.ack) {
      // Written to the socket before the PUBACK below, so a broker that has the PUBACK has the ack too.
      // Its own PUBACK is not awaited: it arrives through the packet pipeline this message may hold.
      const topic = topics.ack(deviceId);
      const ack = outcome.ack;
      this.publishing++;
      this.client?.publish(topic, JSON.stringify(ack), { qos: 1, retain: true }, (err) => {
        this.published();
        if (err) this.log.warn({ dir: 'out', topic, err: err.message }, 'ack not delivered');
      });
      this.log.info({ dir: 'out', topic, epoch: ack.epoch, ackedThrough: ack.ackedThrough }, 'ack');
    }
    this.failures.delete(failureKey(packet.topic, payload));
    this.failureStreak = 0;
    this.finish(slot, 'ack');
  }

  /**
   * The books threw (not a rejected record: those come back in the ack). Withhold the PUBACK and drop
   * the connection, so the broker redelivers after a backoff; a message that keeps failing is let go
   * after `maxApplyAttempts` so it cannot wedge the session (its device resends it).
   */
  private applyFailed(deviceId: string, packet: IPublishPacket, payload: Buffer, slot: Slot, err: unknown) {
    const key = failureKey(packet.topic, payload);
    const attempts = (this.failures.get(key) ?? 0) + 1;
    this.failures.delete(key);
    const max = this.opts.maxApplyAttempts ?? CONSUMER_DEFAULTS.maxApplyAttempts;
    const fields = { dir: 'in', topic: packet.topic, deviceId, attempts, err: errText(err) };
    if (attempts >= max) {
      this.log.error({ ...fields, alarm: 'apply-failed' }, 'journal message keeps failing: let go unapplied');
      this.finish(slot, 'ack');
      return;
    }
    this.failureStreak++;
    this.failures.set(key, attempts);
    if (this.failures.size > (CONSUMER_DEFAULTS.failureMemory as number)) {
      this.failures.delete(this.failures.keys().next().value!);
    }
    this.log.error(fields, 'journal message not applied: reconnecting for a redelivery');
    slot.stream.destroy(); // synchronously marks it destroyed: nothing behind this slot is acked on it
    this.finish(slot, 'drop');
  }

  private finish(slot: Slot, state: 'ack' | 'drop'): void {
    slot.state = state;
    const send = (this.client as unknown as { _sendPacket: SendPacket } | undefined)?._sendPacket;
    while (this.window.length && this.window[0]!.state !== 'working') {
      const head = this.window.shift()!;
      const client = this.client;
      const live = client && client.connected && client.stream === head.stream && !head.stream.destroyed;
      if (head.state === 'ack' && head.qos > 0 && head.messageId !== undefined && live) {
        send!.call(client, { cmd: 'puback', messageId: head.messageId });
      }
    }
    if (this.held && this.window.length < this.maxInFlight) {
      const resume = this.held;
      this.held = undefined;
      resume();
    }
  }
}

/** ms a graceful disconnect may wait for the broker before the socket is just closed. */
const END_WAIT_MS = 2000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function failureKey(topic: string, payload: Buffer): string {
  return createHash('sha256').update(topic).update('\0').update(payload).digest('base64');
}

/** The numeric counts of an apply outcome (applied, duplicates, …), for the log line. */
function counts(outcome: object): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(outcome)) {
    if (typeof v === 'number') out[k] = v;
    else if (Array.isArray(v)) out[k] = v.length;
  }
  return out;
}

function errText(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  return e && typeof e === 'object'
    ? `${e.code ? `${String(e.code)}: ` : ''}${String(e.message)}`
    : String(err);
}

function payloadOf(packet: IPublishPacket): Buffer {
  return typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
}
