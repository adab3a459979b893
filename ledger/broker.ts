// The embedded MQTT broker of the single-machine default: aedes on a TCP port, in memory, bounded.
// aedes has no packet-size option and its parser buffers whatever length a header announces, so every
// connection passes through a frame guard that reads MQTT fixed headers and hangs up on a packet larger
// than the wire protocol allows, before its body is buffered. At scale this is Mosquitto's job
// (`max_packet_size`, docs/mosquitto/mosquitto.conf).
import { Duplex } from 'node:stream';
import * as net from 'node:net';
import { Aedes } from 'aedes';
import { MAX_PAYLOAD_BYTES } from '../cloud-bridge/protocol/wire.js';
import { silentLogger, type Logger } from '../appliance/log.js';

/** A PUBLISH's remaining length is its payload plus topic and packet id: this leaves room for those. */
const PACKET_OVERHEAD_BYTES = 1024;

export const BROKER_DEFAULTS = {
  /** Loopback only: the embedded broker serves the registers of one machine or a trusted LAN. */
  host: '127.0.0.1',
  /** Largest MQTT packet (remaining length), bytes: the largest payload either side accepts plus topic. */
  maxPacketBytes: MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES,
  /** Open connections, count: a store has a handful of registers; this bounds sockets and sessions. */
  maxConnections: 1000,
  /** ms a client may stall delivery with a full socket before aedes drops it (aedes' own default: 60 s). */
  drainTimeoutMs: 30_000,
  /** ms from TCP connect to MQTT CONNECT before the socket is dropped. */
  connectTimeoutMs: 10_000,
} as const;

export interface BrokerOptions {
  host?: string;
  /** 0 takes any free port; `start()` reports the bound one. */
  port: number;
  maxPacketBytes?: number;
  maxConnections?: number;
  log?: Logger;
}

/** What the frame guard knows between chunks: where in the current packet the stream stands. */
export type FrameState =
  | { at: 'type' }
  | { at: 'length'; length: number; shift: number; count: number }
  | { at: 'body'; remaining: number };

export const FRAME_START: FrameState = { at: 'type' };

/**
 * Follows MQTT framing (fixed header byte, 1–4 byte remaining length, body) over one chunk and returns
 * where the next chunk starts, or an error naming why the stream must be dropped. Pure: the state is
 * the only memory, so a packet split across any number of chunks is measured the same.
 */
export function scanFrames(
  state: FrameState,
  chunk: Uint8Array,
  maxPacketBytes: number,
): FrameState | { error: 'PACKET_TOO_LARGE' | 'BAD_LENGTH'; length?: number } {
  let s = state;
  let i = 0;
  while (i < chunk.length) {
    if (s.at === 'type') {
      i += 1;
      s = { at: 'length', length: 0, shift: 0, count: 0 };
    } else if (s.at === 'length') {
      const b = chunk[i++]!;
      const length = s.length + (b & 0x7f) * 2 ** s.shift;
      if (s.count === 3 && b & 0x80) return { error: 'BAD_LENGTH' };
      if (length > maxPacketBytes) return { error: 'PACKET_TOO_LARGE', length };
      if (b & 0x80) s = { at: 'length', length, shift: s.shift + 7, count: s.count + 1 };
      else s = length === 0 ? { at: 'type' } : { at: 'body', remaining: length };
    } else {
      const take = Math.min(s.remaining, chunk.length - i);
      i += take;
      s = take === s.remaining ? { at: 'type' } : { at: 'body', remaining: s.remaining - take };
    }
  }
  return s;
}

/**
 * A socket as aedes sees it, with the frame guard on the way in. Reads flow with backpressure (the
 * socket pauses while aedes has not read), writes go straight through, destroying one destroys both.
 */
class GuardedConnection extends Duplex {
  private frame: FrameState = FRAME_START;

  constructor(
    private readonly socket: net.Socket,
    maxPacketBytes: number,
    onRefused: (reason: string, length?: number) => void,
  ) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => {
      const next = scanFrames(this.frame, chunk, maxPacketBytes);
      if ('error' in next) {
        onRefused(next.error, next.length);
        this.destroy();
        return;
      }
      this.frame = next;
      if (!this.destroyed && !this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.pause();
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

export class EmbeddedBroker {
  private aedes: Aedes | undefined;
  private server: net.Server | undefined;
  private boundPort = 0;
  /** Every open socket, so `stop()` also ends those that never sent CONNECT (aedes does not know them). */
  private readonly sockets = new Set<net.Socket>();
  private readonly log: Logger;

  constructor(private readonly opts: BrokerOptions) {
    this.log = opts.log ?? silentLogger;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const host = this.opts.host ?? BROKER_DEFAULTS.host;
    return `mqtt://${host.includes(':') ? `[${host}]` : host}:${this.boundPort}`;
  }

  /** The aedes instance while running, for observation (its `ack`, `client…` events); undefined when stopped. */
  get instance(): Aedes | undefined {
    return this.aedes;
  }

  /** Clients connected right now (for health and tests). */
  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  async start(): Promise<{ host: string; port: number; url: string }> {
    const host = this.opts.host ?? BROKER_DEFAULTS.host;
    const maxPacketBytes = this.opts.maxPacketBytes ?? BROKER_DEFAULTS.maxPacketBytes;
    const aedes = await Aedes.createBroker({
      drainTimeout: BROKER_DEFAULTS.drainTimeoutMs,
      connectTimeout: BROKER_DEFAULTS.connectTimeoutMs,
      // Client ids like `ledger-<host>-0` are longer than MQTT 3.1's 23; 3.1.1 clients have no limit here.
      maxClientsIdLength: 128,
    });
    this.aedes = aedes;
    aedes.on('clientError', (client, err) =>
      this.log.warn({ client: client?.id, err: err.message }, 'client error'),
    );
    aedes.on('connectionError', (client, err) =>
      this.log.warn({ client: client?.id, err: err.message }, 'connection error'),
    );
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      const conn = new GuardedConnection(socket, maxPacketBytes, (reason, length) =>
        this.log.warn({ dir: 'in', remote: socket.remoteAddress, reason, length }, 'connection dropped'),
      );
      aedes.handle(conn);
    });
    server.maxConnections = this.opts.maxConnections ?? BROKER_DEFAULTS.maxConnections;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.aedes = undefined;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      throw err; // EADDRINUSE and the like, for the caller to decide
    }
    this.server = server;
    server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
    this.boundPort = (server.address() as net.AddressInfo).port;
    this.log.info({ host, port: this.boundPort, maxPacketBytes }, 'embedded broker listening');
    return { host, port: this.boundPort, url: this.url };
  }

  /** Stops accepting, closes every client and the broker; resolves when the port is free. */
  async stop(): Promise<void> {
    const { server, aedes } = this;
    this.server = undefined;
    this.aedes = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.log.info({}, 'embedded broker stopped');
  }
}
