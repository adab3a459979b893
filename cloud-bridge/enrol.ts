// The register's side of enrolment ◆ (cloud-bridge/protocol/enrol.ts): exchange the one-time token
// from provisioning for a TLS client certificate of a key made here, which never leaves the register.
//
// Power-safe in this order, each step durable before the next:
//   1 the new key is written as device.key.pending (0600)       a cut: the same key is used next time
//   2 the request goes to the ledger with the token             a lost answer: the same key asks again,
//                                                               and the ledger gives the same certificate
//   3 device.crt is written (0600), checked against the key and the CA from the card
//   4 device.key.pending is renamed to device.key               now the bridge can connect
//   5 the token is removed                                      it is worth nothing once redeemed anyway
// Until then the register sells offline as ever; its journal waits for the link.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { chmodSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { backoffDelayMs, realTimers, type Timers } from '../appliance/devices/device.js';
import { subjectCommonName } from '../appliance/provision/format.js';
import { nodeFs, writeFileAtomic, type JournalFs } from '../appliance/journal/fs.js';
import { silentLogger, type Logger } from '../appliance/log.js';
import {
  ENROL_PATH,
  EnrolResponseSchema,
  ENROL_TOKEN,
  enrolUrlProblem,
  type EnrolRequest,
} from './protocol/enrol.js';
import { x509 } from './protocol/x509.js';

export const ENROL_CLIENT_DEFAULTS = {
  /** ms one request may take, connection to last byte. */
  timeoutMs: 20_000,
  /** Largest answer read, bytes: a certificate and a CA are a few KiB. */
  maxAnswerBytes: 64 * 1024,
  /** Retry backoff: 5 s doubling to 15 min, jittered. A ledger that is down or a token not yet issued
   *  is tried again about four times an hour, without hammering the ledger from a whole fleet. */
  initialBackoffMs: 5_000,
  maxBackoffMs: 15 * 60_000,
} as const;

export type EnrolClientErrorCode =
  /** No token to enrol with, and no certificate: the card needs re-provisioning. */
  | 'ENROL_NO_TOKEN'
  /** The ledger could not be reached or did not answer in time. */
  | 'ENROL_NETWORK'
  /** The ledger refused (its code and message are in the message: ENROL_REFUSED, ENROL_EXPIRED…). */
  | 'ENROL_REJECTED'
  /** The ledger's answer is not a certificate for our key, signed by the CA on the card. */
  | 'ENROL_BAD_ANSWER'
  /** The enrolment URL or the CA file is not usable: the card needs re-provisioning. */
  | 'ENROL_CONFIG'
  /** Something on the register itself failed (writing the key, reading a file). */
  | 'ENROL_FAILED';

export class EnrolClientError extends Error {
  constructor(
    readonly code: EnrolClientErrorCode,
    message: string,
    /** The ledger's error code, when it answered with one. */
    readonly ledgerCode?: string,
  ) {
    super(message);
    this.name = 'EnrolClientError';
  }
}

export interface EnrolFiles {
  /** The CA from the card: the ledger's HTTPS certificate and the issued certificate must chain to it. */
  caFile: string;
  certFile: string;
  keyFile: string;
  tokenFile: string;
}

export interface EnrolOptions extends EnrolFiles {
  /** The ledger's enrolment URL: https://…/api/enrol (http:// on loopback only). */
  url: string;
  deviceId: string;
  timeoutMs?: number;
  /** The HTTP exchange; tests replace it. Resolves with any status, rejects on a network failure. */
  post?: (
    url: string,
    body: string,
    ca: Buffer,
    timeoutMs: number,
  ) => Promise<{ status: number; body: string }>;
}

/** The URL to POST to: the configured one, or its origin plus ENROL_PATH when it names no path. */
export function enrolEndpoint(url: string): string {
  const u = new URL(url);
  if (u.pathname === '/' || u.pathname === '') u.pathname = ENROL_PATH;
  return u.toString();
}

function readText(io: JournalFs, file: string): string | undefined {
  const size = io.size(file);
  if (size < 0) return undefined;
  if (size > ENROL_CLIENT_DEFAULTS.maxAnswerBytes)
    throw new Error(`${file} is larger than a key or certificate`);
  return io.readFile(file).toString('utf8');
}

/** Written durably, 0600 before it takes its name. */
const secret = (io: JournalFs, file: string, text: string) =>
  writeFileAtomic(io, file, Buffer.from(text), (tmp) => chmodSync(tmp, 0o600));

/** Whether the installed certificate and key belong together: then there is nothing to do. */
export function isEnrolled(files: Pick<EnrolFiles, 'certFile' | 'keyFile'>, io: JournalFs = nodeFs): boolean {
  try {
    const cert = readText(io, files.certFile);
    const key = readText(io, files.keyFile);
    if (cert === undefined || key === undefined) return false;
    return new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch {
    return false;
  }
}

/** A PKCS#10 request (PEM) for `CN=deviceId`, signed with the EC P-256 key given as PKCS#8 PEM. */
export async function certificateRequest(keyPem: string, deviceId: string): Promise<string> {
  const key = createPrivateKey(keyPem);
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = {
    privateKey: await webcrypto.subtle.importKey(
      'pkcs8',
      key.export({ type: 'pkcs8', format: 'der' }),
      alg,
      false,
      ['sign'],
    ),
    publicKey: await webcrypto.subtle.importKey(
      'spki',
      createPublicKey(key).export({ type: 'spki', format: 'der' }),
      alg,
      true,
      ['verify'],
    ),
  };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${deviceId}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return csr.toString('pem');
}

/** A new EC P-256 private key, PKCS#8 PEM. */
export function newDeviceKey(): string {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

/** POST JSON over https (trusting only the card's CA) or loopback http; bounded in time and size. */
function postJson(
  url: string,
  body: string,
  ca: Buffer,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options: https.RequestOptions = {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      timeout: timeoutMs,
      ...(u.protocol === 'https:' ? { ca } : {}),
    };
    const req = (u.protocol === 'https:' ? https : http).request(u, options, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > ENROL_CLIENT_DEFAULTS.maxAnswerBytes) req.destroy(new Error('the answer is too large'));
        else chunks.push(c);
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * One enrolment attempt. Resolves 'enrolled' (certificate and key installed now) or 'already' (they
 * were); throws EnrolClientError, having kept the pending key for the next attempt.
 */
export async function enrolOnce(o: EnrolOptions): Promise<'enrolled' | 'already'> {
  const io = nodeFs;
  if (isEnrolled(o, io)) {
    removeToken(io, o.tokenFile); // a cut after the key took its name, before the token went
    return 'already';
  }
  const problem = enrolUrlProblem(o.url);
  if (problem) throw new EnrolClientError('ENROL_CONFIG', `enrolment URL ${o.url}: ${problem}`);
  const token = readText(io, o.tokenFile)?.trim();
  if (!token || !ENROL_TOKEN.test(token))
    throw new EnrolClientError(
      'ENROL_NO_TOKEN',
      `no certificate and no usable enrolment token (${path.basename(o.tokenFile)}): provision the card again`,
    );
  const ca = readText(io, o.caFile);
  if (ca === undefined)
    throw new EnrolClientError('ENROL_CONFIG', `no CA certificate at ${o.caFile}: provision the card again`);

  // 1. The key, made once and kept until the certificate for it is installed.
  const pending = `${o.keyFile}.pending`;
  let keyPem = readText(io, pending);
  if (keyPem === undefined) {
    keyPem = newDeviceKey();
    secret(io, pending, keyPem);
  }
  const keyObject = createPrivateKey(keyPem);
  const csr = await certificateRequest(keyPem, o.deviceId);

  // 2. The exchange.
  const request: EnrolRequest = { deviceId: o.deviceId, token, csr };
  const timeoutMs = o.timeoutMs ?? ENROL_CLIENT_DEFAULTS.timeoutMs;
  let answer: { status: number; body: string };
  try {
    answer = await (o.post ?? postJson)(
      enrolEndpoint(o.url),
      JSON.stringify(request),
      Buffer.from(ca),
      timeoutMs,
    );
  } catch (err) {
    throw new EnrolClientError('ENROL_NETWORK', `the ledger cannot be reached: ${(err as Error).message}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(answer.body);
  } catch {
    body = undefined;
  }
  if (answer.status !== 200) {
    const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const code = typeof error?.code === 'string' ? error.code : undefined;
    const message = typeof error?.message === 'string' ? error.message : `HTTP ${answer.status}`;
    throw new EnrolClientError(
      'ENROL_REJECTED',
      `the ledger refused: ${code ?? answer.status}: ${message}`,
      code,
    );
  }
  const parsed = EnrolResponseSchema.safeParse(body);
  if (!parsed.success)
    throw new EnrolClientError('ENROL_BAD_ANSWER', 'the ledger answered without a certificate');

  // 3. Only a certificate for our key, our device id, signed by the CA from the card.
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(parsed.data.certificate);
  } catch {
    throw new EnrolClientError('ENROL_BAD_ANSWER', 'the certificate in the answer is not readable');
  }
  let caCert: X509Certificate;
  try {
    caCert = new X509Certificate(ca);
  } catch {
    throw new EnrolClientError(
      'ENROL_CONFIG',
      `${o.caFile} is not a readable certificate: provision the card again`,
    );
  }
  if (!cert.checkPrivateKey(keyObject))
    throw new EnrolClientError('ENROL_BAD_ANSWER', 'the certificate is not for the key this register made');
  if (subjectCommonName(cert) !== o.deviceId)
    throw new EnrolClientError(
      'ENROL_BAD_ANSWER',
      `the certificate names ${subjectCommonName(cert) ?? 'no CN'}, not ${o.deviceId}`,
    );
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey))
    throw new EnrolClientError('ENROL_BAD_ANSWER', 'the certificate is not signed by the CA on the card');
  secret(io, o.certFile, parsed.data.certificate);

  // 4, 5. The key takes its name; the token goes.
  io.rename(pending, o.keyFile);
  io.syncDir(path.dirname(o.keyFile));
  removeToken(io, o.tokenFile);
  return 'enrolled';
}

function removeToken(io: JournalFs, tokenFile: string): void {
  if (io.size(tokenFile) < 0) return;
  io.unlink(tokenFile);
  io.syncDir(path.dirname(tokenFile));
}

export interface EnrolmentStatus {
  state: 'enrolled' | 'enrolling' | 'waiting';
  attempts: number;
  /** The last failure: code and message (never the token). */
  lastError?: { code: EnrolClientErrorCode; message: string } | undefined;
}

/**
 * Enrols in the background until it has a certificate: an attempt at start, then retries with a
 * jittered backoff (ENROL_CLIENT_DEFAULTS). The bridge reads the certificate files at each connection
 * attempt, so it connects on its next try after this is done.
 */
export class Enroller {
  private readonly log: Logger;
  private readonly timers: Timers;
  private state: EnrolmentStatus['state'] = 'waiting';
  private attempts = 0;
  private lastError: EnrolmentStatus['lastError'];
  private timer: unknown;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly opts: EnrolOptions & {
      timers?: Timers;
      random?: () => number;
      log?: Logger;
      backoff?: { initialMs?: number; maxMs?: number };
      onChange?: (status: EnrolmentStatus) => void;
    },
  ) {
    this.log = opts.log ?? silentLogger;
    this.timers = opts.timers ?? realTimers;
  }

  status(): EnrolmentStatus {
    return {
      state: this.state,
      attempts: this.attempts,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  start(): void {
    if (isEnrolled(this.opts)) {
      this.state = 'enrolled';
      return;
    }
    this.attempt();
  }

  /** Resolves when an attempt in progress has ended; no more are made. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private attempt(): void {
    if (this.stopped) return;
    this.timer = undefined;
    this.state = 'enrolling';
    this.attempts++;
    this.running = enrolOnce(this.opts).then(
      (outcome) => {
        this.state = 'enrolled';
        this.lastError = undefined;
        this.log.info(
          { deviceId: this.opts.deviceId, attempts: this.attempts, outcome },
          'enrolled: certificate installed',
        );
        this.opts.onChange?.(this.status());
      },
      (err: unknown) => {
        const e =
          err instanceof EnrolClientError
            ? err
            : new EnrolClientError('ENROL_FAILED', `enrolment failed here: ${(err as Error).message}`);
        this.state = 'waiting';
        this.lastError = { code: e.code, message: e.message };
        const delayMs = backoffDelayMs(this.attempts - 1, {
          initialMs: this.opts.backoff?.initialMs ?? ENROL_CLIENT_DEFAULTS.initialBackoffMs,
          maxMs: this.opts.backoff?.maxMs ?? ENROL_CLIENT_DEFAULTS.maxBackoffMs,
          ...(this.opts.random ? { random: this.opts.random } : {}),
        });
        this.log.warn(
          { code: e.code, ledgerCode: e.ledgerCode, err: e.message, retryMs: delayMs },
          'not enrolled yet',
        );
        this.opts.onChange?.(this.status());
        if (!this.stopped) this.timer = this.timers.setTimeout(() => this.attempt(), delayMs);
      },
    );
  }
}
