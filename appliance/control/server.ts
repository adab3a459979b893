// The control socket's server side (◆ DESIGN "Control socket"): newline-delimited JSON on a Unix socket.
// It knows nothing of the register's methods: the domain is handed in as `dispatch`. What it owns is the
// wire: framing, validation, one-at-a-time order per connection, state pushes, and a bound on every
// buffer and queue so that no client can make registerd grow or fall over.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { ErrorCodes, RegisterError, isRegisterError, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';

export interface ControlContext {
  /** Which connection the request came on: 1, 2, … in order of connection, never reused. */
  connectionId: number;
}

/** Runs one method. A `RegisterError` becomes the error answer; anything else becomes `INTERNAL`. */
export type ControlDispatch = (
  method: string,
  params: unknown,
  ctx: ControlContext,
) => Promise<unknown> | unknown;

export interface ControlServerOptions {
  socketPath: string;
  dispatch: ControlDispatch;
  log?: Logger;
  /** Longest request line in bytes, newline excluded. */
  maxLineBytes?: number;
  maxConnections?: number;
  /** Requests accepted on one connection and not yet answered, the running one included. */
  maxPendingPerConnection?: number;
  /** Answers and pushes written to one connection and not yet taken by the kernel, in bytes. */
  maxUnflushedBytes?: number;
  /** The current state, pushed once to a connection right after it subscribes. */
  stateSnapshot?: () => unknown;
}

/** 64 KiB: a till command is well under 1 KiB, so this is generous, and it bounds what one connection can
 *  make us hold while a line arrives: 16 connections × 64 KiB = 1 MiB at worst. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/** 16: the till UI, a customer display, a few registerctl calls and a monitor use a handful; each one
 *  holds a file descriptor and up to maxLineBytes + maxUnflushedBytes of memory. */
export const DEFAULT_MAX_CONNECTIONS = 16;
/** 8: a client normally waits for each answer; this lets a burst of pipelined commands queue behind a
 *  slow one (a card payment) without letting one connection queue unbounded work. */
export const DEFAULT_MAX_PENDING_PER_CONNECTION = 8;
/** 1 MiB: a state push is a few KiB, so a client this far behind is stuck, not slow; dropping it frees
 *  the memory, and when it reconnects and subscribes it gets a fresh snapshot. */
export const DEFAULT_MAX_UNFLUSHED_BYTES = 1024 * 1024;
/** sun_path is 108 bytes on Linux, its terminating NUL included. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** The one method the server answers itself. */
const SUBSCRIBE = 'subscribe';

type RequestId = number | string | null;

/** A queued answer is either a call still to run or a refusal already decided (kept in line so that
 *  answers come back in request order). */
type Job = { id: RequestId; method: string; params: unknown } | { line: string };

interface Connection {
  id: number;
  socket: Socket;
  /** False once the connection is closing or closed: input is ignored and answers dropped from then on,
   *  but requests already accepted still run, in order. */
  open: boolean;
  /** The socket has closed; the connection keeps its slot until its last accepted request has run. */
  closed: boolean;
  /** The peer has finished sending: answer what is queued, then end. */
  peerEnded: boolean;
  subscribed: boolean;
  /** Pieces of a request line still waiting for its newline, and their total length in bytes. */
  partial: Buffer[];
  partialBytes: number;
  queue: Job[];
  /** A job of this connection is being run; the next waits for it. */
  running: boolean;
}

export class ControlServer {
  readonly socketPath: string;
  private readonly dispatch: ControlDispatch;
  private readonly log: Logger;
  private readonly maxLineBytes: number;
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private readonly maxUnflushedBytes: number;
  private readonly stateSnapshot: (() => unknown) | undefined;
  private server: Server | undefined;
  /** Connections holding a slot: open ones, and closed ones whose accepted requests are still running
   *  (so that clients connecting and hanging up cannot pile up work beyond maxConnections). */
  private readonly connections = new Set<Connection>();
  /** Every socket, refused ones included, so that stop() can close them all. */
  private readonly sockets = new Set<Socket>();
  private lastConnectionId = 0;

  constructor(opts: ControlServerOptions) {
    this.socketPath = opts.socketPath;
    this.dispatch = opts.dispatch;
    this.log = opts.log ?? silentLogger;
    this.maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.maxPending = opts.maxPendingPerConnection ?? DEFAULT_MAX_PENDING_PER_CONNECTION;
    this.maxUnflushedBytes = opts.maxUnflushedBytes ?? DEFAULT_MAX_UNFLUSHED_BYTES;
    this.stateSnapshot = opts.stateSnapshot;
  }

  /** Listens on the socket, mode 0660. A socket file left by a dead registerd is removed; a live one
   *  answering on it is a refusal (CONTROL_SOCKET_IN_USE), and so is a path that is not a socket. */
  async start(): Promise<void> {
    if (this.server) throw new Error('the control server is already started');
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH_BYTES)
      throw new RegisterError(
        'CONFIG_INVALID',
        `control socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${this.socketPath}`,
        { socketPath: this.socketPath },
      );
    await this.removeStaleSocket();
    // Half-open allowed: `printf '{…}\n' | nc -U control.sock` ends its side after sending and must
    // still get its answers.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      // Another registerd got there between our look and our listen.
      if (err.code === 'EADDRINUSE') throw this.inUse(err);
      throw err;
    });
    server.on('error', (err) => this.log.error({ err: err.message }, 'control socket error'));
    this.server = server;
    // The socket exists with the umask's mode for a moment before this; the state directory (0750) is
    // what keeps strangers out meanwhile.
    try {
      await chmod(this.socketPath, 0o660);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.log.info({ socketPath: this.socketPath }, 'control socket listening');
  }

  /** Stops listening, closes every connection and removes the socket file. Commands still running
   *  finish on their own, their answers dropped; queued ones never start. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const conn of this.connections) conn.queue = [];
    for (const socket of this.sockets) socket.destroy();
    await closed;
    // libuv removes the file when the listener closes; this is for the day it does not.
    await unlink(this.socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    this.log.info({ socketPath: this.socketPath }, 'control socket stopped');
  }

  /** Pushes `{"event":"state","data":…}` to every subscribed connection; returns how many it went to. */
  /**
   * Push a state to every subscriber. A function is called only when someone subscribes: the state is
   * built and serialised after every command, which is wasted work on a till nobody watches.
   */
  publish(data: unknown): number {
    let line: string;
    if (![...this.connections].some((c) => c.subscribed)) return 0;
    try {
      const value: unknown = typeof data === 'function' ? (data as () => unknown)() : data;
      line = JSON.stringify({ event: 'state', data: value ?? null });
    } catch (err) {
      this.log.error({ err: errText(err) }, 'state cannot be published: not JSON');
      return 0;
    }
    let sent = 0;
    for (const conn of this.connections) if (conn.subscribed && this.send(conn, line)) sent++;
    return sent;
  }

  private async removeStaleSocket(): Promise<void> {
    const socketPath = this.socketPath;
    try {
      if (!(await lstat(socketPath)).isSocket())
        throw new RegisterError(
          'CONFIG_INVALID',
          `${socketPath} exists and is not a socket; refusing to replace it`,
          { socketPath },
        );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (await isAnswering(socketPath)) throw this.inUse();
    await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    this.log.info({ socketPath }, 'removed a stale control socket left by a stopped registerd');
  }

  private inUse(cause?: unknown): RegisterError {
    return new RegisterError(
      'CONTROL_SOCKET_IN_USE',
      `another registerd is already answering on ${this.socketPath}`,
      { socketPath: this.socketPath },
      cause,
    );
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {}); // reported by the connection's own handler, or not worth reporting
    if (!this.server || this.connections.size >= this.maxConnections) {
      this.log.warn({ limit: this.maxConnections }, 'control connection refused: too many connections');
      refuse(socket, errorLine(null, 'BUSY', 'registerd has too many control connections; try again'));
      return;
    }
    const conn: Connection = {
      id: ++this.lastConnectionId,
      socket,
      open: true,
      closed: false,
      peerEnded: false,
      subscribed: false,
      partial: [],
      partialBytes: 0,
      queue: [],
      running: false,
    };
    this.connections.add(conn);
    this.log.info({ connectionId: conn.id }, 'control connection opened');
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('end', () => this.onPeerEnd(conn));
    socket.on('error', (err) =>
      this.log.info({ connectionId: conn.id, err: err.message }, 'control connection error'),
    );
    socket.on('close', () => {
      conn.open = false;
      conn.closed = true;
      const stillRunning = conn.queue.length + (conn.running ? 1 : 0);
      this.log.info({ connectionId: conn.id, stillRunning }, 'control connection closed');
      if (!conn.running) this.connections.delete(conn);
    });
  }

  /** Cuts the bytes into lines without ever holding more than maxLineBytes of one line. */
  private onData(conn: Connection, chunk: Buffer): void {
    let start = 0;
    while (conn.open && start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      const lineBytes = conn.partialBytes + (end - start);
      if (lineBytes > this.maxLineBytes) {
        this.lineTooLong(conn);
        return;
      }
      if (nl < 0) {
        conn.partial.push(chunk.subarray(start));
        conn.partialBytes = lineBytes;
        return;
      }
      const piece = chunk.subarray(start, nl);
      const line = conn.partial.length ? Buffer.concat([...conn.partial, piece]) : piece;
      conn.partial = [];
      conn.partialBytes = 0;
      this.onLine(conn, line);
      start = nl + 1;
    }
  }

  private onPeerEnd(conn: Connection): void {
    if (!conn.open) return;
    conn.peerEnded = true;
    // A last line without its newline still counts.
    if (conn.partialBytes) {
      const line = Buffer.concat(conn.partial);
      conn.partial = [];
      conn.partialBytes = 0;
      this.onLine(conn, line);
    }
    if (!conn.running && !conn.queue.length) conn.socket.end();
  }

  private lineTooLong(conn: Connection): void {
    this.log.warn(
      { connectionId: conn.id, dir: 'in', limit: this.maxLineBytes },
      'control request line too long; closing the connection',
    );
    conn.open = false;
    conn.partial = [];
    conn.partialBytes = 0;
    refuse(
      conn.socket,
      errorLine(null, 'LINE_TOO_LONG', `a request line is limited to ${this.maxLineBytes} bytes`),
    );
  }

  private onLine(conn: Connection, bytes: Buffer): void {
    const text = bytes.toString('utf8');
    if (!text.trim()) return; // a blank line (someone typing at the socket) is not a request
    if (conn.queue.length + (conn.running ? 1 : 0) >= this.maxPending) {
      // Answered at once, so it may overtake the answers to earlier requests: clients match by id.
      this.log.warn(
        { connectionId: conn.id, dir: 'in', limit: this.maxPending },
        'control request refused: too many pending on the connection',
      );
      this.send(
        conn,
        errorLine(usableId(parseOrUndefined(text)), 'BUSY', 'too many requests waiting on this connection'),
      );
      return;
    }
    conn.queue.push(this.toJob(conn, text));
    void this.drain(conn);
  }

  private toJob(conn: Connection, text: string): Job {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.badRequest(conn, null, 'the request is not valid JSON');
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg))
      return this.badRequest(conn, null, 'a request is a JSON object');
    const { id, method, params } = msg as Record<string, unknown>;
    // No id at all is allowed (`{"method":"subscribe"}`): the answer then carries id null.
    if (id !== undefined && usableId(msg) === null)
      return this.badRequest(conn, null, 'id must be a number or a string');
    if (typeof method !== 'string' || !method)
      return this.badRequest(conn, usableId(msg), 'method must be a non-empty string');
    return { id: usableId(msg), method, params };
  }

  private badRequest(conn: Connection, id: RequestId, why: string): Job {
    this.log.warn({ connectionId: conn.id, dir: 'in', why }, 'bad control request');
    return { line: errorLine(id, 'BAD_REQUEST', why) };
  }

  /** Runs the connection's jobs one at a time, in order: a cashier's commands must not reorder. An
   *  accepted request runs even if its client hangs up meanwhile: the client cannot know how far we got,
   *  and "everything it sent, in order" is the one answer it can rely on when it reconnects. */
  private async drain(conn: Connection): Promise<void> {
    if (conn.running) return;
    conn.running = true;
    try {
      let job: Job | undefined;
      while ((job = conn.queue.shift())) {
        if ('line' in job) this.send(conn, job.line);
        else if (job.method === SUBSCRIBE) this.subscribe(conn, job.id);
        else this.send(conn, await this.call(conn, job.id, job.method, job.params));
      }
    } catch (err) {
      this.log.error({ connectionId: conn.id, err: errText(err) }, 'control connection failed');
      conn.socket.destroy();
    } finally {
      conn.running = false;
    }
    if (conn.closed) this.connections.delete(conn);
    else if (conn.open && conn.peerEnded && !conn.socket.destroyed) conn.socket.end();
  }

  /** The answer line for one call; never throws. */
  private async call(conn: Connection, id: RequestId, method: string, params: unknown): Promise<string> {
    let result: unknown;
    try {
      result = await this.dispatch(method, params, { connectionId: conn.id });
    } catch (err) {
      if (isRegisterError(err)) {
        try {
          return JSON.stringify({ id, error: err.toJSON() });
        } catch {
          return errorLine(id, err.code, err.message); // its details are not JSON
        }
      }
      this.log.error(
        { connectionId: conn.id, method, err: errText(err) },
        'control method failed unexpectedly',
      );
      return errorLine(id, 'INTERNAL');
    }
    try {
      return JSON.stringify({ id, result: result ?? null });
    } catch (err) {
      this.log.error({ connectionId: conn.id, method, err: errText(err) }, 'control answer is not JSON');
      return errorLine(id, 'INTERNAL');
    }
  }

  private subscribe(conn: Connection, id: RequestId): void {
    this.send(conn, JSON.stringify({ id, result: { subscribed: true } }));
    // The snapshot is taken in the same tick as the subscription starts, so no change falls between
    // the snapshot and the first push.
    conn.subscribed = true;
    if (!this.stateSnapshot) return;
    let line: string;
    try {
      line = JSON.stringify({ event: 'state', data: this.stateSnapshot() ?? null });
    } catch (err) {
      this.log.error({ connectionId: conn.id, err: errText(err) }, 'state snapshot failed');
      return;
    }
    this.send(conn, line);
  }

  /** Writes one line (JSON.stringify never emits a raw newline); false if the connection is gone. */
  private send(conn: Connection, line: string): boolean {
    if (!conn.open || conn.socket.destroyed) return false; // a client that hung up: its answer is dropped
    conn.socket.write(line + '\n');
    if (conn.socket.writableLength > this.maxUnflushedBytes) {
      this.log.warn(
        { connectionId: conn.id, dir: 'out', unflushedBytes: conn.socket.writableLength },
        'control client is not reading; disconnected',
      );
      conn.open = false;
      conn.socket.destroy();
      return false;
    }
    return true;
  }
}

/** Whether something accepts connections on the socket path right now. */
function isAnswering(socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      probe.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      // A full accept backlog: alive, just busy.
      else if (err.code === 'EAGAIN') resolve(true);
      else reject(err);
    });
  });
}

/** Sends a last line and closes. Closing as soon as the line is handed to the kernel, rather than
 *  waiting for the peer to hang up, keeps a client that never does from holding the descriptor. */
function refuse(socket: Socket, line: string): void {
  socket.end(line + '\n', () => socket.destroy());
}

function errorLine(id: RequestId, code: ErrorCode, message: string = ErrorCodes[code]): string {
  return JSON.stringify({ id, error: { code, message } });
}

/** The request's id when it can be echoed: a string or a finite number (JSON.parse turns 1e999 into
 *  Infinity, which would go back out as null anyway). */
function usableId(msg: unknown): RequestId {
  if (typeof msg !== 'object' || msg === null) return null;
  const id = (msg as { id?: unknown }).id;
  return typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : null;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
