// The fleet CA as the ledger holds it for enrolment: checks a register's certificate request and
// signs its TLS client certificate (CN = device id, clientAuth only, never a CA). The CA's key is read
// once at start-up into a non-extractable WebCrypto key; it is never logged or sent anywhere.
import {
  createHash,
  createPrivateKey,
  X509Certificate,
  randomBytes,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { x509 } from '../../cloud-bridge/protocol/x509.js';
import { LedgerError } from '../errors.js';

/** The signature algorithms the CA signs with, by its key. */
type SigningAlgorithm = (webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams) & { hash?: string };

export interface IssuedCertificate {
  pem: string;
  /** sha256 of the certificate's public key (SubjectPublicKeyInfo DER), hex: which key the token went to. */
  publicKeySha256: string;
  serial: string;
  notAfter: string;
}

export const ENROL_DEFAULTS = {
  /** Days a certificate issued at enrolment is valid: about two years, then a new token. */
  certificateDays: 825,
  /** Minutes the certificate is valid before it was issued: a register's clock may be a little behind. */
  backdateMinutes: 5,
} as const;

function signingAlgorithm(key: KeyObject): {
  importAlg: SigningAlgorithm;
  signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams;
} {
  if (key.asymmetricKeyType === 'rsa') {
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { importAlg: alg, signAlg: alg };
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const named = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (!named)
      throw new Error(`the CA key is on curve ${curve ?? '(unknown)'}: P-256 or P-384 are signed with`);
    const hash = named === 'P-256' ? 'SHA-256' : 'SHA-384';
    return { importAlg: { name: 'ECDSA', namedCurve: named }, signAlg: { name: 'ECDSA', hash } };
  }
  throw new Error(
    `the CA key is ${key.asymmetricKeyType ?? 'of an unknown type'}: RSA or EC keys sign certificates`,
  );
}

/** What keys a register may enrol: EC P-256/P-384, or RSA of 2048 bits or more. */
function keyProblem(key: x509.PublicKey): string | undefined {
  const alg = key.algorithm as { name?: string; namedCurve?: string; modulusLength?: number };
  if (alg.name === 'ECDSA')
    return ['P-256', 'P-384'].includes(alg.namedCurve ?? '') ? undefined : 'an EC key on P-256 or P-384';
  if (alg.name === 'RSASSA-PKCS1-v1_5' || alg.name === 'RSA-PSS' || alg.name === 'RSA-OAEP')
    return (alg.modulusLength ?? 0) >= 2048 ? undefined : 'an RSA key of at least 2048 bits';
  return 'an EC (P-256, P-384) or RSA key';
}

export class CertificateAuthority {
  private constructor(
    private readonly cert: x509.X509Certificate,
    private readonly key: webcrypto.CryptoKey,
    private readonly signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams,
    /** The CA certificate, PEM, as the register gets it back. */
    readonly certificatePem: string,
  ) {}

  /** The CA from its certificate and private key (PEM, unencrypted); a mismatch or a non-CA refuses. */
  static async load(certPem: Buffer | string, keyPem: Buffer | string): Promise<CertificateAuthority> {
    let cert: X509Certificate;
    let key: KeyObject;
    try {
      cert = new X509Certificate(certPem);
    } catch (err) {
      throw new Error(
        `the enrolment CA certificate is not a readable PEM certificate (${(err as Error).message})`,
        { cause: err },
      );
    }
    // An encrypted key fails in OpenSSL with messages that vary by format and version: read the PEM.
    if (/ENCRYPTED/.test(keyPem.toString().slice(0, 200)))
      throw new Error(
        'the enrolment CA key is encrypted: the ledger needs it without a passphrase (keep the file 0600)',
      );
    try {
      key = createPrivateKey({ key: keyPem, format: 'pem' });
    } catch (err) {
      throw new Error(`the enrolment CA key is not a readable private key (${(err as Error).message})`, {
        cause: err,
      });
    }
    if (!cert.ca)
      throw new Error('the enrolment CA certificate is not a CA certificate (basicConstraints CA:TRUE)');
    const matches = (() => {
      try {
        return cert.checkPrivateKey(key);
      } catch {
        return false; // a key of another type than the certificate's
      }
    })();
    if (!matches) throw new Error('the enrolment CA key does not match its certificate');
    const { importAlg, signAlg } = signingAlgorithm(key);
    const der = key.export({ type: 'pkcs8', format: 'der' });
    const cryptoKey = await webcrypto.subtle.importKey('pkcs8', der, importAlg, false, ['sign']);
    const pem = cert.toString();
    return new CertificateAuthority(
      new x509.X509Certificate(cert.raw),
      cryptoKey,
      signAlg,
      pem.endsWith('\n') ? pem : `${pem}\n`,
    );
  }

  /**
   * Checks a certificate request (readable, self-signed by its key, a key type we accept) and signs a
   * client certificate for `deviceId` with that key. The request's own subject and extensions are not
   * taken: the certificate says only what the ledger decides. Throws LedgerError BAD_PARAMS.
   */
  async issue(
    csrPem: string,
    deviceId: string,
    nowMs: number,
    days: number = ENROL_DEFAULTS.certificateDays,
  ): Promise<IssuedCertificate> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch {
      throw new LedgerError('BAD_PARAMS', 'csr is not a readable PKCS#10 certificate request');
    }
    const problem = keyProblem(csr.publicKey);
    if (problem) throw new LedgerError('BAD_PARAMS', `the request's key is not accepted: give ${problem}`);
    const signed = await csr.verify().catch(() => false);
    if (!signed) throw new LedgerError('BAD_PARAMS', 'the certificate request is not signed by its own key');

    const publicKey = await csr.publicKey.export();
    const serial = randomBytes(16);
    serial[0] = (serial[0]! & 0x7f) | 0x40; // a positive INTEGER, with no leading zero byte to strip
    const notBefore = new Date(nowMs - ENROL_DEFAULTS.backdateMinutes * 60_000);
    const notAfter = new Date(nowMs + days * 86_400_000);
    // keyEncipherment for an RSA key: TLS 1.2's RSA key exchange; an EC key only signs.
    const usages =
      x509.KeyUsageFlags.digitalSignature | (isRsa(csr.publicKey) ? x509.KeyUsageFlags.keyEncipherment : 0);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'),
      subject: `CN=${deviceId}`,
      issuer: this.cert.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.key,
      signingAlgorithm: this.signAlg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(usages, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    return {
      pem: `${cert.toString('pem')}\n`,
      publicKeySha256: keySha256(csr),
      serial: serial.toString('hex'),
      notAfter: notAfter.toISOString(),
    };
  }
}

function isRsa(key: x509.PublicKey): boolean {
  return (key.algorithm as { name?: string }).name?.startsWith('RSA') ?? false;
}

/** sha256 hex of a request's public key (SubjectPublicKeyInfo DER). */
function keySha256(csr: x509.Pkcs10CertificateRequest): string {
  return createHash('sha256').update(Buffer.from(csr.publicKey.rawData)).digest('hex');
}

/** sha256 hex of a request's public key: the key a token was redeemed for. */
export function requestKeySha256(csrPem: string): string | undefined {
  try {
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    return keySha256(csr);
  } catch {
    return undefined;
  }
}
