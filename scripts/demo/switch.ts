// The demo store's connection switch: a TCP proxy between the register's cloud bridge and the broker.
// Its position is a file holding `up` or `down` (`npm run net -- down|up` writes it), polled like the
// terminal simulator's followConnectionFile: polling survives the file being replaced by a rename.
// Down: every proxied connection is destroyed and new ones are accepted and closed at once, as when
// the shop's internet is gone. Up: connections go through again (the bridge retries on its own
// backoff, so it is back within its longest pause, 30 s).
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
} as const;

export interface ConnectionSwitchOptions {
  /** Where connections go: the broker. */
  upstream: { host: string; port: number };
  /** The file holding `up` or `down`. Missing means up. */
  netFile: string;
  log: Logger;
  maxConnections?: number;
  pollMs?: number;
}

export class ConnectionSwitch {
  readonly #opts: ConnectionSwitchOptions;
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  #server: net.Server | null = null;
  #up = true;
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
    const pair = { client, upstream };
    this.#pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    // pipe() carries backpressure both ways: nothing piles up in the switch.
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
  }
}
