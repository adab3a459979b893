// The ledger's HTTP API ◆ (docs/ledger-api.md): JSON over node:http, a table of routes, each request
// through a middleware chain (authentication: ledger/auth/), bounded bodies, and errors as
// `{error: {code, message, details?}}` with the ledger's stable codes. Routes say who may call them;
// the fleet page adds its own routes (HTML, SVG, server-sent events) through the same table.
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { MAX_PAYLOAD_BYTES, topics, WireId } from '../cloud-bridge/protocol/wire.js';
import { silentLogger, type Logger } from '../appliance/log.js';
import type { LedgerDb } from './db/open.js';
import type { ExceptionKind } from './db/schema.js';
import { isLedgerError, type LedgerErrorCode } from './errors.js';
import {
  EXCEPTION_KINDS,
  getSale,
  getStock,
  getStoreDocument,
  listDevices,
  listExceptions,
  listSales,
  listStock,
  putStoreDocument,
  resolveException,
  type StoreDocumentKind,
} from './queries.js';
import {
  getOnlineOrder,
  placeOnlineOrder,
  receiveStock,
  setStock,
  type OnlineOrderRequest,
} from './stock.js';

export const HTTP_DEFAULTS = {
  /** Largest request body, bytes: an order or a count is a few KiB; this leaves room and bounds memory. */
  maxBodyBytes: 1024 * 1024,
  /**
   * Largest store document body, bytes: what a register accepts on the wire (MAX_PAYLOAD_BYTES), since
   * the document goes out as one retained MQTT message. A 100,000-product catalog needs about this.
   */
  maxDocumentBytes: MAX_PAYLOAD_BYTES,
  /** ms a request may take to arrive in full (headers and body) before it is cut off. */
  requestTimeoutMs: 30_000,
  /** ms an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: 5_000,
  /** Open connections, count: a back office and a web shop, not the public. */
  maxConnections: 1000,
  /** ms the publish of a stored document may wait for the broker's PUBACK before answering anyway. */
  publishTimeoutMs: 5_000,
  /** ms `stop()` lets requests in progress finish before their connections are closed. */
  stopGraceMs: 5_000,
} as const;

/**
 * Errors of the HTTP layer itself, beside the ledger's codes (ledger/errors.ts): the request could not
 * be read as one, or there is no such route.
 */
export const HttpErrorCodes = {
  BAD_JSON: 'the body is not JSON',
  BODY_TOO_LARGE: 'the body is larger than this endpoint accepts',
  UNSUPPORTED_MEDIA_TYPE: 'send the body as application/json',
  ROUTE_NOT_FOUND: 'no such endpoint',
  METHOD_NOT_ALLOWED: 'the endpoint does not take this method',
  INTERNAL: 'the ledger failed to answer; it is logged',
} as const;
export type HttpErrorCode = keyof typeof HttpErrorCodes;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: HttpErrorCode,
    message: string = HttpErrorCodes[code],
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The HTTP status each ledger error code answers with. */
export const LEDGER_ERROR_STATUS: Record<LedgerErrorCode, number> = {
  BAD_DB_URL: 500,
  MIGRATION_FAILED: 500,
  BAD_PARAMS: 422,
  NOT_FOUND: 404,
  STOCK_SHORT: 409,
  ORDER_CONFLICT: 409,
  ALREADY_RESOLVED: 409,
  BAD_STATUS: 422,
  BAD_DOCUMENT: 422,
  VERSION_NOT_NEWER: 409,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  CSRF: 403,
  BAD_LOGIN: 401,
  TOO_MANY_ATTEMPTS: 429,
  OPERATOR_EXISTS: 409,
  BUSY: 503,
  ENROL_REFUSED: 403,
  ENROL_EXPIRED: 403,
  ENROL_USED: 409,
  ENROL_UNAVAILABLE: 503,
  ENROLMENT_EXISTS: 409,
};

export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string | string[]>;
  /** A body that is not JSON (a page, a picture): sent as is, `body` ignored. */
  raw?: { contentType: string; body: string | Buffer };
  /**
   * A response that stays open (server-sent events): called with the response after the head is
   * written; the stream ends it. The API ends every open stream first when it stops.
   */
  stream?: (res: http.ServerResponse) => void;
}

/** Who may call a route: anyone, or a principal of one of these roles (ledger/auth/access.ts). */
export type Role = 'admin' | 'viewer' | 'shop';
export type Access = 'public' | readonly Role[];

/** One request as routes and middleware see it. */
export interface RequestContext {
  req: http.IncomingMessage;
  method: string;
  path: string;
  /** The route's `:name` segments, decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** The route's name (e.g. `stock.get`), for middleware that decides per route. */
  route: string;
  /** Who may call the route. */
  access: Access;
  /** Reads the JSON body (once), within the route's size bound. */
  body(): Promise<unknown>;
  nowMs: number;
  /** Whatever middleware wants to hand to routes (e.g. the authenticated principal). */
  locals: Record<string, unknown>;
}

export type Middleware = (ctx: RequestContext, next: () => Promise<ApiResponse>) => Promise<ApiResponse>;

export interface Route {
  method: 'GET' | 'PUT' | 'POST';
  /** Segments; `:name` binds a parameter. */
  path: string;
  name: string;
  /** Default: viewers and admins may GET, only admins change anything. */
  access?: Access;
  maxBodyBytes?: number;
  handle(ctx: RequestContext): Promise<ApiResponse>;
}

/** Reads are for every operator, changes for admins. */
const READ: Access = ['viewer', 'admin'];
const ADMIN: Access = ['admin'];

export interface HttpApiOptions {
  ldb: LedgerDb;
  /** Publishes a store document retained, QoS 1; resolves on the broker's PUBACK. */
  publishRetained(topic: string, payload: string): Promise<void>;
  /** Whether the ledger's MQTT link is up, for /healthz. */
  mqttConnected?: () => boolean;
  /** Run in order before every route (authentication, rate limits). */
  middleware?: Middleware[];
  /** More routes (the fleet page, login), matched after the API's own. */
  routes?: Route[];
  /** Called after a change went through (a non-GET answered 2xx): the live page is told. */
  onChange?: (route: string) => void;
  clock?: { nowMs(): number };
  log?: Logger;
  maxBodyBytes?: number;
}

const ok = (body: unknown, status = 200): ApiResponse => ({ status, body });
const notFound = (message: string): ApiResponse => ({
  status: 404,
  body: { error: { code: 'NOT_FOUND', message } },
});

function intParam(query: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!/^-?\d{1,16}$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new HttpInputError(`${name} is an integer from ${min} to ${max}`, { [name]: raw });
  return n;
}

function stringParam(query: URLSearchParams, name: string, max = 128): string | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  if (raw.length < 1 || raw.length > max)
    throw new HttpInputError(`${name} is 1 to ${max} characters`, { [name]: raw.slice(0, max) });
  return raw;
}

/** A query or path value that is not valid: answered as the ledger's BAD_PARAMS. */
class HttpInputError extends Error {
  constructor(
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new HttpInputError('the body is a JSON object');
  return body as Record<string, unknown>;
}

function isoRef(prefix: string, nowMs: number): string {
  return `${prefix}@${new Date(nowMs).toISOString()}`;
}

function optionalRef(body: Record<string, unknown>, prefix: string, nowMs: number): string {
  if (body.ref === undefined) return isoRef(prefix, nowMs);
  if (typeof body.ref !== 'string') throw new HttpInputError('ref is a string of 1 to 80 characters');
  return body.ref;
}

function storeId(ctx: RequestContext): string {
  const id = ctx.params.storeId!;
  if (!WireId.safeParse(id).success)
    throw new HttpInputError('a store id is 1 to 64 of A-Z a-z 0-9 . _ -', { storeId: id });
  return id;
}

export class LedgerHttpApi {
  private server: http.Server | undefined;
  private readonly routes: Route[];
  private readonly log: Logger;
  private boundPort = 0;
  private host = '127.0.0.1';
  private tls = false;
  /** Responses left open (server-sent events), ended first on stop. */
  private readonly streams = new Set<http.ServerResponse>();

  constructor(private readonly opts: HttpApiOptions) {
    this.log = opts.log ?? silentLogger;
    this.routes = [...this.buildRoutes(), ...(opts.routes ?? [])];
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const scheme = this.tls ? 'https' : 'http';
    return `${scheme}://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.boundPort}`;
  }

  /**
   * Listens on host:port (0: any free port); resolves with the bound port. With `tls` (a certificate
   * and key, PEM) it speaks HTTPS: what registers enrolling from the field need (docs/operators.md).
   */
  async start(
    port: number,
    host = '127.0.0.1',
    tls?: { cert: Buffer; key: Buffer },
  ): Promise<{ port: number; url: string }> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.serve(req, res);
    const server = tls
      ? https.createServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler)
      : http.createServer(handler);
    this.tls = tls !== undefined;
    server.requestTimeout = HTTP_DEFAULTS.requestTimeoutMs;
    server.headersTimeout = Math.min(HTTP_DEFAULTS.requestTimeoutMs, 60_000);
    server.keepAliveTimeout = HTTP_DEFAULTS.keepAliveTimeoutMs;
    server.maxConnections = HTTP_DEFAULTS.maxConnections;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err: err.message }, 'http listener error'));
    this.server = server;
    this.host = host;
    this.boundPort = (server.address() as AddressInfo).port;
    this.log.info({ host, port: this.boundPort }, 'http listening');
    return { port: this.boundPort, url: this.url };
  }

  /** Stops accepting; requests in progress get `stopGraceMs` to finish. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const res of this.streams) res.end();
    this.streams.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closed,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, HTTP_DEFAULTS.stopGraceMs);
      }),
    ]);
    clearTimeout(timer);
    await closed;
    this.log.info({}, 'http stopped');
  }

  /** The request handler, for a server of the caller's own (tests, a TLS front). */
  readonly serve = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const started = performance.now();
    let response: ApiResponse;
    let routeName = '-';
    try {
      const url = new URL(req.url ?? '/', 'http://ledger');
      const { route, params } = this.match(req.method ?? 'GET', url.pathname);
      routeName = route.name;
      const nowMs = this.opts.clock?.nowMs() ?? Date.now();
      const maxBodyBytes = route.maxBodyBytes ?? this.opts.maxBodyBytes ?? HTTP_DEFAULTS.maxBodyBytes;
      let bodyRead: Promise<unknown> | undefined;
      const ctx: RequestContext = {
        req,
        method: req.method ?? 'GET',
        path: url.pathname,
        params,
        query: url.searchParams,
        route: route.name,
        access: route.access ?? (route.method === 'GET' ? READ : ADMIN),
        body: () => (bodyRead ??= readJsonBody(req, maxBodyBytes)),
        nowMs,
        locals: {},
      };
      const chain = [...(this.opts.middleware ?? [])];
      const run = (i: number): Promise<ApiResponse> =>
        i < chain.length ? chain[i]!(ctx, () => run(i + 1)) : route.handle(ctx);
      response = await run(0);
    } catch (err) {
      response = this.errorResponse(err, routeName);
    }
    if (req.method !== 'GET' && response.status < 300 && routeName !== '-') this.opts.onChange?.(routeName);
    const common = {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    if (response.stream && this.server) {
      res.writeHead(response.status, { ...common, ...response.headers });
      this.streams.add(res);
      res.on('close', () => this.streams.delete(res));
      response.stream(res);
    } else {
      const payload = response.raw?.body ?? JSON.stringify(response.body);
      res.writeHead(response.status, {
        'content-type': response.raw?.contentType ?? 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(payload),
        ...common,
        ...response.headers,
      });
      res.end(payload);
    }
    this.log.info(
      {
        dir: 'in',
        method: req.method,
        path: req.url?.split('?')[0],
        route: routeName,
        status: response.status,
        ms: Math.round(performance.now() - started),
      },
      'http',
    );
  };

  private errorResponse(err: unknown, route: string): ApiResponse {
    if (isLedgerError(err)) {
      const details = Object.keys(err.details).length ? { details: err.details } : {};
      return {
        status: LEDGER_ERROR_STATUS[err.code] ?? 500,
        body: { error: { code: err.code, message: err.message, ...details } },
      };
    }
    if (err instanceof HttpInputError) {
      const details = Object.keys(err.details).length ? { details: err.details } : {};
      return { status: 422, body: { error: { code: 'BAD_PARAMS', message: err.message, ...details } } };
    }
    if (err instanceof HttpError) {
      const details = Object.keys(err.details).length ? { details: err.details } : {};
      const headers: Record<string, string> =
        err.code === 'METHOD_NOT_ALLOWED'
          ? { allow: String(err.details.allow ?? '') }
          : err.code === 'BODY_TOO_LARGE'
            ? { connection: 'close' } // the rest of the body is not wanted
            : {};
      return {
        status: err.status,
        headers,
        body: { error: { code: err.code, message: err.message, ...details } },
      };
    }
    this.log.error({ route, err: String((err as Error)?.stack ?? err) }, 'http request failed');
    return { status: 500, body: { error: { code: 'INTERNAL', message: HttpErrorCodes.INTERNAL } } };
  }

  private match(method: string, pathname: string): { route: Route; params: Record<string, string> } {
    const segments = pathname.split('/').filter(Boolean);
    const allowed: string[] = [];
    for (const route of this.routes) {
      const parts = route.path.split('/').filter(Boolean);
      if (parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let hit = true;
      for (let i = 0; i < parts.length && hit; i++) {
        const part = parts[i]!;
        if (part.startsWith(':')) {
          try {
            params[part.slice(1)] = decodeURIComponent(segments[i]!);
          } catch {
            throw new HttpInputError(`the path segment ${part.slice(1)} is not valid percent-encoding`);
          }
        } else hit = part === segments[i];
      }
      if (!hit) continue;
      if (route.method === method) return { route, params };
      allowed.push(route.method);
    }
    if (allowed.length)
      throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`, {
        allow: [...new Set(allowed)].join(', '),
      });
    throw new HttpError(404, 'ROUTE_NOT_FOUND', `no endpoint ${pathname}`);
  }

  private buildRoutes(): Route[] {
    const { ldb } = this.opts;
    const publishDocument = async (storeId: string, kind: StoreDocumentKind, body: unknown) => {
      const topic = kind === 'catalog' ? topics.catalog(storeId) : topics.cashiers(storeId);
      try {
        await withTimeout(
          this.opts.publishRetained(topic, JSON.stringify(body)),
          HTTP_DEFAULTS.publishTimeoutMs,
        );
        return true;
      } catch (err) {
        // Stored all the same: the ledger republishes every store's newest documents on (re)connect.
        this.log.warn(
          { dir: 'out', topic, err: (err as Error).message },
          'document stored, not yet published',
        );
        return false;
      }
    };
    const putDocument =
      (kind: StoreDocumentKind) =>
      async (ctx: RequestContext): Promise<ApiResponse> => {
        const id = storeId(ctx);
        const doc = await putStoreDocument(ldb, id, kind, await ctx.body(), ctx.nowMs);
        const published = await publishDocument(id, kind, doc.body);
        return ok({ storeId: id, kind, version: doc.version, publishedAt: doc.publishedAt, published });
      };
    const getDocument = (kind: StoreDocumentKind) => async (ctx: RequestContext) => {
      const doc = await getStoreDocument(ldb, storeId(ctx), kind);
      return doc ? ok(doc) : notFound(`store ${ctx.params.storeId} has no ${kind} yet`);
    };

    return [
      {
        method: 'GET',
        path: '/healthz',
        name: 'health',
        access: 'public',
        handle: async () => {
          const mqtt = this.opts.mqttConnected?.() ?? null;
          try {
            await sql`select 1`.execute(ldb.db);
          } catch (err) {
            return ok({ status: 'down', db: false, mqtt, err: (err as Error).message }, 503);
          }
          return ok({ status: mqtt === false ? 'degraded' : 'ok', db: true, dialect: ldb.dialect, mqtt });
        },
      },
      {
        method: 'GET',
        path: '/api/stock',
        name: 'stock.list',
        handle: async (ctx) => {
          const limit = intParam(ctx.query, 'limit', 1, 500) ?? 500;
          const stock = await listStock(ldb, { after: stringParam(ctx.query, 'after', 40), limit });
          return ok({ stock, next: stock.length === limit ? stock[stock.length - 1]!.sku : null });
        },
      },
      {
        method: 'GET',
        path: '/api/stock/:sku',
        name: 'stock.get',
        handle: async (ctx) => {
          const level = await getStock(ldb, ctx.params.sku!);
          return level ? ok(level) : notFound(`no stock record for ${ctx.params.sku}`);
        },
      },
      {
        method: 'PUT',
        path: '/api/stock/:sku',
        name: 'stock.count',
        handle: async (ctx) => {
          const body = objectBody(await ctx.body());
          if (typeof body.onHand !== 'number') throw new HttpInputError('onHand is the counted quantity');
          const ref = optionalRef(body, 'count', ctx.nowMs);
          return ok(await setStock(ldb, ctx.params.sku!, body.onHand, ref, ctx.nowMs));
        },
      },
      {
        method: 'POST',
        path: '/api/stock/:sku/receive',
        name: 'stock.receive',
        handle: async (ctx) => {
          const body = objectBody(await ctx.body());
          if (typeof body.qty !== 'number') throw new HttpInputError('qty is the received quantity');
          const ref = optionalRef(body, 'delivery', ctx.nowMs);
          return ok(await receiveStock(ldb, ctx.params.sku!, body.qty, ref, ctx.nowMs));
        },
      },
      {
        method: 'POST',
        path: '/api/online-orders',
        name: 'orders.place',
        // The web shop places orders with its own token, not an operator's session.
        access: ['shop', 'admin'],
        handle: async (ctx) => {
          const body = objectBody(await ctx.body());
          const placed = await placeOnlineOrder(ldb, body as unknown as OnlineOrderRequest, ctx.nowMs);
          return ok(placed, placed.status === 'placed' ? 201 : 200);
        },
      },
      {
        method: 'GET',
        path: '/api/online-orders/:orderId',
        name: 'orders.get',
        access: ['shop', 'viewer', 'admin'],
        handle: async (ctx) => {
          const order = await getOnlineOrder(ldb, ctx.params.orderId!);
          return order ? ok(order) : notFound(`no order ${ctx.params.orderId}`);
        },
      },
      {
        method: 'PUT',
        path: '/api/stores/:storeId/catalog',
        name: 'stores.catalog.put',
        maxBodyBytes: HTTP_DEFAULTS.maxDocumentBytes,
        handle: putDocument('catalog'),
      },
      {
        method: 'PUT',
        path: '/api/stores/:storeId/cashiers',
        name: 'stores.cashiers.put',
        maxBodyBytes: HTTP_DEFAULTS.maxDocumentBytes,
        handle: putDocument('cashiers'),
      },
      {
        method: 'GET',
        path: '/api/stores/:storeId/catalog',
        name: 'stores.catalog.get',
        handle: getDocument('catalog'),
      },
      {
        method: 'GET',
        path: '/api/stores/:storeId/cashiers',
        name: 'stores.cashiers.get',
        handle: getDocument('cashiers'),
      },
      {
        method: 'GET',
        path: '/api/devices',
        name: 'devices.list',
        handle: async (ctx) => {
          const storeId = stringParam(ctx.query, 'storeId', 64);
          return ok({ devices: await listDevices(ldb, storeId === undefined ? {} : { storeId }) });
        },
      },
      {
        method: 'GET',
        path: '/api/sales',
        name: 'sales.list',
        handle: async (ctx) => {
          const q = ctx.query;
          return ok(
            await listSales(ldb, {
              storeId: stringParam(q, 'storeId', 64),
              deviceId: stringParam(q, 'deviceId', 64),
              limit: intParam(q, 'limit', 1, 500),
              before: stringParam(q, 'before', 160),
            }),
          );
        },
      },
      {
        method: 'GET',
        path: '/api/sales/:saleId',
        name: 'sales.get',
        handle: async (ctx) => {
          const sale = await getSale(ldb, ctx.params.saleId!);
          return sale ? ok(sale) : notFound(`no sale ${ctx.params.saleId}`);
        },
      },
      {
        method: 'GET',
        path: '/api/exceptions',
        name: 'exceptions.list',
        handle: async (ctx) => {
          const q = ctx.query;
          const kind = stringParam(q, 'kind', 20);
          if (kind !== undefined && !(EXCEPTION_KINDS as readonly string[]).includes(kind))
            throw new HttpInputError(`kind is one of ${EXCEPTION_KINDS.join(', ')}`, { kind });
          const open = stringParam(q, 'open', 5);
          if (open !== undefined && open !== 'true' && open !== 'false')
            throw new HttpInputError('open is true or false', { open });
          const exceptions = await listExceptions(ldb, {
            kind: kind as ExceptionKind | undefined,
            open: open === undefined ? undefined : open === 'true',
            deviceId: stringParam(q, 'deviceId', 64),
            limit: intParam(q, 'limit', 1, 500),
            before: intParam(q, 'before', 1, Number.MAX_SAFE_INTEGER),
          });
          return ok({ exceptions });
        },
      },
      {
        method: 'POST',
        path: '/api/exceptions/:id/resolve',
        name: 'exceptions.resolve',
        handle: async (ctx) => {
          const id = ctx.params.id!;
          if (!/^\d{1,15}$/.test(id)) throw new HttpInputError('an exception id is an integer', { id });
          const body = objectBody(await ctx.body());
          if (typeof body.resolution !== 'string')
            throw new HttpInputError('resolution says what was done (1 to 500 characters)');
          return ok(await resolveException(ldb, Number(id), body.resolution, ctx.nowMs));
        },
      },
    ];
  }
}

/**
 * The body as JSON, refusing another media type and anything past `maxBytes` without buffering it (the
 * rest is read and dropped, within the request timeout; the answer closes the connection).
 */
function readJsonBody(req: http.IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') return Promise.reject(new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE'));
  const tooLarge = () =>
    new HttpError(413, 'BODY_TOO_LARGE', `the body is over ${maxBytes} bytes`, { maxBytes });
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > maxBytes) {
        refused = true;
        chunks.length = 0;
        reject(tooLarge());
      } else chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (refused) return;
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(new HttpError(400, 'BAD_JSON', `the body is not JSON: ${(err as Error).message}`));
      }
    });
  });
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
