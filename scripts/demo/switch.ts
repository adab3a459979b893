// The demo store's connection switch: a TCP proxy between the register's cloud bridge and the broker.
// Its position is a file holding `up` or `down` (`npm run net -- down|up` writes it), polled like the
// terminal simulator's followConnectionFile: polling survives the file being replaced by a rename.
// Down: every proxied connection is destroyed and new ones are accepted and closed at once, as when
// the shop's internet is gone. Up: connections go through again (the bridge retries on its own
// backoff, so it is back within its longest pause: 3 s in the demo, scripts/demo.ts). Slow (`slow()`, for tests and demos from
// code): while up, every byte each way arrives late and no faster than a given rate, as over a
// congested mobile link; the register's figures show the queue draining slowly instead of at once.
import { unwatchFile, watchFile } from 'node:fs';
import * as net from 'node:net';
import { once } from 'node:events';
import type { Logger } from '../../appliance/log.js';
import { readNetFile } from './state.js';

export const SWITCH_DEFAULTS = {
  /** Connections through the switch at once: one register needs one; more is something wrong. */
  maxConnections: 32,
  /** How often the file is looked at, ms: a person flipping a switch does not notice 250 ms. */
  pollMs: 250,
  /**
   * Bytes a slow link holds per direction before it stops reading from the sender, 1 MiB: hundreds of
   * a register's records, and past it the sender feels the slowness as TCP backpressure, not as loss.
   */
  maxHeldBytes: 1024 * 1024,
  /** Largest piece a slow link releases at once, bytes (a few TCP segments): throttled bytes trickle. */
  sliceBytes: 4096,
} as const;

/** A slow link: what `ConnectionSwitch.slow()` does to every byte while the switch is up. */
export interface LinkShape {
  /** Added one-way delay, ms, 0 to 60,000. */
  latencyMs: number;
  /** Throughput each way, bytes per second (at least 100); absent: only delayed. */
  bytesPerSecond?: number;
}

export interface ConnectionSwitchOptions {
  /** Where connections go: the broker. */
  upstream: { host: string; port: number };
  /** The file holding `up` or `down`. Missing means up. */
  netFile: string;
  log: Logger;
  maxConnections?: number;
  pollMs?: number;
  maxHeldBytes?: number;
}

export class ConnectionSwitch {
  readonly #opts: ConnectionSwitchOptions;
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket; lanes: Lane[] }>();
  #server: net.Server | null = null;
  #up = true;
  #shape: LinkShape | null = null;
  #port = 0;
  readonly counts = { passed: 0, refused: 0, cut: 0 };

  constructor(opts: ConnectionSwitchOptions) {
    this.#opts = opts;
  }

  get up(): boolean {
    return this.#up;
  }

  get port(): number {
    return this.#port;
  }

  /** The slow link's shape, or null when bytes go straight through. */
  get shape(): LinkShape | null {
    return this.#shape;
  }

  /**
   * Makes the link slow (`shape`) or fast again (null), for the connections open now and those to
   * come. Bytes already held keep their order and arrive before any sent later.
   */
  slow(shape: LinkShape | null): void {
    if (shape !== null) {
      const { latencyMs, bytesPerSecond } = shape;
      if (!Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 60_000)
        throw new RangeError(`latencyMs is an integer from 0 to 60000, not ${latencyMs}`);
      if (bytesPerSecond !== undefined && !(Number.isFinite(bytesPerSecond) && bytesPerSecond >= 100))
        throw new RangeError(`bytesPerSecond is at least 100, not ${bytesPerSecond}`);
    }
    this.#shape = shape === null ? null : { ...shape };
    this.#opts.log.info({ shape: this.#shape }, shape ? 'link slow' : 'link fast');
  }

  /** Connections through the switch now. */
  get connections(): number {
    return this.#pairs.size;
  }

  /** Listens on 127.0.0.1, a free port; resolves with it. */
  async start(): Promise<number> {
    if (this.#server) return this.#port;
    this.#read();
    const server = net.createServer((client) => this.#accept(client));
    server.maxConnections = this.#opts.maxConnections ?? SWITCH_DEFAULTS.maxConnections;
    this.#server = server;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    this.#port = (server.address() as net.AddressInfo).port;
    watchFile(this.#opts.netFile, { interval: this.#opts.pollMs ?? SWITCH_DEFAULTS.pollMs }, this.#onFile);
    this.#opts.log.info(
      { port: this.#port, up: this.#up, upstream: this.#opts.upstream },
      'switch listening',
    );
    return this.#port;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = null;
    unwatchFile(this.#opts.netFile, this.#onFile);
    this.#cutAll();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.#opts.log.info({ ...this.counts }, 'switch stopped');
  }

  readonly #onFile = (): void => this.#read();

  #read(): void {
    const state = readNetFile(this.#opts.netFile);
    if (state === null) {
      // Missing (not written yet) or garbled: the switch stays where it is.
      this.#opts.log.warn({ file: this.#opts.netFile }, 'the net file holds neither up nor down; ignored');
      return;
    }
    const up = state === 'up';
    if (up === this.#up) return;
    this.#up = up;
    this.#opts.log.info({ up, connections: this.#pairs.size }, up ? 'link up' : 'link down');
    if (!up) this.#cutAll();
  }

  #cutAll(): void {
    for (const p of this.#pairs) {
      this.counts.cut++;
      for (const lane of p.lanes) lane.close();
      p.client.destroy();
      p.upstream.destroy();
    }
    this.#pairs.clear();
  }

  #accept(client: net.Socket): void {
    client.on('error', () => {});
    if (!this.#up || !this.#server) {
      this.counts.refused++;
      client.destroy();
      return;
    }
    this.counts.passed++;
    const upstream = net.connect(this.#opts.upstream);
    upstream.on('error', () => {});
    const shape = () => this.#shape;
    const held = this.#opts.maxHeldBytes ?? SWITCH_DEFAULTS.maxHeldBytes;
    const lanes = [new Lane(client, upstream, shape, held), new Lane(upstream, client, shape, held)];
    const pair = { client, upstream, lanes };
    this.#pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const close = () => {
      this.#pairs.delete(pair);
      for (const lane of lanes) lane.close();
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
  }
}

/**
 * One direction of one proxied connection. Fast: each chunk is written on at once, and the sender is
 * paused while the receiver's buffer is full (what pipe() does). Slow: each chunk is cut into slices
 * that leave one after another at the link's rate and arrive `latencyMs` later; the sender is paused
 * while more than `maxHeldBytes` are held. Order is kept across every change of shape.
 */
class Lane {
  readonly #held: { chunk: Buffer; atMs: number }[] = [];
  #heldBytes = 0;
  /** When the link has finished sending what it holds (throughput), ms since 1970. */
  #busyUntilMs = 0;
  #timer: NodeJS.Timeout | null = null;
  #full = false;
  #blocked = false;
  #closed = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly shape: () => LinkShape | null,
    private readonly maxHeldBytes: number,
  ) {
    from.on('data', (chunk: Buffer) => this.#take(chunk));
    to.on('drain', () => {
      this.#blocked = false;
      this.#flow();
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#held.length = 0;
    this.#heldBytes = 0;
  }

  #take(chunk: Buffer): void {
    if (this.#closed) return;
    const shape = this.shape();
    if (!shape && this.#held.length === 0) {
      this.#write(chunk);
      return;
    }
    const nowMs = Date.now();
    const slice = SWITCH_DEFAULTS.sliceBytes;
    for (let at = 0; at < chunk.length; at += slice) {
      const part = chunk.subarray(at, at + slice);
      const sendMs = shape?.bytesPerSecond ? (part.length * 1000) / shape.bytesPerSecond : 0;
      this.#busyUntilMs = Math.max(nowMs, this.#busyUntilMs) + sendMs;
      const last = this.#held.at(-1)?.atMs ?? 0;
      this.#held.push({ chunk: part, atMs: Math.max(last, this.#busyUntilMs + (shape?.latencyMs ?? 0)) });
      this.#heldBytes += part.length;
    }
    this.#full = this.#heldBytes > this.maxHeldBytes;
    this.#flow();
    this.#schedule();
  }

  #schedule(): void {
    const head = this.#held[0];
    if (this.#timer || this.#closed || !head) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#release();
      },
      Math.max(0, head.atMs - Date.now()),
    );
  }

  #release(): void {
    const nowMs = Date.now();
    while (!this.#closed && this.#held.length && this.#held[0]!.atMs <= nowMs) {
      const { chunk } = this.#held.shift()!;
      this.#heldBytes -= chunk.length;
      this.#write(chunk);
    }
    this.#full = this.#heldBytes > this.maxHeldBytes;
    this.#flow();
    this.#schedule();
  }

  #write(chunk: Buffer): void {
    if (!this.to.write(chunk)) {
      this.#blocked = true;
      this.#flow();
    }
  }

  /** The sender reads while the receiver takes bytes and the link holds no more than its bound. */
  #flow(): void {
    if (this.#closed) return;
    if (this.#full || this.#blocked) this.from.pause();
    else if (this.from.isPaused()) this.from.resume();
  }
}
