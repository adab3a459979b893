// The provisioning files an operator (or scripts/stamp.ts) puts on the FAT boot partition, and their
// validation. Everything here is pure: files come in as bytes, a validated provisioning or a list of
// issues goes out, so the device at first boot and the stamping tool on a workstation refuse exactly
// the same things. The text file is parsed as data, line by line; it is never sourced by a shell.
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { ENROL_TOKEN, enrolUrlProblem } from '../../cloud-bridge/protocol/enrol.js';
import { CashierSchema } from '../till/cashiers.js';

/** The folder on the boot partition that holds the provisioning files. */
export const BOOT_FOLDER = 'register';

/** File names inside BOOT_FOLDER (long names; mtools and the vfat driver both keep them). */
export const BOOT_FILES = {
  /** `key = value` lines: identity, broker, time zone, initial manager. */
  provision: 'provision.txt',
  /** The CA that signed the broker's certificate (and this register's). Public. */
  ca: 'ca.crt',
  /** This register's TLS client certificate, CN = device id. Public. */
  cert: 'device.crt',
  /** Its private key. Removed from the boot partition once installed. */
  key: 'device.key',
  /** Instead of certificate and key: a one-time enrolment token. Removed once installed. */
  token: 'enrolment.token',
} as const;

/** 64 KiB: a provisioning file or a PEM file is a few KiB; the bound stops a wrong file being read whole. */
export const MAX_FILE_BYTES = 64 * 1024;
/** 1 KiB per line of provision.txt: the longest value, a PIN hash, is ~110 characters. */
const MAX_LINE_CHARS = 1024;

export type ProvisionErrorCode =
  /** A provisioning file is malformed or a value is refused; nothing was changed. */
  | 'PROVISION_INVALID'
  /** There is no provisioning file and the register was never provisioned. */
  | 'PROVISION_MISSING'
  /** The data partition holds another device's journal; nothing was changed. */
  | 'PROVISION_FOREIGN_DATA'
  /** The command line is wrong. */
  | 'USAGE';

/** One error class for provisioning; `issues` names every refused field, one message each. */
export class ProvisionError extends Error {
  constructor(
    readonly code: ProvisionErrorCode,
    message: string,
    readonly issues: string[] = [message],
  ) {
    super(message);
    this.name = 'ProvisionError';
  }
}

const id = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, dot, dash or underscore, at most 64');

/** IANA names only, as Intl knows them, spelt exactly: the name becomes a path under /usr/share/zoneinfo. */
function timeZoneProblem(tz: string): string | undefined {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/.test(tz) || tz.length > 64)
    return 'an IANA time zone name such as Europe/Berlin or UTC';
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en', { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    return `unknown time zone "${tz}": an IANA name such as Europe/Berlin or UTC`;
  }
  if (resolved === tz || Intl.supportedValuesOf('timeZone').includes(tz)) return undefined;
  return `write the time zone as "${resolved}" (zone names are case-sensitive file names)`;
}

function brokerUrlProblem(url: string): string | undefined {
  if (/^mqtt:\/\//i.test(url))
    return 'mqtt:// is refused: a register reaches its broker over TLS only (mqtts://host:8883)';
  const m = /^mqtts:\/\/([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?\/?$/.exec(url);
  if (!m) return 'an mqtts:// URL with a host and an optional port, e.g. mqtts://mqtt.example.com:8883';
  const port = m[2] === undefined ? 8883 : Number(m[2]);
  if (port < 1 || port > 65535) return 'the port must be 1 to 65535';
  return undefined;
}

/** The keys of provision.txt; anything else is refused. */
export const ProvisionTextSchema = z
  .object({
    /** This register's identity: journal, MQTT topics and the CN of its certificate. */
    deviceId: id,
    storeId: id,
    brokerUrl: z.string().superRefine((v, ctx) => {
      const problem = brokerUrlProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    timeZone: z.string().superRefine((v, ctx) => {
      const problem = timeZoneProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** With an enrolment token: the ledger's https:// enrolment URL (…/api/enrol, or its origin). */
    enrolUrl: z
      .string()
      .superRefine((v, ctx) => {
        const problem = /^https:\/\//i.test(v)
          ? enrolUrlProblem(v)
          : 'an https:// URL of the ledger, e.g. https://ledger.example.com/api/enrol';
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** The first manager, who can then clock in before the ledger's cashier list arrives. */
    'manager.id': CashierSchema.shape.id,
    'manager.name': CashierSchema.shape.name,
    /** Only a salted scrypt hash (`register-provision hash-pin`); a PIN never sits on the card. */
    'manager.pinHash': z
      .string()
      .regex(
        /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]{16,}\$[A-Za-z0-9+/=]{32,}$/,
        'a scrypt$N$r$p$salt$hash PIN hash (make one with register-provision hash-pin)',
      ),
  })
  .strict();

export type ProvisionText = z.infer<typeof ProvisionTextSchema>;

/** The files read from the boot partition (undefined: absent). */
export interface ProvisionFiles {
  provision: Buffer;
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
  token?: Buffer | undefined;
}

export type Credentials =
  { kind: 'certificate'; certPem: Buffer; keyPem: Buffer } | { kind: 'token'; token: string };

/** A provisioning that passed every check. */
export interface Provisioning {
  deviceId: string;
  storeId: string;
  brokerUrl: string;
  timeZone: string;
  /** Where a token is exchanged for a certificate (with token credentials only). */
  enrolUrl?: string | undefined;
  manager: { id: string; name: string; pinHash: string };
  caPem: Buffer;
  credentials: Credentials;
  /** sha256 of the files that stay on the boot partition: what the applied stamp records. */
  sha256: string;
}

/**
 * The hash a provisioning is remembered by: provision.txt, ca.crt and device.crt, the files that stay
 * on the boot partition after the key and token are removed, so a re-run recognises its own input.
 */
export function provisioningHash(files: ProvisionFiles): string {
  const h = createHash('sha256');
  for (const part of [files.provision, files.ca, files.cert]) {
    const bytes = part ?? Buffer.alloc(0);
    h.update(`${bytes.length}:`);
    h.update(bytes);
  }
  return h.digest('hex');
}

interface Line {
  key: string;
  value: string;
  line: number;
}

/**
 * Parse `key = value` lines. `#` starts a comment line; blank lines, a UTF-8 BOM and CRLF line ends
 * (an editor on Windows) are accepted. No quoting, no escapes, no variables: the value is the text
 * after the first `=`, trimmed. A repeated key is refused rather than one of them silently winning.
 */
export function parseKeyValueText(text: Buffer, fileName: string): { lines: Line[]; issues: string[] } {
  const issues: string[] = [];
  const lines: Line[] = [];
  if (text.length > MAX_FILE_BYTES)
    return { lines, issues: [`${fileName}: larger than ${MAX_FILE_BYTES} bytes`] };
  let s: string;
  try {
    s = new TextDecoder('utf-8', { fatal: true }).decode(text);
  } catch {
    return { lines, issues: [`${fileName}: not UTF-8 text`] };
  }
  const seen = new Map<string, number>();
  s.split('\n').forEach((raw, i) => {
    const n = i + 1;
    const where = `${fileName} line ${n}`;
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.length > MAX_LINE_CHARS)
      return void issues.push(`${where}: longer than ${MAX_LINE_CHARS} characters`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(line))
      return void issues.push(`${where}: control characters`);
    const eq = line.indexOf('=');
    if (eq < 0) return void issues.push(`${where}: not a "key = value" line`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (!/^[A-Za-z][A-Za-z0-9._-]{0,63}$/.test(key)) return void issues.push(`${where}: not a key name`);
    const first = seen.get(key);
    if (first !== undefined) return void issues.push(`${where}: ${key} repeats line ${first}`);
    seen.set(key, n);
    lines.push({ key, value, line: n });
  });
  return { lines, issues };
}

/** Render values as provision.txt (what scripts/stamp.ts writes), in the schema's key order. */
export function renderProvisionText(values: ProvisionText, comment?: string): Buffer {
  const keys = Object.keys(ProvisionTextSchema.shape) as (keyof ProvisionText)[];
  const head = comment ? `# ${comment}\n` : '';
  return Buffer.from(
    head +
      keys
        .filter((k) => values[k] !== undefined)
        .map((k) => `${k} = ${values[k]}\n`)
        .join(''),
  );
}

/** The CN of a certificate's subject, as node:crypto spells it (one attribute a line). */
export function subjectCommonName(cert: X509Certificate): string | undefined {
  for (const part of cert.subject.split('\n')) if (part.startsWith('CN=')) return part.slice(3);
  return undefined;
}

/** Everything a PEM file is allowed to be (bounded, text). */
function pemText(bytes: Buffer, name: string, issues: string[]): string | undefined {
  if (bytes.length > MAX_FILE_BYTES) {
    issues.push(`${name}: larger than ${MAX_FILE_BYTES} bytes`);
    return undefined;
  }
  return bytes.toString('latin1');
}

function parseCertificate(bytes: Buffer, name: string, issues: string[]): X509Certificate | undefined {
  const text = pemText(bytes, name, issues);
  if (text === undefined) return undefined;
  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    issues.push(`${name}: not a PEM certificate (-----BEGIN CERTIFICATE----- missing)`);
    return undefined;
  }
  try {
    return new X509Certificate(bytes);
  } catch (err) {
    issues.push(`${name}: not a readable X.509 certificate (${(err as Error).message})`);
    return undefined;
  }
}

function parsePrivateKey(bytes: Buffer, name: string, issues: string[]): KeyObject | undefined {
  const text = pemText(bytes, name, issues);
  if (text === undefined) return undefined;
  if (!/-----BEGIN (EC |RSA |ENCRYPTED )?PRIVATE KEY-----/.test(text)) {
    issues.push(`${name}: not a PEM private key`);
    return undefined;
  }
  try {
    // node's messages name the decoder's problem, never the key material.
    return createPrivateKey({ key: bytes, format: 'pem' });
  } catch (err) {
    const msg = (err as Error).message;
    issues.push(
      /passphrase/i.test(msg)
        ? `${name}: the key is encrypted; the register needs it without a passphrase`
        : `${name}: not a readable private key (${msg})`,
    );
    return undefined;
  }
}

function keyMatches(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false; // a key of another type than the certificate's
  }
}

/** A one-time enrolment token: one line of base64url, 32–256 characters. */
const TOKEN = ENROL_TOKEN;

/**
 * Names a place in the input for a message: a file, and within provision.txt a key and its line.
 * The device names boot-partition files; the stamping tool names CSV lines and columns.
 */
export type Describe = (file: keyof typeof BOOT_FILES, key?: string, line?: number) => string;

export const describeBootFiles: Describe = (file, key, line) =>
  `${BOOT_FOLDER}/${BOOT_FILES[file]}${line !== undefined ? ` line ${line}` : ''}${key ? `: ${key}` : ''}`;

/**
 * Check a provisioning completely, collecting every problem (each names its file and key or line),
 * so an operator fixes a card in one go. Throws ProvisionError PROVISION_INVALID, or returns the
 * provisioning to apply.
 */
export function validateProvisioning(
  files: ProvisionFiles,
  describe: Describe = describeBootFiles,
): Provisioning {
  const issues: string[] = [];
  const file = (k: keyof typeof BOOT_FILES) => describe(k);

  const { lines, issues: syntax } = parseKeyValueText(files.provision, file('provision'));
  issues.push(...syntax);
  const lineOf = new Map(lines.map((l) => [l.key, l.line]));
  const parsed = ProvisionTextSchema.safeParse(Object.fromEntries(lines.map((l) => [l.key, l.value])));
  let text: ProvisionText | undefined;
  if (parsed.success) text = parsed.data;
  else
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys)
          issues.push(`${describe('provision', undefined, lineOf.get(k))}: unknown key "${k}"`);
        continue;
      }
      const key = String(issue.path[0]);
      const n = lineOf.get(key);
      issues.push(`${describe('provision', key, n)}: ${n === undefined ? 'missing' : issue.message}`);
    }

  let ca: X509Certificate | undefined;
  if (!files.ca) issues.push(`${file('ca')}: missing (the CA that signed the broker's certificate)`);
  else {
    ca = parseCertificate(files.ca, file('ca'), issues);
    if (ca && !ca.ca) issues.push(`${file('ca')}: not a CA certificate (basicConstraints CA:TRUE)`);
  }

  let credentials: Credentials | undefined;
  const hasCertificate = files.cert !== undefined || files.key !== undefined;
  if (hasCertificate && files.token !== undefined) {
    issues.push(
      `${file('token')}: give ${BOOT_FILES.cert} and ${BOOT_FILES.key}, or ${BOOT_FILES.token}, not both`,
    );
  } else if (files.token !== undefined) {
    const token = files.token.toString('latin1').trim();
    if (files.token.length > 1024 || !TOKEN.test(token))
      issues.push(`${file('token')}: one line of 32 to 256 characters of A-Z a-z 0-9 _ -`);
    else credentials = { kind: 'token', token };
    if (text && text.enrolUrl === undefined)
      issues.push(
        `${describe('provision', 'enrolUrl')}: missing (a token is exchanged for a certificate there: https://…/api/enrol)`,
      );
  } else if (!hasCertificate) {
    issues.push(`${file('cert')}: missing (with ${BOOT_FILES.key}, or ${BOOT_FILES.token} instead)`);
  } else if (!files.cert) {
    issues.push(`${file('cert')}: missing (${BOOT_FILES.key} needs its certificate)`);
  } else if (!files.key) {
    issues.push(`${file('key')}: missing (${BOOT_FILES.cert} needs its private key)`);
  } else {
    const cert = parseCertificate(files.cert, file('cert'), issues);
    const key = parsePrivateKey(files.key, file('key'), issues);
    if (cert) {
      if (cert.ca) issues.push(`${file('cert')}: a CA certificate, not a register's client certificate`);
      const cn = subjectCommonName(cert);
      if (text && cn !== text.deviceId)
        issues.push(
          `${file('cert')}: its CN is "${cn ?? ''}", not the deviceId "${text.deviceId}" (the broker takes the CN as the device)`,
        );
      if (ca && !cert.verify(ca.publicKey)) issues.push(`${file('cert')}: not signed by ${BOOT_FILES.ca}`);
    }
    if (cert && key) {
      if (!keyMatches(cert, key))
        issues.push(`${file('key')}: does not match the public key of ${BOOT_FILES.cert}`);
      credentials = { kind: 'certificate', certPem: files.cert, keyPem: files.key };
    }
  }

  if (issues.length || !text || !credentials || !files.ca)
    throw new ProvisionError(
      'PROVISION_INVALID',
      `the provisioning files are refused: ${issues.join('; ')}`,
      issues,
    );
  return {
    deviceId: text.deviceId,
    storeId: text.storeId,
    brokerUrl: text.brokerUrl,
    timeZone: text.timeZone,
    ...(text.enrolUrl !== undefined && credentials.kind === 'token' ? { enrolUrl: text.enrolUrl } : {}),
    manager: { id: text['manager.id'], name: text['manager.name'], pinHash: text['manager.pinHash'] },
    caPem: files.ca,
    credentials,
    sha256: provisioningHash(files),
  };
}
