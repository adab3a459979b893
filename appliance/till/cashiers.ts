// Cashiers and their PINs. The list comes from the ledger with salted scrypt hashes only; a PIN is
// never stored or logged, and a wrong one is never told apart from an unknown cashier by timing.
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

export const RoleSchema = z.enum(['cashier', 'manager']);
export type Role = z.infer<typeof RoleSchema>;

/** `scrypt$N$r$p$salt(base64)$hash(base64)` */
const PIN_HASH = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]{16,})\$([A-Za-z0-9+/=]{32,})$/;

export const CashierSchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/),
  name: z.string().min(1).max(40),
  role: RoleSchema,
  pinHash: z.string().regex(PIN_HASH, 'pinHash must be scrypt$N$r$p$salt$hash'),
});

export const CashierListSchema = z
  .object({
    version: z.number().int().min(1),
    storeId: z.string().min(1).max(64),
    cashiers: z.array(CashierSchema).max(500),
  })
  .superRefine((l, ctx) => {
    const ids = new Set<string>();
    l.cashiers.forEach((c, i) => {
      if (ids.has(c.id))
        ctx.addIssue({ code: 'custom', path: ['cashiers', i, 'id'], message: 'duplicate id' });
      ids.add(c.id);
    });
  });

export type Cashier = z.infer<typeof CashierSchema>;
export type CashierList = z.infer<typeof CashierListSchema>;

/**
 * Cost parameters. N = 2^14 with r = 8 takes ~16 MiB and ~50 ms on this class of machine (~150 ms
 * on a Pi 4): slow enough that a stolen list cannot be brute-forced over all 4–8 digit PINs cheaply,
 * fast enough for a login. Stored in each hash, so they can be raised later.
 */
export const PIN_SCRYPT = { N: 16384, r: 8, p: 1, keyLength: 32, saltBytes: 16 } as const;

export const PIN_FORMAT = /^\d{4,8}$/;

export function hashPin(pin: string, salt: Buffer = randomBytes(PIN_SCRYPT.saltBytes)): string {
  if (!PIN_FORMAT.test(pin)) throw new TypeError('a PIN is 4 to 8 digits');
  const { N, r, p, keyLength } = PIN_SCRYPT;
  const hash = scryptSync(pin, salt, keyLength, { N, r, p, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** A hash to spend the same time on when a cashier id is unknown, so timing tells nothing. */
export const DECOY_HASH =
  'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  expected: Buffer;
}

function parseHash(pin: string, pinHash: string): ParsedHash | undefined {
  const m = PIN_HASH.exec(pinHash);
  if (!m || !PIN_FORMAT.test(pin)) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const expected = Buffer.from(m[5]!, 'base64');
  if (N > 2 ** 20 || r > 32 || p > 16 || expected.length < 16) return undefined; // bound the work a list can ask for
  return { N, r, p, salt: Buffer.from(m[4]!, 'base64'), expected };
}

/** Constant-time check of a PIN against a stored hash; false for a malformed hash. */
export function verifyPin(pin: string, pinHash: string): boolean {
  const h = parseHash(pin, pinHash);
  if (!h) return false;
  const got = scryptSync(pin, h.salt, h.expected.length, {
    N: h.N,
    r: h.r,
    p: h.p,
    maxmem: 256 * 1024 * 1024,
  });
  return timingSafeEqual(got, h.expected);
}

/**
 * The same check off the event loop (libuv's thread pool): a login costs ~50–150 ms of scrypt, during
 * which the daemon keeps answering the socket and, later, the broker.
 */
export function verifyPinAsync(pin: string, pinHash: string): Promise<boolean> {
  const h = parseHash(pin, pinHash);
  if (!h) return Promise.resolve(false);
  return new Promise((resolve, reject) =>
    scrypt(
      pin,
      h.salt,
      h.expected.length,
      { N: h.N, r: h.r, p: h.p, maxmem: 256 * 1024 * 1024 },
      (err, got) => (err ? reject(err) : resolve(timingSafeEqual(got, h.expected))),
    ),
  );
}
