// The till UI's one connection to registerd's control socket (◆ docs/control-protocol.md): subscribed to
// state pushes, with requests matched to answers by id. The UI holds no state of its own, so a registerd
// restart is only a gap: the link reconnects with a jittered backoff, subscribes again and the first push
// redraws everything. Requests made while the link is down are refused at once (the cashier sees why)
// rather than queued: a scan or a tender replayed minutes later would surprise everyone.
import { createConnection, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { backoffDelayMs } from '../devices/device.js';

export interface ControlFailure {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export type Answer = { ok: true; result: unknown } | { ok: false; error: ControlFailure };

export interface LinkEvents {
  /** A state push: exactly what `status` answers. */
  state: [status: unknown];
  /** The link came up (subscribed) or went down. */
  link: [up: boolean];
}

export interface ControlLinkOptions {
  socketPath: string;
  /** Reconnect backoff, ms: 250 doubling to 2,000 by default (a till back within two seconds). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How long a request waits for its answer, ms. A card payment waits on the terminal: 120 s. */
  callTimeoutMs?: number;
}

/** Requests one connection may have waiting: the server's own bound (8, the running one included). */
const MAX_OUTSTANDING = 8;
/** Longest line accepted from registerd: a state push with a full sale is far below this. */
const MAX_LINE_BYTES = 4 * 1024 * 1024;

export class ControlLink extends EventEmitter<LinkEvents> {
  private socket: Socket | undefined;
  private up = false;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (a: Answer) => void; timer: NodeJS.Timeout }>();

  constructor(private readonly opts: ControlLinkOptions) {
    super();
  }

  get connected(): boolean {
    return this.up;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.destroy();
    this.failAll('the till is closing');
  }

  /** One request; never rejects: a link problem is an answer with code CONTROL_UNAVAILABLE. */
  call(method: string, params: unknown = {}): Promise<Answer> {
    const socket = this.socket;
    if (!this.up || !socket) return Promise.resolve(unavailable('the register is not answering'));
    if (this.waiting.size >= MAX_OUTSTANDING)
      return Promise.resolve({ ok: false, error: { code: 'BUSY', message: 'the register is busy' } });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve(unavailable('the register did not answer in time'));
      }, this.opts.callTimeoutMs ?? 120_000);
      this.waiting.set(id, { resolve, timer });
      socket.write(JSON.stringify({ id, method, params }) + '\n');
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const socket = createConnection(this.opts.socketPath);
    this.socket = socket;
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify({ id: 0, method: 'subscribe' }) + '\n'));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_LINE_BYTES) {
        socket.destroy();
        return;
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        this.onLine(line);
      }
    });
    socket.on('error', () => undefined); // 'close' follows and handles it
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.failAll('the connection to the register dropped');
      if (this.up) {
        this.up = false;
        this.emit('link', false);
      }
      if (this.stopped) return;
      const delay = backoffDelayMs(this.attempt++, {
        initialMs: this.opts.backoff?.initialMs ?? 250,
        maxMs: this.opts.backoff?.maxMs ?? 2000,
      });
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  private onLine(line: string): void {
    let msg: { id?: unknown; result?: unknown; error?: ControlFailure; event?: unknown; data?: unknown };
    try {
      msg = JSON.parse(line);
    } catch {
      return; // not ours to judge: registerd speaks JSON; a torn line is followed by a reconnect
    }
    if (msg.event === 'state') {
      this.emit('state', msg.data);
      return;
    }
    if (msg.id === 0) {
      if (msg.error) {
        this.socket?.destroy();
        return;
      }
      this.up = true;
      this.attempt = 0;
      this.emit('link', true);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const w = this.waiting.get(msg.id);
    if (!w) return;
    this.waiting.delete(msg.id);
    clearTimeout(w.timer);
    w.resolve(msg.error ? { ok: false, error: msg.error } : { ok: true, result: msg.result });
  }

  private failAll(why: string): void {
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.resolve(unavailable(why));
      this.waiting.delete(id);
    }
  }
}

function unavailable(message: string): Answer {
  return { ok: false, error: { code: 'CONTROL_UNAVAILABLE', message } };
}
