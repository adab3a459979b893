// registerd's configuration: one schema is the single source of validation, defaults and environment
// overrides (◆ docs/configuration.md). A bad value stops the daemon at start with the field named.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { enrolUrlProblem } from '../cloud-bridge/protocol/enrol.js';
import { RegisterError } from './errors.js';
import { DEFAULT_LIMITS } from './till/commands.js';

const id = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, dot, dash or underscore, at most 64');

const devicePath = z.string().min(1).max(255);
const baudRate = z.number().int().min(300).max(921_600);
/** How receipts are laid out (appliance/devices/printer/receipt-render.ts). */
const receipt = {
  /** 42 characters: 80 mm paper in font B or 58 mm in font A; 48 for 80 mm in font A. */
  columns: z.union([z.literal(42), z.literal(48)]).default(42),
  /** The printer's own code-page switching covers the Euro sign and accents. */
  encoding: z.enum(['multilingual', 'cp858', 'cp1252', 'cp437']).default('multilingual'),
  /** The zone receipts print their time in (IANA name); UTC unless the store says. */
  timeZone: z.string().min(1).max(64).optional(),
};

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
        /** When the terminal may approve card payments offline (docs/protocols/ecr.md). */
        cardOffline: z
          .object({
            maxTxnMinor: z.number().int().min(0).default(DEFAULT_LIMITS.cardOffline.maxTxnMinor),
            maxOutstandingMinor: z
              .number()
              .int()
              .min(0)
              .default(DEFAULT_LIMITS.cardOffline.maxOutstandingMinor),
            maxOutstandingCount: z
              .number()
              .int()
              .min(0)
              .max(10_000)
              .default(DEFAULT_LIMITS.cardOffline.maxOutstandingCount),
            maxAgeMs: z
              .number()
              .int()
              .min(0)
              .max(30 * 86_400_000)
              .default(DEFAULT_LIMITS.cardOffline.maxAgeMs),
          })
          .strict()
          .prefault({}),
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
    /** The link to the ledger (docs/sync.md). Without a broker URL the register keeps its journal to itself. */
    cloud: z
      .object({
        /** `mqtts://host:8883` in the field (per-device client certificates); `mqtt://` for the demo store. */
        brokerUrl: z
          .string()
          .regex(/^mqtts?:\/\/[^\s/]+(:\d+)?\/?$/, 'an mqtt:// or mqtts:// URL: scheme, host and port')
          .optional(),
        tls: z
          .object({ caFile: z.string().min(1), certFile: z.string().min(1), keyFile: z.string().min(1) })
          .strict()
          .optional(),
        /**
         * Provisioned with a one-time token instead of a certificate: the register makes its key and
         * gets `tls.certFile`/`tls.keyFile` from the ledger's enrolment endpoint (cloud-bridge/enrol.ts).
         */
        enrol: z
          .object({
            url: z.string().superRefine((v, ctx) => {
              const problem = enrolUrlProblem(v);
              if (problem) ctx.addIssue({ code: 'custom', message: problem });
            }),
            tokenFile: z.string().min(1),
          })
          .strict()
          .optional(),
        /** Records per MQTT message: 500 keeps a message ~250 KiB and one ledger transaction (decision 0008). */
        batchMaxRecords: z.number().int().min(1).max(500).default(500),
        /** Batches sent and not yet acknowledged by the ledger. */
        maxInFlightBatches: z.number().int().min(1).max(64).default(2),
        /** Resend from the last ack when the ledger has acknowledged nothing for this long, ms. */
        ackTimeoutMs: z.number().int().min(1000).max(600_000).default(10_000),
        /** Longest wait between reconnect attempts, ms (jittered, doubling from 1 s up to this). */
        reconnectMaxMs: z.number().int().min(1000).max(300_000).default(30_000),
      })
      .strict()
      .refine((c) => !c.enrol || c.tls, {
        message: 'enrol needs tls: the CA to trust and where the certificate and key go',
        path: ['enrol'],
      })
      .prefault({}),
    /** The countertop hardware (docs/devices.md). Paths are best the stable udev names under /dev/pos. */
    devices: z
      .object({
        terminal: z
          .discriminatedUnion('kind', [
            /** In-process: development and the demo without socat. */
            z.object({ kind: z.literal('simulated') }).strict(),
            z
              .object({
                kind: z.literal('ecr'),
                path: devicePath,
                baudRate: baudRate.default(9600),
                /** How long the terminal has to acknowledge a request, ms: it answers in well under 1 s. */
                ackTimeoutMs: z.number().int().min(100).max(60_000).default(2000),
                /** How long a payment may take, ms: a customer finding a card and typing a PIN. */
                resultTimeoutMs: z.number().int().min(1000).max(600_000).default(120_000),
              })
              .strict(),
          ])
          .prefault({ kind: 'simulated' }),
        printer: z
          .discriminatedUnion('kind', [
            z.object({ kind: z.literal('none') }).strict(),
            z
              .object({ kind: z.literal('usb'), path: devicePath.default('/dev/usb/lp0'), ...receipt })
              .strict(),
            z
              .object({
                kind: z.literal('serial'),
                path: devicePath,
                baudRate: baudRate.default(19200),
                ...receipt,
              })
              .strict(),
            z
              .object({
                kind: z.literal('tcp'),
                host: z.string().min(1).max(253),
                port: z.number().int().min(1).max(65535).default(9100),
                ...receipt,
              })
              .strict(),
          ])
          .prefault({ kind: 'none' }),
        /** Up to four scanners (a handheld and an in-counter one, say). */
        scanners: z
          .array(
            z.discriminatedUnion('kind', [
              z
                .object({
                  kind: z.literal('hid'),
                  vendorId: z.number().int().min(0).max(0xffff).optional(),
                  productId: z.number().int().min(0).max(0xffff).optional(),
                  path: devicePath.optional(),
                  layout: z.enum(['us', 'de']).default('us'),
                  /** hidraw: the kernel's HID driver stays bound; libusb: node-hid takes the device over. */
                  driver: z.enum(['hidraw', 'libusb']).default('hidraw'),
                })
                .strict()
                .refine(
                  (s) => s.path !== undefined || (s.vendorId !== undefined && s.productId !== undefined),
                  {
                    message: 'an HID scanner needs a path or both vendorId and productId',
                  },
                ),
              z
                .object({ kind: z.literal('serial'), path: devicePath, baudRate: baudRate.default(9600) })
                .strict(),
            ]),
          )
          .max(4)
          .default([]),
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
  REGISTER_BROKER_URL: (c, v) => (c.cloud = { ...(c.cloud as object | undefined), brokerUrl: v }),
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
  if (c.cloud.tls)
    for (const k of ['caFile', 'certFile', 'keyFile'] as const)
      c.cloud.tls[k] = path.resolve(baseDir, c.cloud.tls[k]);
  if (c.cloud.enrol) c.cloud.enrol.tokenFile = path.resolve(baseDir, c.cloud.enrol.tokenFile);
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
