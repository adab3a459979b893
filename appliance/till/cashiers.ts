// Cashiers and their PINs. The list comes from the ledger with salted scrypt hashes only; a PIN is
// never stored or logged, and a wrong one is never told apart from an unknown cashier by timing.
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
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

/** Constant-time check of a PIN against a stored hash; false for a malformed hash. */
export function verifyPin(pin: string, pinHash: string): boolean {
  const m = PIN_HASH.exec(pinHash);
  if (!m || !PIN_FORMAT.test(pin)) return false;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const expected = Buffer.from(m[5]!, 'base64');
  if (N > 2 ** 20 || r > 32 || p > 16 || expected.length < 16) return false; // bound the work a list can ask for
  const got = scryptSync(pin, Buffer.from(m[4]!, 'base64'), expected.length, {
    N,
    r,
    p,
    maxmem: 256 * 1024 * 1024,
  });
  return timingSafeEqual(got, expected);
}
