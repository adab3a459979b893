import t, { type Test } from 'tap';
import { createConnection, createServer, type Socket } from 'node:net';
import { existsSync, linkSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  ControlServer,
  type ControlDispatch,
  type ControlServerOptions,
} from '../../../appliance/control/server.js';
import { callControl } from '../../../appliance/control/client.js';
import { RegisterError, isRegisterError } from '../../../appliance/errors.js';
import type { Logger } from '../../../appliance/log.js';

/** A socket path in a fresh short directory: Unix socket paths are limited to 108 bytes. */
function socketDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

interface LogEntry {
  level: 'info' | 'warn' | 'error';
  msg: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps its entries and lets a test wait for one. */
function recordingLogger() {
  const entries: LogEntry[] = [];
  const waiters: { match: (e: LogEntry) => boolean; found: (e: LogEntry) => void }[] = [];
  const at =
    (level: LogEntry['level']) =>
    (fields: Record<string, unknown>, msg: string): void => {
      const entry = { level, msg, fields };
      entries.push(entry);
      for (const w of [...waiters])
        if (w.match(entry)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.found(entry);
        }
    };
  const log: Logger = { info: at('info'), warn: at('warn'), error: at('error') };
  return {
    log,
    entries,
    /** The first entry, past or future, that matches. */
    waitFor(match: (e: LogEntry) => boolean): Promise<LogEntry> {
      const seen = entries.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((found) => waiters.push({ match, found }));
    },
  };
}

/** One line from the server, as the tests read it. */
interface Line {
  id?: unknown;
  result?: unknown;
  error?: { code: string; message: string; details?: unknown };
  event?: string;
  data?: unknown;
}

/** A raw client that speaks lines, for what callControl does not do (pipelining, garbage, pushes). */
class LineClient {
  readonly lines: Line[] = [];
  readonly closed: Promise<void>;
  errors: string[] = [];
  private buffered = '';
  private waiters: { resolve: (msg: Line) => void; reject: (err: Error) => void }[] = [];
  private ended = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const msg = JSON.parse(this.buffered.slice(0, nl)) as Line;
        this.buffered = this.buffered.slice(nl + 1);
        const waiter = this.waiters.shift();
        if (waiter) waiter.resolve(msg);
        else this.lines.push(msg);
      }
    });
    socket.on('error', (err) => this.errors.push(err.message));
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
        resolve();
      }),
    );
  }

  static connect(t: Test, socketPath: string): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        const client = new LineClient(socket);
        t.teardown(() => socket.destroy());
        resolve(client);
      });
    });
  }

  send(...messages: (string | object)[]): void {
    this.socket.write(messages.map((m) => (typeof m === 'string' ? m : JSON.stringify(m)) + '\n').join(''));
  }

  /** The next line from the server, parsed. */
  next(): Promise<Line> {
    const line = this.lines.shift();
    if (line) return Promise.resolve(line);
    if (this.ended) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async take(n: number): Promise<Line[]> {
    const out: Line[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next());
    return out;
  }

  /** Every line until the server closes the connection. */
  async rest(): Promise<Line[]> {
    await this.closed;
    return this.lines.splice(0);
  }
}

/** The fake domain: a few methods, and `wait` which holds until the test opens its gate. */
function fakeDomain() {
  const gates = new Map<string, Deferred<void>>();
  const gate = (name: string) => {
    let g = gates.get(name);
    if (!g) gates.set(name, (g = deferred()));
    return g;
  };
  const started = new Map<string, Deferred<number>>();
  const startedFor = (name: string) => {
    let s = started.get(name);
    if (!s) started.set(name, (s = deferred<number>()));
    return s;
  };
  const ended = new Map<string, Deferred<void>>();
  const endedFor = (tag: string) => {
    let e = ended.get(tag);
    if (!e) ended.set(tag, (e = deferred()));
    return e;
  };
  const events: string[] = [];
  const dispatch: ControlDispatch = async (method, params, ctx) => {
    const p = params as { gate?: string; tag?: string } | undefined;
    const tag = p?.tag ?? p?.gate ?? method;
    events.push(`start ${tag}`);
    try {
      switch (method) {
        case 'echo':
          return params;
        case 'whoami':
          return ctx.connectionId;
        case 'wait':
          startedFor(p!.gate!).resolve(ctx.connectionId);
          await gate(p!.gate!).promise;
          return { done: p!.gate };
        case 'nothing':
          return undefined;
        case 'refuse':
          throw new RegisterError('JOURNAL_DISK_FULL', 'the data partition is full', { freeBytes: 0 });
        case 'crash':
          throw new Error('SQLITE_CORRUPT at /var/lib/register/secret.db');
        case 'bigint':
          return { amountMinor: 10n };
        default:
          throw new RegisterError('UNKNOWN_METHOD', `no such method: ${method}`);
      }
    } finally {
      events.push(`end ${tag}`);
      endedFor(tag).resolve();
    }
  };
  return {
    dispatch,
    events,
    open: (name: string) => gate(name).resolve(),
    started: (name: string) => startedFor(name).promise,
    /** Resolves once the call tagged so (by params.tag, else its gate or method) has returned. */
    finished: (tag: string) => endedFor(tag).promise,
  };
}

async function startServer(t: Test, opts: Partial<ControlServerOptions> = {}) {
  const socketPath = opts.socketPath ?? path.join(socketDir(t), 'control.sock');
  const domain = fakeDomain();
  const logger = recordingLogger();
  const server = new ControlServer({ socketPath, dispatch: domain.dispatch, log: logger.log, ...opts });
  await server.start();
  t.teardown(() => server.stop());
  return { server, socketPath, domain, logger };
}

t.test('results and errors make the round trip; only RegisterErrors say what went wrong', async (t) => {
  const { socketPath, logger } = await startServer(t);
  t.same(await callControl(socketPath, 'echo', { code: '4006381333931' }), {
    ok: true,
    result: { code: '4006381333931' },
  });
  t.same(await callControl(socketPath, 'nothing', {}), { ok: true, result: null }, 'undefined is null');
  t.same(await callControl(socketPath, 'frobnicate', {}), {
    ok: false,
    error: { code: 'UNKNOWN_METHOD', message: 'no such method: frobnicate' },
  });
  t.same(await callControl(socketPath, 'refuse', {}), {
    ok: false,
    error: { code: 'JOURNAL_DISK_FULL', message: 'the data partition is full', details: { freeBytes: 0 } },
  });

  const crash = await callControl(socketPath, 'crash', {});
  t.match(crash, { ok: false, error: { code: 'INTERNAL' } });
  t.notMatch(JSON.stringify(crash), /SQLITE|secret/, 'the real error stays in the log');
  const errors = () => logger.entries.filter((e) => e.level === 'error');
  t.match(errors(), [{ fields: { method: 'crash', err: /SQLITE_CORRUPT/ } }]);
  t.match(await callControl(socketPath, 'bigint', {}), { ok: false, error: { code: 'INTERNAL' } });
  t.match(errors()[1], { msg: 'control answer is not JSON', fields: { method: 'bigint' } });

  const a = await callControl(socketPath, 'whoami', {});
  const b = await callControl(socketPath, 'whoami', {});
  t.ok(a.ok && b.ok && typeof a.result === 'number' && b.result !== a.result, 'a connection id each');
  t.same(await callControl(socketPath, 'echo', [1, 2]), { ok: true, result: [1, 2] }, 'still serving');
});

t.test('the socket is made mode 0660', async (t) => {
  const { socketPath } = await startServer(t);
  t.equal(statSync(socketPath).mode & 0o777, 0o660);
  t.ok(statSync(socketPath).isSocket());
});

t.test('one connection: requests run one at a time, answered in order', async (t) => {
  const { socketPath, domain } = await startServer(t);
  const c = await LineClient.connect(t, socketPath);
  c.send(
    { id: 1, method: 'wait', params: { gate: 'A', tag: 'A' } },
    { id: 2, method: 'wait', params: { gate: 'B', tag: 'B' } },
    { id: 3, method: 'echo', params: { tag: 'C' } },
  );
  await domain.started('A');
  // B's gate opens before A's: a server running B alongside A would answer B first.
  domain.open('B');
  domain.open('A');
  const answers = await c.take(3);
  t.same(
    answers.map((a) => a.id),
    [1, 2, 3],
  );
  t.same(answers[0], { id: 1, result: { done: 'A' } });
  t.same(domain.events, ['start A', 'end A', 'start B', 'end B', 'start C', 'end C']);
});

t.test('connections are independent: a slow command on one does not hold up another', async (t) => {
  const { socketPath, domain } = await startServer(t);
  const slow = await LineClient.connect(t, socketPath);
  slow.send({ id: 'pay', method: 'wait', params: { gate: 'card' } });
  await domain.started('card');
  t.same(await callControl(socketPath, 'echo', { x: 1 }), { ok: true, result: { x: 1 } });
  t.same(slow.lines, [], 'the payment is still waiting');
  domain.open('card');
  t.same(await slow.next(), { id: 'pay', result: { done: 'card' } });
});

t.test('subscribe: answered in order, then a snapshot, then every publish', async (t) => {
  let rev = 0;
  const { server, socketPath } = await startServer(t, { stateSnapshot: () => ({ rev }) });
  const a = await LineClient.connect(t, socketPath);
  const b = await LineClient.connect(t, socketPath);
  t.equal(server.publish({ rev: -1 }), 0, 'nobody subscribed yet');

  a.send({ id: 1, method: 'echo', params: 'first' }, { id: 2, method: 'subscribe' });
  t.same(await a.take(3), [
    { id: 1, result: 'first' },
    { id: 2, result: { subscribed: true } },
    { event: 'state', data: { rev: 0 } },
  ]);
  rev = 1;
  t.equal(server.publish({ rev }), 1);
  t.same(await a.next(), { event: 'state', data: { rev: 1 } });

  b.send({ id: 9, method: 'echo', params: 'b' });
  t.same(await b.next(), { id: 9, result: 'b' }, 'no pushes to a connection that did not subscribe');

  b.send({ method: 'subscribe' }); // as DESIGN writes it, without an id
  t.same(await b.take(2), [
    { id: null, result: { subscribed: true } },
    { event: 'state', data: { rev: 1 } },
  ]);
  t.equal(server.publish({ rev: 2 }), 2);
  t.same(await a.next(), { event: 'state', data: { rev: 2 } });
  t.same(await b.next(), { event: 'state', data: { rev: 2 } });

  t.equal(server.publish({ amountMinor: 1n }), 0, 'state that is not JSON is logged, not thrown');
});

t.test('subscribe without a snapshot source: the first push is the next publish', async (t) => {
  const { server, socketPath } = await startServer(t);
  const a = await LineClient.connect(t, socketPath);
  a.send({ id: 1, method: 'subscribe' });
  t.same(await a.next(), { id: 1, result: { subscribed: true } });
  server.publish('x');
  t.same(await a.next(), { event: 'state', data: 'x' });
});

t.test('a subscriber that stops reading is disconnected; the others keep getting pushes', async (t) => {
  const { server, socketPath, logger } = await startServer(t, { maxUnflushedBytes: 256 * 1024 });
  const stuck = await LineClient.connect(t, socketPath);
  const fine = await LineClient.connect(t, socketPath);
  for (const c of [stuck, fine]) {
    c.send({ id: 1, method: 'subscribe' });
    await c.next();
  }
  stuck.socket.pause();
  const big = 'x'.repeat(64 * 1024);
  let pushes = 0;
  const dropped = logger.waitFor((e) => e.msg.includes('not reading'));
  let gone = false;
  void dropped.then(() => (gone = true));
  // The kernel holds a few hundred KiB for the stuck client, our buffer 256 KiB more.
  while (!gone && pushes < 200) {
    server.publish({ n: ++pushes, big });
    t.equal(((await fine.next()).data as { n: number }).n, pushes);
  }
  t.ok(gone, `disconnected after ${pushes} pushes`);
  t.ok(pushes < 200);
  t.match((await dropped).fields, { dir: 'out' });
  server.publish({ n: ++pushes });
  t.same(await fine.next(), { event: 'state', data: { n: pushes } }, 'the reading one still gets pushes');
  stuck.socket.resume();
  await stuck.closed;
});

t.test('bad input is answered BAD_REQUEST, in order, and the connection stays open', async (t) => {
  const { socketPath, logger } = await startServer(t);
  const c = await LineClient.connect(t, socketPath);
  c.send(
    '{"id":1,"method":',
    '[1,2]',
    '"sale.scan"',
    '42',
    'null',
    { id: 5 },
    { id: 6, method: 7 },
    { id: 7, method: '' },
    { id: { x: 1 }, method: 'echo' },
    { id: true, method: 'echo' },
    { id: null, method: 'echo' },
    '{"id":1e999,"method":"echo"}',
    '',
    '   ',
    { id: 'abc', method: 'echo', params: { x: 1 }, jsonrpc: '2.0', extra: [1] },
    { method: 'echo', params: 'no id' },
    '{"id":8,"method":"echo","params":"crlf"}\r',
  );
  const answers = await c.take(14);
  const bad = (id: unknown) => ({ id, error: { code: 'BAD_REQUEST' } });
  t.match(answers, [
    bad(null),
    bad(null),
    bad(null),
    bad(null),
    bad(null),
    bad(5),
    bad(6),
    bad(7),
    bad(null),
    bad(null),
    bad(null),
    bad(null),
    { id: 'abc', result: { x: 1 } },
    { id: null, result: 'no id' },
  ]);
  t.equal(answers[0]!.error?.message, 'the request is not valid JSON');
  t.same(await c.next(), { id: 8, result: 'crlf' });
  t.same(c.lines, [], 'blank lines get no answer');
  t.equal(logger.entries.filter((e) => e.msg === 'bad control request').length, 12);
  t.equal(logger.entries.filter((e) => e.level === 'error').length, 0);
});

t.test('a client that half-closes after sending still gets every answer', async (t) => {
  const { socketPath } = await startServer(t);
  const c = await LineClient.connect(t, socketPath);
  c.socket.end('{"id":1,"method":"echo","params":1}\n{"id":2,"method":"echo","params":2}');
  t.same(await c.rest(), [
    { id: 1, result: 1 },
    { id: 2, result: 2 },
  ]);
});

t.test('a huge line: LINE_TOO_LONG and closed, without stopping the others', async (t) => {
  const { socketPath, logger } = await startServer(t);
  const other = await LineClient.connect(t, socketPath);
  const huge = await LineClient.connect(t, socketPath);
  huge.socket.write('x'.repeat(1024 * 1024));
  other.send({ id: 1, method: 'echo', params: 'during' });
  t.same(await other.next(), { id: 1, result: 'during' });
  t.match(await huge.rest(), [{ id: null, error: { code: 'LINE_TOO_LONG' } }]);
  t.match(
    logger.entries.filter((e) => e.level === 'warn'),
    [{ msg: /too long/, fields: { dir: 'in', limit: 64 * 1024 } }],
  );
  other.send({ id: 2, method: 'echo', params: 'after' });
  t.same(await other.next(), { id: 2, result: 'after' });
  t.same(await callControl(socketPath, 'echo', 'new'), { ok: true, result: 'new' });
});

t.test(
  'maxLineBytes counts bytes, newline excluded: a line at the limit passes, one over does not',
  async (t) => {
    const { socketPath } = await startServer(t, { maxLineBytes: 64 });
    const line = (params: string) => JSON.stringify({ id: 1, method: 'echo', params });
    const pad = 'é'.repeat(10); // 20 bytes in UTF-8
    const params = pad + 'x'.repeat(64 - Buffer.byteLength(line(pad)));
    const atLimit = Buffer.from(line(params));
    t.equal(atLimit.length, 64);
    const ok = await LineClient.connect(t, socketPath);
    // Sent in pieces, one of them cutting an é in half, so the line is put together across chunks.
    for (const piece of [atLimit.subarray(0, 10), atLimit.subarray(10, 35), atLimit.subarray(35)])
      await new Promise((r) => ok.socket.write(piece, r));
    ok.socket.write('\n');
    t.same(await ok.next(), { id: 1, result: params });

    const over = await LineClient.connect(t, socketPath);
    over.socket.write(atLimit + ' \n');
    t.match(await over.rest(), [{ error: { code: 'LINE_TOO_LONG' } }]);
  },
);

t.test('too many connections: the extra one gets BUSY and is closed', async (t) => {
  const { socketPath, logger, domain } = await startServer(t, { maxConnections: 2, maxLineBytes: 1024 });
  const a = await LineClient.connect(t, socketPath);
  const b = await LineClient.connect(t, socketPath);
  a.send({ id: 1, method: 'wait', params: { gate: 'A' } });
  b.send({ id: 1, method: 'whoami' });
  const idA = await domain.started('A');
  await b.next();
  // The refusal is about the connection, not a request, so it carries id null.
  const extra = await LineClient.connect(t, socketPath);
  extra.send({ id: 1, method: 'echo', params: 1 });
  t.match(await extra.rest(), [{ id: null, error: { code: 'BUSY' } }]);
  t.match(
    logger.entries.filter((e) => e.level === 'warn'),
    [{ msg: /too many connections/, fields: { limit: 2 } }],
  );

  // A connection closed while its command runs keeps its slot until the command is done.
  a.socket.write('x'.repeat(2048));
  t.match(await a.rest(), [{ error: { code: 'LINE_TOO_LONG' } }]);
  const closed = await logger.waitFor(
    (e) => e.msg === 'control connection closed' && e.fields.connectionId === idA,
  );
  t.match(closed.fields, { stillRunning: 1 });
  const stillFull = await LineClient.connect(t, socketPath);
  t.match(await stillFull.rest(), [{ error: { code: 'BUSY' } }]);
  domain.open('A');
  await domain.finished('A');
  t.same(await callControl(socketPath, 'echo', 2), { ok: true, result: 2 }, 'a freed slot is usable');
});

t.test('too many requests pending on one connection: BUSY for the excess only', async (t) => {
  const { socketPath, domain } = await startServer(t, { maxPendingPerConnection: 2 });
  const c = await LineClient.connect(t, socketPath);
  c.send(
    { id: 1, method: 'wait', params: { gate: 'A' } },
    { id: 2, method: 'echo', params: 2 },
    { id: 3, method: 'echo', params: 3 },
    '{"id":4,"method":',
  );
  t.match(await c.take(2), [
    { id: 3, error: { code: 'BUSY' } },
    { id: null, error: { code: 'BUSY' } },
  ]);
  domain.open('A');
  t.same(await c.take(2), [
    { id: 1, result: { done: 'A' } },
    { id: 2, result: 2 },
  ]);
  c.send({ id: 5, method: 'echo', params: 5 });
  t.same(await c.next(), { id: 5, result: 5 }, 'room again once answered');
});

t.test(
  'a client that hangs up mid-command: what it sent still runs, in order; answers are dropped',
  async (t) => {
    const { socketPath, domain, logger } = await startServer(t);
    const c = await LineClient.connect(t, socketPath);
    c.send(
      { id: 1, method: 'wait', params: { gate: 'A', tag: 'A' } },
      { id: 2, method: 'echo', params: { tag: 'queued' } },
    );
    const connectionId = await domain.started('A');
    c.socket.destroy();
    domain.open('A');
    const closed = await logger.waitFor(
      (e) => e.msg === 'control connection closed' && e.fields.connectionId === connectionId,
    );
    t.ok(closed);
    await domain.finished('queued');
    t.same(await callControl(socketPath, 'echo', { tag: 'other' }), { ok: true, result: { tag: 'other' } });
    t.same(domain.events, ['start A', 'end A', 'start queued', 'end queued', 'start other', 'end other']);
    t.same(
      logger.entries.filter((e) => e.level !== 'info'),
      [],
      'nothing worse than info logged',
    );
  },
);

t.test('start removes a stale socket file left by a dead process', async (t) => {
  const dir = socketDir(t);
  const socketPath = path.join(dir, 'control.sock');
  // A listener's socket file outlives it under a second name: what a SIGKILLed registerd leaves.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(path.join(dir, 'dead.sock'), r));
  linkSync(path.join(dir, 'dead.sock'), socketPath);
  await new Promise((r) => dead.close(r));
  t.ok(statSync(socketPath).isSocket());
  await t.rejects(callControl(socketPath, 'echo', 1), { code: 'CONTROL_UNAVAILABLE' }, 'nobody answers');

  const { logger } = await startServer(t, { socketPath });
  t.ok(logger.entries.find((e) => /stale/.test(e.msg)));
  t.same(await callControl(socketPath, 'echo', 1), { ok: true, result: 1 });
});

t.test('start refuses a socket a live server answers on, and a path that is not a socket', async (t) => {
  const { socketPath } = await startServer(t);
  const second = new ControlServer({ socketPath, dispatch: () => 'second' });
  await t.rejects(second.start(), { code: 'CONTROL_SOCKET_IN_USE', message: /already answering/ });
  t.same(await callControl(socketPath, 'echo', 1), { ok: true, result: 1 }, 'the first one still serves');
  await second.stop();
  t.ok(existsSync(socketPath), 'and its socket is left alone');

  const file = path.join(socketDir(t), 'control.sock');
  writeFileSync(file, 'not a socket');
  const third = new ControlServer({ socketPath: file, dispatch: () => null });
  const err = await third.start().catch((e: unknown) => e);
  t.ok(isRegisterError(err, 'CONFIG_INVALID'), String(err));
  t.equal(readFileSync(file, 'utf8'), 'not a socket', 'never removed');

  const long = new ControlServer({ socketPath: '/tmp/' + 'x'.repeat(120), dispatch: () => null });
  await t.rejects(long.start(), { code: 'CONFIG_INVALID', message: /longer than 107 bytes/ });
});

t.test(
  'stop closes every connection and removes the socket file; a running command is harmless',
  async (t) => {
    const { server, socketPath, domain, logger } = await startServer(t);
    const idle = await LineClient.connect(t, socketPath);
    const busy = await LineClient.connect(t, socketPath);
    busy.send({ id: 1, method: 'wait', params: { gate: 'A' } });
    await domain.started('A');
    await server.stop();
    t.notOk(existsSync(socketPath));
    await idle.closed;
    await busy.closed;
    domain.open('A');
    await t.rejects(callControl(socketPath, 'echo', 1), { code: 'CONTROL_UNAVAILABLE' });
    await server.stop(); // twice is fine
    t.same(
      logger.entries.filter((e) => e.level === 'error'),
      [],
    );

    await server.start();
    t.same(await callControl(socketPath, 'echo', 'again'), { ok: true, result: 'again' }, 'restartable');
  },
);
