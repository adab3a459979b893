// Operator sessions, in memory: a random id in an HttpOnly SameSite=Strict cookie, a CSRF token per
// session that every change must echo in a header, an idle and an absolute expiry, and a bound on how
// many there are. A restart of the ledger logs everyone out, which is acceptable for a back office.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { OperatorRole } from './operators.js';

export const SESSION_DEFAULTS = {
  /** ms a session lives without a request: 8 h, a working day at the back-office desk. */
  idleMs: 8 * 60 * 60 * 1000,
  /** ms a session lives at most, used or not: 24 h, then the password again. */
  maxAgeMs: 24 * 60 * 60 * 1000,
  /** Sessions kept at most: the oldest goes when a new one would pass it (a back office, not the public). */
  maxSessions: 1000,
  /** Bytes of randomness in a session id and in a CSRF token: 256 bits, unguessable. */
  tokenBytes: 32,
} as const;

export const SESSION_COOKIE = 'ledger_session';

export interface Session {
  operator: string;
  role: OperatorRole;
  csrfToken: string;
  createdAt: number;
  lastUsedAt: number;
}

/** Constant-time string comparison (different lengths are unequal at once: the length is not secret). */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class SessionStore {
  /** Keyed by the SHA-256 of the id, so a heap dump does not hand out live cookies. */
  private readonly sessions = new Map<string, Session>();
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly maxSessions: number;
  private readonly clock: { nowMs(): number };

  constructor(
    opts: { idleMs?: number; maxAgeMs?: number; maxSessions?: number; clock?: { nowMs(): number } } = {},
  ) {
    this.idleMs = opts.idleMs ?? SESSION_DEFAULTS.idleMs;
    this.maxAgeMs = opts.maxAgeMs ?? SESSION_DEFAULTS.maxAgeMs;
    this.maxSessions = opts.maxSessions ?? SESSION_DEFAULTS.maxSessions;
    this.clock = opts.clock ?? { nowMs: () => Date.now() };
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Seconds the cookie may live: the absolute bound (the idle one is the server's to enforce). */
  get cookieMaxAgeS(): number {
    return Math.floor(this.maxAgeMs / 1000);
  }

  /** A new session; returns its id (for the cookie) and the session. */
  create(operator: string, role: OperatorRole): { id: string; session: Session } {
    this.sweep();
    // Map keeps insertion order: the first key is the oldest session.
    while (this.sessions.size >= this.maxSessions) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(SESSION_DEFAULTS.tokenBytes).toString('base64url');
    const now = this.clock.nowMs();
    const session: Session = {
      operator,
      role,
      csrfToken: randomBytes(SESSION_DEFAULTS.tokenBytes).toString('base64url'),
      createdAt: now,
      lastUsedAt: now,
    };
    this.sessions.set(key(id), session);
    return { id, session };
  }

  /** The live session of this id (and it counts as used), or undefined. */
  get(id: string | undefined): Session | undefined {
    if (!id || id.length > 128) return undefined;
    const k = key(id);
    const s = this.sessions.get(k);
    if (!s) return undefined;
    const now = this.clock.nowMs();
    if (now - s.lastUsedAt > this.idleMs || now - s.createdAt > this.maxAgeMs) {
      this.sessions.delete(k);
      return undefined;
    }
    s.lastUsedAt = now;
    return s;
  }

  delete(id: string | undefined): void {
    if (id) this.sessions.delete(key(id));
  }

  /** Ends every session of an operator (removed, or password changed). */
  endAllOf(operator: string): void {
    for (const [k, s] of this.sessions) if (s.operator === operator) this.sessions.delete(k);
  }

  private sweep(): void {
    const now = this.clock.nowMs();
    for (const [k, s] of this.sessions)
      if (now - s.lastUsedAt > this.idleMs || now - s.createdAt > this.maxAgeMs) this.sessions.delete(k);
  }
}

function key(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

/** The value of one cookie from a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(id: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0${secure ? '; Secure' : ''}`;
}
