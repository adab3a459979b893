// Enrolment ◆: a register provisioned with a one-time token (instead of a certificate and key) makes
// its own key, sends a certificate request with the token to the ledger's `POST /api/enrol`, and gets
// back its TLS client certificate (CN = device id, clientAuth) signed by the fleet's CA. The private
// key never leaves the register; the token is good for one key only. docs/operators.md, decision 0011.
import { z } from 'zod';
import { WireId } from './wire.js';

/** The ledger's enrolment endpoint, under its HTTP API. */
export const ENROL_PATH = '/api/enrol';

/** A one-time enrolment token: one line of base64url, 32–256 characters (the ledger makes 43). */
export const ENROL_TOKEN = /^[A-Za-z0-9_-]{32,256}$/;

/** A certificate request in PEM is under 2 KiB for an EC or RSA-4096 key; the bound is generous. */
export const MAX_CSR_CHARS = 16 * 1024;

export const EnrolRequestSchema = z
  .object({
    deviceId: WireId,
    token: z.string().regex(ENROL_TOKEN, 'one line of 32 to 256 characters of A-Z a-z 0-9 _ -'),
    /** PKCS#10 in PEM, signed with the key the certificate is for (proof the register holds it). */
    csr: z
      .string()
      .max(MAX_CSR_CHARS)
      .regex(
        /^-----BEGIN CERTIFICATE REQUEST-----[\s\S]+-----END CERTIFICATE REQUEST-----\s*$/,
        'a PEM certificate request',
      ),
  })
  .strict();
export type EnrolRequest = z.infer<typeof EnrolRequestSchema>;

export const EnrolResponseSchema = z
  .object({
    /** The register's client certificate, PEM. */
    certificate: z.string().max(MAX_CSR_CHARS),
    /** The CA certificate that signed it, PEM. */
    ca: z.string().max(MAX_CSR_CHARS),
    /** ISO time the certificate stops being valid. */
    notAfter: z.string(),
  })
  .strict();
export type EnrolResponse = z.infer<typeof EnrolResponseSchema>;

/** The URL an enrolment goes to: https, or http on this machine only (the demo store, tests). */
export function enrolUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (u.username || u.password) return 'no user or password in the URL: the token is the credential';
  if (u.protocol === 'https:') return undefined;
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  if (u.protocol === 'http:' && loopback) return undefined;
  return 'an https:// URL (http:// only on this machine: 127.0.0.1, localhost)';
}
