// registerd's configuration: one schema is the single source of validation, defaults and environment
// overrides (◆ docs/configuration.md). A bad value stops the daemon at start with the field named.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { RegisterError } from './errors.js';
import { DEFAULT_LIMITS } from './till/commands.js';

const id = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, dot, dash or underscore, at most 64');

export const ConfigSchema = z
  .object({
    /** This register's identity in the books and on MQTT topics. */
    deviceId: id,
    storeId: id,
    /** The flash data partition: journal, caches, control socket. */
    stateDir: z.string().min(1).default('/var/lib/register'),
    /** Pin the journal's epoch; by default a new journal draws a random one. */
    epoch: z.number().int().min(1).max(0xffffffff).optional(),
    journal: z
      .object({
        /** 8 MiB segments: ~8,000 sales each; recovery reads at most one past the checkpoint. */
        segmentMaxBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(256 * 1024 * 1024)
          .default(8 * 1024 * 1024),
        /** Checkpoint every 5,000 records: bounds a restart's replay to well under a second. */
        checkpointEveryRecords: z.number().int().min(0).max(1_000_000).default(5000),
      })
      .strict()
      .prefault({}),
    till: z
      .object({
        maxPinAttempts: z.number().int().min(1).max(20).default(DEFAULT_LIMITS.maxPinAttempts),
        lockoutMs: z.number().int().min(0).max(86_400_000).default(DEFAULT_LIMITS.lockoutMs),
        maxDiscountBp: z.number().int().min(0).max(10_000).default(DEFAULT_LIMITS.maxDiscountBp),
        maxDiscrepancyMinor: z.number().int().min(0).default(DEFAULT_LIMITS.maxDiscrepancyMinor),
        maxLines: z.number().int().min(1).max(1000).default(DEFAULT_LIMITS.maxLines),
        maxQty: z.number().int().min(1).max(100_000).default(DEFAULT_LIMITS.maxQty),
        maxCashMinor: z.number().int().min(1).default(DEFAULT_LIMITS.maxCashMinor),
      })
      .strict()
      .prefault({}),
    clock: z
      .object({
        /** Trust the wall clock without an NTP sync (development machines with an RTC). */
        assumeTrusted: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /** A catalog and cashier list to start from when none has been synced yet (demo, first boot). */
    seed: z
      .object({ catalogFile: z.string().min(1).optional(), cashiersFile: z.string().min(1).optional() })
      .strict()
      .prefault({}),
    devices: z
      .object({
        /** Until the device drivers land, the card terminal is simulated in-process. */
        terminal: z
          .object({ kind: z.literal('simulated') })
          .strict()
          .prefault({ kind: 'simulated' }),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;

/** Environment variables that override the file, for systemd drop-ins and tests. */
export const ENV_OVERRIDES: Record<string, (c: Record<string, unknown>, v: string) => void> = {
  REGISTER_STATE_DIR: (c, v) => (c.stateDir = v),
  REGISTER_DEVICE_ID: (c, v) => (c.deviceId = v),
  REGISTER_STORE_ID: (c, v) => (c.storeId = v),
};

export function parseConfig(
  raw: unknown,
  env: Record<string, string | undefined> = {},
  baseDir = '.',
): Config {
  const merged: Record<string, unknown> =
    typeof raw === 'object' && raw !== null ? { ...(raw as object) } : {};
  for (const [name, apply] of Object.entries(ENV_OVERRIDES)) {
    const v = env[name];
    if (v !== undefined && v !== '') apply(merged, v);
  }
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || '(top level)';
    throw new RegisterError('CONFIG_INVALID', `config: ${field}: ${issue.message}`, { field });
  }
  const c = parsed.data;
  // Paths in the file are relative to the file; one from the environment, to the working directory
  // (as registerctl reads it).
  c.stateDir = env.REGISTER_STATE_DIR
    ? path.resolve(env.REGISTER_STATE_DIR)
    : path.resolve(baseDir, c.stateDir);
  if (c.seed.catalogFile) c.seed.catalogFile = path.resolve(baseDir, c.seed.catalogFile);
  if (c.seed.cashiersFile) c.seed.cashiersFile = path.resolve(baseDir, c.seed.cashiersFile);
  return c;
}

export function loadConfig(file: string, env: Record<string, string | undefined> = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegisterError('CONFIG_INVALID', `config: cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RegisterError('CONFIG_INVALID', `config: ${file} is not JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, env, path.dirname(path.resolve(file)));
}
