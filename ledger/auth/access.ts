// Who is asking, and may they: the HTTP middleware that finds the principal of a request (an operator's
// session cookie, an API token, or — in `loopback` mode — a program on this machine), checks the
// route's roles, and asks every change made with a session cookie for the session's CSRF token. Also
// the login, logout and session routes.
import type { IncomingMessage } from 'node:http';
import type { LedgerDb } from '../db/open.js';
import { LedgerError } from '../errors.js';
import type { ApiResponse, Middleware, RequestContext, Role, Route } from '../http.js';
import { checkLogin, getOperator } from './operators.js';
import {
  clearedCookie,
  readCookie,
  sameToken,
  SESSION_COOKIE,
  sessionCookie,
  SessionStore,
  type Session,
} from './sessions.js';

export const AUTH_DEFAULTS = {
  /** Failed logins per operator name in `failureWindowMs` before the name is refused for the rest of it. */
  maxFailures: 10,
  /** ms: 15 min, the window failed logins are counted in. */
  failureWindowMs: 15 * 60 * 1000,
  /** Names whose failures are counted, at most: a bound on the table an attacker can fill. */
  maxTrackedNames: 10_000,
} as const;

/**
 * `required`: every /api route needs a session or a token. `loopback`: a program on this machine (a
 * request from a loopback address that no browser sent) may use /api without one, as before operators
 * existed; everything else, and the fleet page always, needs one.
 */
export type ApiAuthMode = 'required' | 'loopback';

export interface ApiToken {
  /** What logs call it (never the token). */
  name: string;
  token: string;
  role: Role;
}

export type Principal =
  | { kind: 'session'; operator: string; role: Role; session: Session; sessionId: string }
  | { kind: 'token'; name: string; role: Role }
  | { kind: 'loopback'; role: Role };

export interface AuthOptions {
  ldb: LedgerDb;
  apiAuth: ApiAuthMode;
  apiTokens?: ApiToken[];
  /** Add `Secure` to the cookie: the page is served over TLS (directly or by a proxy in front). */
  secureCookies?: boolean;
  sessions?: SessionStore;
  /** Security time (session expiry, login throttling): real time unless a test says otherwise. */
  clock?: { nowMs(): number };
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/**
 * Whether the request names this machine as its host: a page of another site that had its name
 * re-pointed at 127.0.0.1 (DNS rebinding) still sends its own name in Host.
 */
function addressedToLoopback(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** Whether a browser sent this: browsers send Sec-Fetch-Site (and Origin on changes); programs do not. */
function fromBrowser(req: IncomingMessage): boolean {
  return req.headers['sec-fetch-site'] !== undefined || req.headers.origin !== undefined;
}

export class OperatorAuth {
  readonly sessions: SessionStore;
  private readonly clock: { nowMs(): number };
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(private readonly opts: AuthOptions) {
    this.clock = opts.clock ?? { nowMs: () => Date.now() };
    this.sessions = opts.sessions ?? new SessionStore({ clock: this.clock });
    for (const t of opts.apiTokens ?? [])
      if (t.token.length < 32)
        throw new LedgerError('BAD_PARAMS', `API token ${t.name} is under 32 characters`);
  }

  private get secure(): boolean {
    return this.opts.secureCookies ?? false;
  }

  /** The principal of a request, or null. A session whose operator was removed is ended here. */
  async principal(ctx: RequestContext): Promise<Principal | null> {
    const { req } = ctx;
    const sessionId = readCookie(req.headers.cookie, SESSION_COOKIE);
    const session = this.sessions.get(sessionId);
    if (session && sessionId) {
      // The role as it is now: a demoted or removed operator loses access at the next request.
      const operator = await getOperator(this.opts.ldb, session.operator);
      if (!operator) {
        this.sessions.endAllOf(session.operator);
        return null;
      }
      session.role = operator.role;
      return { kind: 'session', operator: operator.name, role: operator.role, session, sessionId };
    }
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) {
      const presented = auth.slice(7).trim();
      // Every token is compared, so the time taken does not say which one nearly matched.
      let found: ApiToken | undefined;
      for (const t of this.opts.apiTokens ?? []) if (sameToken(presented, t.token)) found = t;
      return found ? { kind: 'token', name: found.name, role: found.role } : null;
    }
    if (
      this.opts.apiAuth === 'loopback' &&
      ctx.path.startsWith('/api/') &&
      isLoopback(req.socket.remoteAddress) &&
      addressedToLoopback(req.headers.host) &&
      !fromBrowser(req)
    )
      return { kind: 'loopback', role: 'admin' };
    return null;
  }

  readonly middleware: Middleware = async (ctx, next) => {
    if (ctx.access === 'public') return next();
    const principal = await this.principal(ctx);
    if (!principal) {
      // A person at the page goes to the login; a program gets the error.
      if (ctx.route === 'fleet.page')
        return { status: 303, body: null, headers: { location: '/fleet/login' } };
      throw new LedgerError('UNAUTHENTICATED');
    }
    if (!ctx.access.includes(principal.role))
      throw new LedgerError('FORBIDDEN', `${principal.role} may not ${ctx.route}`, { role: principal.role });
    if (principal.kind === 'session' && ctx.method !== 'GET') {
      const presented = ctx.req.headers['x-csrf-token'];
      if (typeof presented !== 'string' || !sameToken(presented, principal.session.csrfToken))
        throw new LedgerError('CSRF');
    }
    ctx.locals.principal = principal;
    return next();
  };

  private throttled(name: string): boolean {
    const f = this.failures.get(name);
    if (!f) return false;
    if (this.clock.nowMs() - f.since > AUTH_DEFAULTS.failureWindowMs) {
      this.failures.delete(name);
      return false;
    }
    return f.count >= AUTH_DEFAULTS.maxFailures;
  }

  private failed(name: string): void {
    const now = this.clock.nowMs();
    const f = this.failures.get(name);
    if (f && now - f.since <= AUTH_DEFAULTS.failureWindowMs) f.count++;
    else {
      if (this.failures.size >= AUTH_DEFAULTS.maxTrackedNames)
        this.failures.delete(this.failures.keys().next().value!);
      this.failures.set(name, { count: 1, since: now });
    }
  }

  /** POST /auth/login, POST /auth/logout, GET /auth/session. */
  routes(): Route[] {
    const login = async (ctx: RequestContext): Promise<ApiResponse> => {
      // A login posted from another site's page (login CSRF) is refused; the JSON body already forces a
      // preflight, this is the belt to those braces.
      const origin = ctx.req.headers.origin;
      if (origin !== undefined && origin !== 'null') {
        let host: string | undefined;
        try {
          host = new URL(origin).host;
        } catch {
          host = undefined;
        }
        if (host !== ctx.req.headers.host) throw new LedgerError('CSRF', 'a login from another site');
      } else if (origin === 'null') throw new LedgerError('CSRF', 'a login from an opaque origin');
      const body = (await ctx.body()) as { name?: unknown; password?: unknown } | null;
      const name = typeof body?.name === 'string' ? body.name.trim().toLowerCase().slice(0, 64) : '';
      const password = typeof body?.password === 'string' ? body.password : '';
      if (!name || !password) throw new LedgerError('BAD_PARAMS', 'name and password');
      if (this.throttled(name)) throw new LedgerError('TOO_MANY_ATTEMPTS');
      const operator = await checkLogin(this.opts.ldb, name, password);
      if (!operator) {
        this.failed(name);
        throw new LedgerError('BAD_LOGIN');
      }
      this.failures.delete(name);
      // A fresh id at every login: a cookie planted before it (session fixation) is worth nothing.
      this.sessions.delete(readCookie(ctx.req.headers.cookie, SESSION_COOKIE));
      const { id, session } = this.sessions.create(operator.name, operator.role);
      return {
        status: 200,
        headers: { 'set-cookie': sessionCookie(id, this.sessions.cookieMaxAgeS, this.secure) },
        body: { operator: operator.name, role: operator.role, csrfToken: session.csrfToken },
      };
    };
    return [
      { method: 'POST', path: '/auth/login', name: 'auth.login', access: 'public', handle: login },
      {
        method: 'POST',
        path: '/auth/logout',
        name: 'auth.logout',
        access: ['viewer', 'admin'],
        handle: async (ctx) => {
          const p = ctx.locals.principal as Principal;
          if (p.kind === 'session') this.sessions.delete(p.sessionId);
          return {
            status: 200,
            headers: { 'set-cookie': clearedCookie(this.secure) },
            body: { loggedOut: true },
          };
        },
      },
      {
        method: 'GET',
        path: '/auth/session',
        name: 'auth.session',
        access: ['viewer', 'admin'],
        handle: async (ctx) => {
          const p = ctx.locals.principal as Principal;
          if (p.kind !== 'session') throw new LedgerError('UNAUTHENTICATED', 'no operator session');
          return {
            status: 200,
            body: { operator: p.operator, role: p.role, csrfToken: p.session.csrfToken },
          };
        },
      },
    ];
  }
}
