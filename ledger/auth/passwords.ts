// Operator passwords as salted scrypt hashes (node:crypto), compared in constant time. The stored form
// names its parameters, so they can be raised later without invalidating the passwords already set.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export const PASSWORD_DEFAULTS = {
  /** scrypt cost N: 2^15 with r 8 is ~32 MiB and ~50 ms a check on a Pi 4 class CPU — OWASP's floor. */
  cost: 2 ** 15,
  blockSize: 8,
  parallelization: 1,
  /** Salt bytes: 16 is what every guide asks for; unique per password. */
  saltBytes: 16,
  /** Derived key bytes. */
  keyBytes: 32,
  /** Characters a password has at least and at most: long enough to resist guessing, bounded for scrypt's input. */
  minLength: 10,
  maxLength: 200,
} as const;

/** Memory scrypt may take, bytes: 128·N·r plus headroom (node's default 32 MiB is just short of N=2^15). */
const maxmem = (n: number, r: number) => 128 * n * r * 2;

function derive(password: string, salt: Buffer, n: number, r: number, p: number, bytes: number) {
  const opts: ScryptOptions = { N: n, r, p, maxmem: maxmem(n, r) };
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, bytes, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** Why a password is not acceptable, or null. */
export function passwordProblem(password: string): string | null {
  if (password.length < PASSWORD_DEFAULTS.minLength)
    return `a password has at least ${PASSWORD_DEFAULTS.minLength} characters`;
  if (password.length > PASSWORD_DEFAULTS.maxLength)
    return `a password has at most ${PASSWORD_DEFAULTS.maxLength} characters`;
  return null;
}

/** `scrypt$N$r$p$salt$key` with base64url salt and key. */
export async function hashPassword(
  password: string,
  opts: { cost?: number; salt?: Buffer } = {},
): Promise<string> {
  const n = opts.cost ?? PASSWORD_DEFAULTS.cost;
  const { blockSize: r, parallelization: p, keyBytes } = PASSWORD_DEFAULTS;
  const salt = opts.salt ?? randomBytes(PASSWORD_DEFAULTS.saltBytes);
  const key = await derive(password, salt, n, r, p, keyBytes);
  return ['scrypt', n, r, p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

const STORED = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9_-]{16,128})\$([A-Za-z0-9_-]{16,256})$/;

/** Whether `password` matches the stored hash; a malformed stored value matches nothing. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = STORED.exec(stored);
  if (!m || password.length > PASSWORD_DEFAULTS.maxLength) return false;
  const [n, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Parameters from the database are bounded too: a tampered row must not make a check take minutes.
  if (n < 2 || n > 2 ** 20 || (n & (n - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16) return false;
  const expected = Buffer.from(m[5]!, 'base64url');
  const key = await derive(password, Buffer.from(m[4]!, 'base64url'), n, r, p, expected.length);
  return timingSafeEqual(key, expected);
}

/**
 * A hash of no one's password, checked when the operator name is unknown, so a wrong name takes as
 * long as a wrong password and the answer's timing does not tell which names exist.
 */
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  return (decoy ??= hashPassword(randomBytes(18).toString('base64url')));
}
