// The fleet page's live feed: server-sent events telling open pages that something changed (a batch
// applied, a status received, a change made through the API, or a register's card changing colour as
// time passes), so they fetch the part again. Bounded clients, coalesced notices, a heartbeat.
import type { ServerResponse } from 'node:http';
import { silentLogger, type Logger } from '../../appliance/log.js';
import { LedgerError } from '../errors.js';
import type { Route } from '../http.js';
import type { FleetMonitor } from './overview.js';

export const LIVE_DEFAULTS = {
  /** Open pages at most: a back office's screens; each holds one connection. */
  maxClients: 50,
  /** ms between comment lines that keep proxies and the browser from calling the stream dead. */
  heartbeatMs: 15_000,
  /** ms notices are gathered before one event goes out: a burst of batches is one refresh. */
  debounceMs: 250,
  /** ms between checks whether a register's card changed colour with time alone. */
  tickMs: 5_000,
  /** Bytes queued to a client that does not read before it is dropped (it reconnects and refetches). */
  maxQueuedBytes: 64 * 1024,
  /** ms the browser waits before reconnecting a dropped stream. */
  retryMs: 3_000,
} as const;

export type LiveTopic = 'devices' | 'sales' | 'stock' | 'exceptions';

export interface LiveHubOptions {
  fleet: FleetMonitor;
  log?: Logger;
  maxClients?: number;
  heartbeatMs?: number;
  debounceMs?: number;
  tickMs?: number;
}

export class LiveHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly pending = new Set<LiveTopic>();
  private debounce: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private tick: NodeJS.Timeout | undefined;
  private ticking = false;
  private lastSignature: string | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: LiveHubOptions) {
    this.log = opts.log ?? silentLogger;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  start(): void {
    this.heartbeat = setInterval(
      () => this.send(': heartbeat\n\n'),
      this.opts.heartbeatMs ?? LIVE_DEFAULTS.heartbeatMs,
    );
    this.tick = setInterval(() => void this.checkBands(), this.opts.tickMs ?? LIVE_DEFAULTS.tickMs);
    this.heartbeat.unref();
    this.tick.unref();
  }

  stop(): void {
    clearInterval(this.heartbeat);
    clearInterval(this.tick);
    clearTimeout(this.debounce);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  /** Something changed: open pages hear of it within `debounceMs`, once for a burst. */
  notify(...topics: LiveTopic[]): void {
    if (!this.clients.size) return;
    for (const t of topics) this.pending.add(t);
    this.debounce ??= setTimeout(() => {
      this.debounce = undefined;
      const what = [...this.pending];
      this.pending.clear();
      this.send(`event: change\ndata: ${JSON.stringify({ what })}\n\n`);
    }, this.opts.debounceMs ?? LIVE_DEFAULTS.debounceMs);
  }

  /** Time alone turns cards amber and red: compare the bands with the last seen, only while someone looks. */
  private async checkBands(): Promise<void> {
    if (!this.clients.size || this.ticking) return;
    this.ticking = true;
    try {
      const signature = await this.opts.fleet.bandSignature();
      if (this.lastSignature !== undefined && signature !== this.lastSignature) this.notify('devices');
      this.lastSignature = signature;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'fleet bands not checked');
    } finally {
      this.ticking = false;
    }
  }

  private send(chunk: string): void {
    for (const res of this.clients) {
      if (res.writableLength > LIVE_DEFAULTS.maxQueuedBytes) {
        res.end();
        this.clients.delete(res);
        continue;
      }
      res.write(chunk);
    }
  }

  /** GET /fleet/events. */
  route(): Route {
    return {
      method: 'GET',
      path: '/fleet/events',
      name: 'fleet.events',
      handle: async () => {
        if (this.clients.size >= (this.opts.maxClients ?? LIVE_DEFAULTS.maxClients))
          throw new LedgerError('BUSY', 'too many live pages open', {
            max: this.opts.maxClients ?? LIVE_DEFAULTS.maxClients,
          });
        return {
          status: 200,
          body: null,
          headers: {
            'content-type': 'text/event-stream; charset=utf-8',
            connection: 'keep-alive',
            'x-accel-buffering': 'no',
          },
          stream: (res) => {
            this.clients.add(res);
            res.on('close', () => this.clients.delete(res));
            res.write(`retry: ${LIVE_DEFAULTS.retryMs}\nevent: hello\ndata: {}\n\n`);
            // The bands as this client first sees them: a change from here on is news.
            void this.opts.fleet
              .bandSignature()
              .then((s) => (this.lastSignature ??= s))
              .catch(() => undefined);
          },
        };
      },
    };
  }
}
